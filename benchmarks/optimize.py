"""Optimized variants of a torch MLP against their float parent, side by side in one run.

Trains ``torch_mlp`` (two hidden layers of 256 units) on the default data set on Ray Train,
once with 1 worker and once with 2 for the same epochs (wall times printed), then measures
on the test split, with ONNX Runtime on 1 thread:

  float | dynamic int8 | static int8 | structured-pruned 50% | pruned 50% + dynamic int8

file size, single-row p50, rows/s at batch 256 and accuracy, with ratios to float.

Usage: python benchmarks/optimize.py [hydra overrides, e.g. model.epochs=20]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from rich.console import Console
from rich.table import Table

from framework import config
from framework.cluster import ensure_ray
from framework.config.hydra_defaults import register_defaults
from framework.config.optimize import OptimizeConfig, PruningConfig, QuantizationConfig
from framework.export.onnx import export_pipeline
from framework.export.predictor import OnnxPredictor
from framework.optimize import Variant, measure
from framework.optimize.prune import prune
from framework.optimize.quantize import quantize
from framework.progress import Stages
from framework.training.fit import fit_inputs, fit_pipeline, prepare
from framework.training.pipeline import model_input

CONF = Path(__file__).resolve().parents[1] / "conf"


def main(overrides: list[str]) -> None:
    console = Console(width=150)
    register_defaults()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        composed = compose(
            "config",
            overrides=[
                "model=torch_mlp",
                "model.hidden_sizes=[256,256]",
                "model.epochs=30",
                "model.patience=30",
                *overrides,
            ],
        )
    cfg = config.load(composed)
    stages = Stages(console)
    ensure_ray(cfg.ray)
    work = Path(tempfile.mkdtemp(prefix="optimize-bench-"))
    prepared = prepare(cfg, stages, work)
    data = cfg.data
    numeric, categorical = data.numeric_features, data.categorical_features

    pipelines = {}
    walls = {}
    for workers in (1, 2):
        run_cfg = cfg.model_copy(deep=True)
        run_cfg.train.distributed.workers = workers
        run_cfg.train.distributed.storage_path = str(work / f"runs-{workers}")
        run_cfg.train.distributed.resume = False
        inputs = fit_inputs(run_cfg, prepared)
        started = time.perf_counter()
        with stages.stage(f"train on Ray Train with {workers} worker(s)"):
            pipelines[workers] = fit_pipeline(
                inputs.plugin,
                inputs.pipeline,
                inputs.X,
                inputs.y,
                inputs.weights,
                validation=inputs.validation,
            )
        walls[workers] = time.perf_counter() - started
    pipeline = pipelines[2]
    epochs = len(pipeline.steps[-1][1].history_)

    parts = prepared.splits
    X_train = model_input(parts.train, numeric, categorical)
    y_train = parts.train[data.target]
    X_test = model_input(parts.test, numeric, categorical)
    y_test = parts.test[data.target]
    settings = OptimizeConfig(threads=1, batch_rows=256, runs=2000)
    exported = export_pipeline(pipeline, numeric, categorical, prepared.task)
    predictor = OnnxPredictor(exported.onnx_bytes, exported.signature)
    calibration = [predictor.feeds_from_frame(X_train.iloc[i : i + 32]) for i in range(0, 256, 32)]

    def variant(name: str, model: bytes) -> Variant:
        return measure(name, model, exported, X_test, y_test, settings)

    with stages.stage("build and measure the variants"):
        dynamic = QuantizationConfig(method="dynamic_int8")
        pruned_pipeline, _ = prune(
            pipeline,
            PruningConfig(method="structured", sparsity=0.5, finetune_epochs=5),
            X_train,
            y_train,
            cfg.train.seed,
        )
        pruned = export_pipeline(pruned_pipeline, numeric, categorical, prepared.task).onnx_bytes
        variants = [
            variant("float", exported.onnx_bytes),
            variant("dynamic int8", quantize(exported.onnx_bytes, dynamic, [])),
            variant(
                "static int8",
                quantize(
                    exported.onnx_bytes, QuantizationConfig(method="static_int8"), calibration
                ),
            ),
            variant("structured-pruned 50%", pruned),
            variant("pruned 50% + dynamic int8", quantize(pruned, dynamic, [])),
        ]

    float_ = variants[0]
    table = Table(title=f"torch_mlp 256-256 on {data.name}, test split ({len(X_test)} rows)")
    for column in (
        "variant",
        "size",
        "x smaller",
        "p50 1 row",
        "rows/s @256",
        "x rows/s",
        "accuracy",
        "points lost",
    ):
        table.add_column(column, justify="left" if column == "variant" else "right", no_wrap=True)
    for v in variants:
        table.add_row(
            v.name,
            f"{v.size_bytes / 1024:.1f} KiB",
            f"{float_.size_bytes / v.size_bytes:.2f}",
            f"{v.p50_us:.1f} us",
            f"{v.rows_per_s:,.0f}",
            f"{v.rows_per_s / float_.rows_per_s:.2f}",
            f"{v.metrics['accuracy']:.4f}",
            f"{(float_.metrics['accuracy'] - v.metrics['accuracy']) * 100:.2f}",
        )
    console.print(table)
    console.print(
        f"Ray Train, {epochs} epochs: 1 worker {walls[1]:.1f} s, 2 workers {walls[2]:.1f} s "
        f"(2 workers / 1 worker = {walls[2] / walls[1]:.2f})"
    )

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    by_name = {v.name: v for v in variants}
    for name in ("dynamic int8", "static int8"):
        v = by_name[name]
        speed = v.rows_per_s / float_.rows_per_s
        smaller = float_.size_bytes / v.size_bytes
        lost = (float_.metrics["accuracy"] - v.metrics["accuracy"]) * 100
        console.print(
            f"target {name}: >= 2x rows/s ({speed:.2f}), >= 3.5x smaller ({smaller:.2f}), "
            f"<= 1 point lost ({lost:.2f}): "
            f"{verdict(speed >= 2 and smaller >= 3.5 and lost <= 1)}"
        )
    v = by_name["structured-pruned 50%"]
    speed = v.rows_per_s / float_.rows_per_s
    lost = (float_.metrics["accuracy"] - v.metrics["accuracy"]) * 100
    console.print(
        f"target structured 50%: >= 1.5x rows/s ({speed:.2f}), <= 1 point lost ({lost:.2f}): "
        f"{verdict(speed >= 1.5 and lost <= 1)}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
