"""Config of the ``optimize/`` group: pruning, quantization, the measurements and the gate."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt

from framework.config.base import StrictModel


class PruningConfig(StrictModel):
    """Pruning of the fitted model before export."""

    method: Literal["none", "magnitude", "structured", "trees"] = Field(
        "none",
        description="magnitude: global L1 pruning of torch weights (sparsity, not speed); "
        "structured: remove whole hidden neurons of torch MLPs (smaller and faster); trees: "
        "fewer trees and/or cost-complexity pruning of tree ensembles.",
    )
    sparsity: float = Field(
        0.5, gt=0, lt=1, description="Share of weights (magnitude) or neurons (structured) removed."
    )
    finetune_epochs: NonNegativeInt = Field(3, description="Epochs of fine-tuning after pruning.")
    keep_trees: float = Field(
        1.0, gt=0, le=1, description="trees: share of the ensemble's trees kept (first ones)."
    )
    ccp_alpha: float = Field(
        0.0, ge=0, description="trees: cost-complexity pruning strength (refits the trees)."
    )


class QuantizationConfig(StrictModel):
    """Quantization of the exported ONNX graph (ONNX Runtime's quantizers)."""

    method: Literal["none", "dynamic_int8", "static_int8", "float16"] = Field(
        "none",
        description="dynamic_int8, static_int8 (calibrated), or float16 (dense weights stored "
        "as float16: a smaller file, float32 compute on CPU).",
    )
    per_channel: bool = Field(False, description="Per-channel weight scales.")
    calibration_rows: PositiveInt = Field(
        256, description="static_int8: rows of the training split used for calibration."
    )


class GateConfig(StrictModel):
    """Limits the optimized variant must meet against its float parent to be registered."""

    max_quality_drop: float = Field(
        1.0,
        ge=0,
        description="Largest drop of the quality metric, in points (accuracy x 100; for "
        "regression, percent of the parent's RMSE).",
    )
    min_speedup: float = Field(
        0.0, ge=0, description="Smallest batch rows/s ratio to the parent (0: no limit)."
    )
    max_size_mb: PositiveFloat | None = Field(None, description="Largest model file, in MB.")


class OptimizeConfig(StrictModel):
    """Make the exported model smaller and faster, measure it, and gate it."""

    pruning: PruningConfig = Field(default_factory=PruningConfig)
    quantization: QuantizationConfig = Field(default_factory=QuantizationConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    threads: PositiveInt = Field(1, description="ONNX Runtime threads while measuring.")
    batch_rows: PositiveInt = Field(256, description="Rows per batch for the throughput figure.")
    runs: PositiveInt = Field(200, description="Timed single-row predictions per variant.")

    @property
    def enabled(self) -> bool:
        return self.pruning.method != "none" or self.quantization.method != "none"
