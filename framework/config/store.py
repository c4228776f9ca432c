"""Config of the model registry."""

from __future__ import annotations

from pydantic import Field

from framework.config.base import StrictModel


class StoreConfig(StrictModel):
    """Where registered model versions live."""

    path: str = Field("model_registry", description="Folder of the local model registry.")
    model_name: str | None = Field(
        None, description="Registered model name (default: the data set's name)."
    )
