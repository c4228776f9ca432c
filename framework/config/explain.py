"""``explain``: which explainer a version registers, its budget, and ``task=explain``."""

from __future__ import annotations

from pydantic import Field, PositiveInt, field_validator

from framework import registry
from framework.config.base import StrictModel


class ExplainConfig(StrictModel):
    """Local explanations: served at ``/v1/models/{name}/explain`` and by ``task=explain``."""

    method: str = Field(
        "auto",
        description="Explainer plugin: auto (exact TreeSHAP or linear where the model allows, "
        "KernelSHAP otherwise), tree, linear, kernel or lime.",
    )
    samples: PositiveInt = Field(
        1024,
        description="Model-agnostic budget: coalitions per row (kernel) or perturbations (lime).",
    )
    background_rows: PositiveInt = Field(
        10, description="Weighted k-means rows summarizing the training reference sample."
    )
    input: str | None = Field(
        None, description="task=explain: a CSV or Parquet file, directory or glob to explain."
    )
    output: str | None = Field(
        None, description="task=explain: where the Parquet attributions go (default: run folder)."
    )
    batch_rows: PositiveInt = Field(1024, description="task=explain: rows per explainer call.")
    report_rows: PositiveInt = Field(
        2000, description="task=explain: rows drawn in the HTML report's distribution plot."
    )

    @field_validator("method")
    @classmethod
    def _known(cls, value: str) -> str:
        if value != "auto" and value not in registry.explainers:
            raise ValueError(registry.explainers.unknown_message(value) + " (or auto)")
        return value
