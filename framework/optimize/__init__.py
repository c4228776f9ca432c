"""Make an exported model smaller and faster, measure every variant against its float parent,
and gate the chosen one (``optimize/`` config).

The chain is: float parent -> pruned (if declared) -> quantized (if declared); the last
variant is the one registered, with the parent's figures and file kept beside it.
"""

from __future__ import annotations

import gzip
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from framework.config.optimize import GateConfig, OptimizeConfig
from framework.errors import ModelRefusedError
from framework.export.onnx import ExportedModel, export_pipeline
from framework.export.predictor import OnnxPredictor
from framework.training.evaluate import classification_metrics, regression_metrics


@dataclass
class Variant:
    """One model file and its measured figures."""

    name: str
    onnx_bytes: bytes
    metrics: dict[str, float]
    p50_us: float
    rows_per_s: float
    info: dict[str, float] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        return len(self.onnx_bytes)

    @property
    def gzip_bytes(self) -> int:
        return len(gzip.compress(self.onnx_bytes, 6))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size_bytes": self.size_bytes,
            "gzip_bytes": self.gzip_bytes,
            "p50_us": self.p50_us,
            "rows_per_s": self.rows_per_s,
            "metrics": self.metrics,
            "info": self.info,
        }


@dataclass
class OptimizationReport:
    parent: Variant
    variants: list[Variant]
    quality_metric: str
    gate: dict[str, Any]

    @property
    def chosen(self) -> Variant:
        return self.variants[-1]

    def to_dict_summary(self) -> dict[str, Any]:
        """Figures of every variant (no model bytes): for the manifest and the run folder."""
        return {
            "parent": self.parent.to_dict(),
            "variants": [v.to_dict() for v in self.variants],
            "chosen": self.chosen.name,
            "quality_metric": self.quality_metric,
            "gate": self.gate,
        }


def measure(
    name: str,
    onnx_bytes: bytes,
    exported: ExportedModel,
    X_test: pd.DataFrame,
    y_test: pd.Series,
    config: OptimizeConfig,
    info: dict[str, float] | None = None,
) -> Variant:
    """Quality on the test split, single-row p50 and batch rows/s, at a fixed thread count."""
    signature = exported.signature
    predictor = OnnxPredictor(onnx_bytes, signature, config.threads)
    feeds = predictor.feeds_from_frame(X_test)
    result = predictor.run(feeds)
    y_true = y_test.to_numpy()
    if signature.task == "classification":
        metrics = classification_metrics(
            y_true, np.asarray(result.labels).astype(str), result.scores, signature.classes
        )
    else:
        metrics = regression_metrics(y_true.astype(float), result.labels.astype(float))
    rows = len(X_test)
    singles = [{k: v[i % rows : i % rows + 1] for k, v in feeds.items()} for i in range(32)]
    for one in singles:
        predictor.run(one)
    timings = []
    for i in range(config.runs):
        one = singles[i % len(singles)]
        started = time.perf_counter_ns()
        predictor.run(one)
        timings.append(time.perf_counter_ns() - started)
    index = np.arange(config.batch_rows) % rows
    batch = {k: v[index] for k, v in feeds.items()}
    predictor.run(batch)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < 0.5 or done < 3:
        predictor.run(batch)
        done += 1
    rows_per_s = done * config.batch_rows / (time.perf_counter() - started)
    return Variant(
        name,
        onnx_bytes,
        metrics,
        float(np.median(timings) / 1000.0),
        float(rows_per_s),
        dict(info or {}),
    )


