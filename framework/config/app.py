"""Everything the serving application's deployments need, validated once.

``build_app`` validates the plain arguments (from ``task=serve`` or a Ray Serve config file)
into an ``AppConfig`` and hands that typed object to the model replicas and the monitor.
"""

from __future__ import annotations

from pydantic import Field

from framework.config.base import StrictModel
from framework.config.monitor import MonitorConfig
from framework.config.security import SecurityConfig
from framework.config.serve import ServeConfig


class AppConfig(StrictModel):
    """The serving application: which model, where the registry and keys are, and how."""

    model_name: str = Field(description="Registered model name.")
    store_path: str = Field(description="Absolute path of the model registry.")
    keys_base: str = Field(description="Folder a relative security.keys_file is resolved in.")
    serve: ServeConfig = Field(default_factory=ServeConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
