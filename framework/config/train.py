"""Config of the ``train/`` group: how a model is fitted, checked and registered."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt

from framework.config.base import StrictModel


class ParityConfig(StrictModel):
    """Agreement required between ONNX Runtime and the in-memory pipeline on the test split."""

    min_label_agreement: float = Field(
        0.999, gt=0, le=1, description="Share of test rows whose ONNX label must match."
    )
    atol: PositiveFloat = Field(
        1e-4, description="Largest allowed absolute difference of probabilities or values."
    )
    rtol: float = Field(1e-4, ge=0, description="Relative tolerance for regression values.")


class TrainConfig(StrictModel):
    """How a model is trained, exported and registered."""

    seed: int = Field(42, description="Seed passed to the model (random_state).")
    num_cpus: PositiveFloat = Field(1.0, description="CPUs reserved for the Ray task that fits.")
    onnx_threads: PositiveInt = Field(1, description="ONNX Runtime intra-op threads.")
    latency_runs: PositiveInt = Field(200, description="Single-row predictions timed.")
    parity: ParityConfig = Field(default_factory=ParityConfig)
    dry_run: bool = Field(False, description="Train, evaluate and check, but do not register.")
    alias: Literal["auto", "champion", "challenger", "none"] = Field(
        "auto",
        description="Alias for the new version; auto: champion if none exists, else challenger.",
    )
