"""Config of the ``model/`` group: a model plugin selected by ``type``."""

from __future__ import annotations

from framework.config.base import PluginConfig


class ModelConfig(PluginConfig):
    """Base for model plugin configs; each plugin adds its hyperparameters."""
