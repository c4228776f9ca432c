"""In-process prediction: the framework's ONNX predictor vs bare ONNX Runtime vs scikit-learn.

Trains the default experiment's model (not registered), then measures, side by side in one
run, single-row p50/p99 latency and 10,000-row batch throughput of:

  (a) the framework's OnnxPredictor, including input conversion
      (a JSON-like record for one row, a DataFrame for a batch),
  (b) a bare ``onnxruntime.InferenceSession.run`` on the already-converted arrays,
  (c) the fitted scikit-learn pipeline's ``predict_proba`` on the same rows.

Usage: python benchmarks/predict_inprocess.py [hydra overrides, e.g. model=logistic_regression]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import onnxruntime as ort
from hydra import compose, initialize_config_dir
from rich.console import Console
from rich.table import Table

from framework import config
from framework.config.hydra_defaults import register_defaults
from framework.export.predictor import OnnxPredictor, session_options
from framework.progress import Stages
from framework.training.job import train
from framework.training.pipeline import model_input

CONF = Path(__file__).resolve().parents[1] / "conf"
SINGLE_RUNS = 3000
BATCH_ROWS = 10_000
BATCH_RUNS = 30


def timings_us(fn: Callable[[], object], runs: int, warmup: int = 50) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = np.empty(runs)
    for i in range(runs):
        started = time.perf_counter_ns()
        fn()
        out[i] = time.perf_counter_ns() - started
    return out / 1000.0


def main(overrides: list[str]) -> None:
    console = Console()
    register_defaults()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        composed = compose(
            "config",
            overrides=["train.dry_run=true", *overrides],
        )
    cfg = config.load(composed)
    with TemporaryDirectory() as tmp:
        result = train(cfg, Path(tmp), Stages(console))
    data = cfg.data
    numeric, categorical = data.numeric_features, data.categorical_features
    test = result.test_frame
    assert test is not None
    rng = np.random.default_rng(0)
    batch = test.iloc[rng.integers(0, len(test), BATCH_ROWS)].reset_index(drop=True)
    records = test[numeric + categorical].astype(object)
    records = records.where(records.notna(), None).to_dict("records")

    threads = cfg.train.onnx_threads
    predictor = OnnxPredictor(result.exported.onnx_bytes, result.exported.signature, threads)
    bare = ort.InferenceSession(
        result.exported.onnx_bytes, session_options(threads), providers=["CPUExecutionProvider"]
    )
    outputs = result.exported.signature.outputs
    pipeline = result.pipeline

    one = [records[0]]
    one_feeds = predictor.feeds_from_records(one)
    one_frame = model_input(test.head(1), numeric, categorical)
    batch_feeds = predictor.feeds_from_frame(batch)
    batch_frame = model_input(batch, numeric, categorical)
    np.testing.assert_allclose(
        predictor.predict_frame(batch).scores, bare.run(outputs, batch_feeds)[1]
    )

    single = {
        "a": timings_us(lambda: predictor.predict_records(one), SINGLE_RUNS),
        "b": timings_us(lambda: bare.run(outputs, one_feeds), SINGLE_RUNS),
        "c": timings_us(lambda: pipeline.predict_proba(one_frame), SINGLE_RUNS // 10, 5),
    }
    batched = {
        "a": timings_us(lambda: predictor.predict_frame(batch), BATCH_RUNS, 3),
        "b": timings_us(lambda: bare.run(outputs, batch_feeds), BATCH_RUNS, 3),
        "c": timings_us(lambda: pipeline.predict_proba(batch_frame), BATCH_RUNS, 3),
    }
    names = {
        "a": "(a) framework OnnxPredictor (with input conversion)",
        "b": "(b) bare onnxruntime InferenceSession.run",
        "c": "(c) scikit-learn pipeline predict_proba",
    }
    table = Table(
        title=f"In-process prediction, {cfg.model.type} on {cfg.data.name}, "
        f"ONNX Runtime {ort.__version__}, {threads} thread(s)"
    )
    for column in ("path", "1 row p50 us", "1 row p99 us", f"{BATCH_ROWS:,} rows: rows/s"):
        table.add_column(column, justify="right" if column != "path" else "left")
    p50 = {k: float(np.percentile(v, 50)) for k, v in single.items()}
    rows_per_s = {k: BATCH_ROWS / (float(np.median(v)) / 1e6) for k, v in batched.items()}
    for key, label in names.items():
        table.add_row(
            label,
            f"{p50[key]:.1f}",
            f"{np.percentile(single[key], 99):.1f}",
            f"{rows_per_s[key]:,.0f}",
        )
    console.print(table)
    batch_ab = rows_per_s["b"] / rows_per_s["a"]
    single_ab = p50["a"] / p50["b"]
    single_ca = p50["c"] / p50["a"]
    batch_ca = rows_per_s["a"] / rows_per_s["c"]
    console.print(
        f"a/b single row: {single_ab:.2f}x  (target <= 3)  {'met' if single_ab <= 3 else 'MISSED'}"
    )
    console.print(
        f"a/b batch:      {batch_ab:.2f}x  (target <= 1.5)  "
        f"{'met' if batch_ab <= 1.5 else 'MISSED'}"
    )
    console.print(
        f"c/a single row: {single_ca:.1f}x  (target >= 10)  "
        f"{'met' if single_ca >= 10 else 'MISSED'}"
    )
    console.print(f"c/a batch:      {batch_ca:.1f}x  (no target)")


if __name__ == "__main__":
    main(sys.argv[1:])