def optimize_model(
    config: OptimizeConfig,
    pipeline: Any,
    exported: ExportedModel,
    X_train: pd.DataFrame,
    y_train: pd.Series,
    X_test: pd.DataFrame,
    y_test: pd.Series,
    seed: int,
) -> OptimizationReport:
    """Prune and quantize as declared; measure every step; check the gate (raises if broken)."""
    from framework.optimize.prune import prune
    from framework.optimize.quantize import quantize

    signature = exported.signature
    parent = measure("float", exported.onnx_bytes, exported, X_test, y_test, config)
    variants: list[Variant] = []
    current = exported.onnx_bytes
    name = "float"
    if config.pruning.method != "none":
        pruned, info = prune(pipeline, config.pruning, X_train, y_train, seed)
        current = export_pipeline(
            pruned, signature.numeric, signature.categorical, signature.task
        ).onnx_bytes
        name = f"pruned-{config.pruning.method}"
        variants.append(measure(name, current, exported, X_test, y_test, config, info))
    if config.quantization.method != "none":
        predictor = OnnxPredictor(current, signature, config.threads)
        rows = X_train.iloc[: config.quantization.calibration_rows]
        calibration = [
            predictor.feeds_from_frame(rows.iloc[i : i + 32]) for i in range(0, len(rows), 32)
        ]
        current = quantize(current, config.quantization, calibration)
        name = (
            config.quantization.method
            if name == "float"
            else f"{name}+{config.quantization.method}"
        )
        variants.append(measure(name, current, exported, X_test, y_test, config))
    metric = "accuracy" if signature.task == "classification" else "rmse"
    report = OptimizationReport(parent, variants or [parent], metric, {})
    report.gate = check_gate(report, config.gate)
    return report


def check_gate(report: OptimizationReport, gate: GateConfig) -> dict[str, Any]:
    """The chosen variant against the limits: its figures and every limit it broke."""
    parent, chosen, metric = report.parent, report.chosen, report.quality_metric
    if metric == "accuracy":
        drop = (parent.metrics[metric] - chosen.metrics[metric]) * 100
    else:
        drop = (chosen.metrics[metric] / max(parent.metrics[metric], 1e-12) - 1) * 100
    speedup = chosen.rows_per_s / max(parent.rows_per_s, 1e-12)
    size_mb = chosen.size_bytes / 1e6
    figures = {
        "quality_drop_points": drop,
        "speedup": speedup,
        "size_mb": size_mb,
        "size_ratio": parent.size_bytes / max(chosen.size_bytes, 1),
    }
    broken = []
    if drop > gate.max_quality_drop:
        broken.append(
            f"optimize.gate.max_quality_drop: {metric} fell {drop:.2f} points "
            f"({parent.metrics[metric]:.4f} -> {chosen.metrics[metric]:.4f}); the limit is "
            f"{gate.max_quality_drop:g}, over by {drop - gate.max_quality_drop:.2f}"
        )
    if gate.min_speedup and speedup < gate.min_speedup:
        broken.append(
            f"optimize.gate.min_speedup: {chosen.name} runs {speedup:.2f}x the float model's "
            f"rows/s; the limit is {gate.min_speedup:g}x, "
            f"short by {gate.min_speedup - speedup:.2f}x"
        )
    if gate.max_size_mb is not None and size_mb > gate.max_size_mb:
        broken.append(
            f"optimize.gate.max_size_mb: {chosen.name} is {size_mb:.3f} MB; the limit is "
            f"{gate.max_size_mb:g} MB, over by {size_mb - gate.max_size_mb:.3f} MB"
        )
    figures["broken"] = broken if report.chosen is not report.parent else []
    return figures


def refusal(report: OptimizationReport) -> ModelRefusedError | None:
    """The error that refuses registration when the chosen variant broke the gate."""
    broken = report.gate.get("broken") or []
    if not broken:
        return None
    return ModelRefusedError(
        f"the optimized variant {report.chosen.name!r} was not registered:\n  - "
        + "\n  - ".join(broken)
    )


def print_optimization(console: Any, report: OptimizationReport) -> None:
    """The variants side by side, with ratios to the float parent."""
    from rich.table import Table

    metric = report.quality_metric
    table = Table(title="Optimized variants against the float model (test split)")
    for column in ("variant", "size", "x smaller", "p50 1 row", "rows/s", "x rows/s", metric):
        left = column == "variant"
        table.add_column(column, justify="left" if left else "right", no_wrap=left)
    parent = report.parent
    rows = [parent, *[v for v in report.variants if v is not parent]]
    for v in rows:
        table.add_row(
            v.name,
            f"{v.size_bytes / 1024:.1f} KiB",
            f"{parent.size_bytes / v.size_bytes:.2f}",
            f"{v.p50_us:.1f} us",
            f"{v.rows_per_s:,.0f}",
            f"{v.rows_per_s / parent.rows_per_s:.2f}",
            f"{v.metrics[metric]:.4f}",
        )
    console.print(table)
    for v in report.variants:
        if v.info:
            details = ", ".join(f"{k} {val:g}" for k, val in v.info.items())
            console.print(f"  {v.name}: {details}; gzip {v.gzip_bytes / 1024:.1f} KiB")
