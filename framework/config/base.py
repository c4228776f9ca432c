"""Shared pieces of the typed config: a strict base model and plugin unions."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Field

from framework.registry import Registry


class StrictModel(BaseModel):
    """Base for every config block: unknown keys are errors, values are validated on set."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class PluginConfig(StrictModel):
    """Base for a plugin's config; ``type`` is the registry key that selects the plugin."""

    type: str = Field(description="Name of the registered plugin.")


def plugin_union(registry: Registry[Any]) -> Any:
    """A discriminated union over every config class registered in ``registry``."""
    configs = registry.configs()
    if len(configs) == 1:
        return configs[0]
    return Annotated[Union[tuple(configs)], Field(discriminator="type")]  # noqa: UP007
