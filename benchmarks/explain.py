"""Explanation speed, side by side in one run, on the default data (breast cancer, 30 columns).

1. Exact tree explanations of the default random forest (100 trees), one row per call:
   ours (ONNX Runtime computes the model's inputs, TreeSHAP runs on the array-only trees
   from ``explain.npz``) against ``shap.TreeExplainer`` on the fitted scikit-learn model
   (the pipeline's preprocessing, then shap). Prints p50/p99 per row, the ratio and the
   largest difference between the two (target: identical, at most 2x shap's time).
2. The model-agnostic explainer (KernelSHAP over the ONNX Runtime session) on an MLP at
   the default budget (``explain.samples``): p50/p99 per row (target: at most 500 ms).
3. ``python -m framework task=explain`` on 10,000 rows, as a user runs it: rows/s.

Usage: python benchmarks/explain.py [--rows 200] [--batch-rows 10000]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def percentiles(times: list[float]) -> tuple[float, float]:
    ms = np.array(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def fitted(estimator: object, frame: pd.DataFrame, data: object, method: str = "auto"):
    from framework.config.explain import ExplainConfig
    from framework.explain.loader import ARRAYS, FEATURES, build_explainer
    from framework.explain.register import explanation_files
    from framework.export.onnx import export_pipeline
    from framework.export.predictor import OnnxPredictor
    from framework.training.pipeline import build_pipeline, model_input

    numeric, categorical = data.numeric_features, data.categorical_features  # type: ignore[attr-defined]
    X = model_input(frame, numeric, categorical)
    scale = not hasattr(estimator, "estimators_") and "Forest" not in type(estimator).__name__
    pipeline = build_pipeline(data, estimator, scale=scale).fit(X, frame[data.target])  # type: ignore[arg-type, attr-defined]
    exported = export_pipeline(pipeline, numeric, categorical, "classification")
    predictor = OnnxPredictor(exported.onnx_bytes, exported.signature, 1)
    cfg = SimpleNamespace(
        explain=ExplainConfig(method=method),
        train=SimpleNamespace(seed=0),
        model=SimpleNamespace(type=type(estimator).__name__),
    )
    files, block = explanation_files(cfg, pipeline, exported.signature, X.head(1000), True)
    explainer = build_explainer(
        block, files[ARRAYS], files.get(FEATURES), predictor, exported.signature
    )
    return pipeline, explainer, X, exported.signature, block


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200, help="rows timed one by one")
    parser.add_argument("--explain-rows", type=int, default=10_000, help="rows for task=explain")
    args = parser.parse_args()

    import shap
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.neural_network import MLPClassifier

    from framework.explain.features import feeds_of
    from framework.registry import sources
    from tests.helpers import load_config

    cfg = load_config([])
    data = cfg.data
    frame = sources.get(data.source.type).impl(data.source).load()
    params = cfg.model.model_dump(exclude={"type"})
    forest = RandomForestClassifier(random_state=0, **params)
    pipeline, ours, X, signature, block = fitted(forest, frame, data)
    assert block["method"] == "tree"
    rows = X.sample(n=min(args.rows, len(X)), random_state=1)
    theirs = shap.TreeExplainer(pipeline[-1])
    pre = pipeline[:-1]
    ours_t, theirs_t, bare_t, worst = [], [], [], 0.0
    for i in range(len(rows)):
        row = rows.iloc[[i]]
        feeds = feeds_of(row, signature)
        started = time.perf_counter()
        mine = ours(feeds)
        ours_t.append(time.perf_counter() - started)
        started = time.perf_counter()
        ref = theirs.shap_values(pre.transform(row))
        theirs_t.append(time.perf_counter() - started)
        started = time.perf_counter()
        theirs.shap_values(pre.transform(row), check_additivity=False)
        bare_t.append(time.perf_counter() - started)
        worst = max(worst, float(np.abs(np.moveaxis(np.asarray(ref), 2, 1) - mine.values).max()))
    o50, o99 = percentiles(ours_t)
    t50, t99 = percentiles(theirs_t)
    b50, b99 = percentiles(bare_t)
    print(f"1. exact TreeSHAP, default random forest ({forest.n_estimators} trees), 1 row/call")
    print(f"   ours (ONNX inputs + array-only trees): p50 {o50:.2f} ms, p99 {o99:.2f} ms")
    print(f"   shap.TreeExplainer on scikit-learn:    p50 {t50:.2f} ms, p99 {t99:.2f} ms")
    print(f"     the same, check_additivity=False:    p50 {b50:.2f} ms, p99 {b99:.2f} ms")
    verdict = "met" if o50 <= 2 * b50 else "MISSED"
    print(
        f"   ratio p50 {o50 / t50:.2f}x shap's default, {o50 / b50:.2f}x without its additivity "
        f"check (target <= 2x: {verdict}); largest difference {worst:.2e}"
    )

    mlp = MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=400, random_state=0)
    _, kernel, X2, signature2, block2 = fitted(mlp, frame, data)
    assert block2["method"] == "kernel"
    times = []
    for i in range(min(args.rows // 4, len(X2))):
        feeds = feeds_of(X2.iloc[[i]], signature2)
        started = time.perf_counter()
        kernel(feeds)
        times.append(time.perf_counter() - started)
    k50, k99 = percentiles(times)
    columns = len(signature2.numeric) + len(signature2.categorical)
    verdict = "met" if k50 <= 500 else "MISSED"
    print(f"2. KernelSHAP over ONNX Runtime, MLP, {columns} columns, budget {block2['samples']}")
    print(f"   p50 {k50:.1f} ms, p99 {k99:.1f} ms per row (target <= 500 ms: {verdict})")

    work = Path(tempfile.mkdtemp(prefix="explain-bench-"))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "COLUMNS": "200"}
    cli = [sys.executable, "-m", "framework", f"store.path={work / 'registry'}"]
    trained = subprocess.run(
        [*cli, f"hydra.run.dir={work / 'train'}"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    if trained.returncode != 0:
        raise SystemExit(trained.stdout + trained.stderr)
    big = X.sample(n=args.explain_rows, replace=True, random_state=2)
    big.to_csv(work / "rows.csv", index=False)
    started = time.perf_counter()
    explained = subprocess.run(
        [
            *cli,
            "task=explain",
            f"explain.input={work / 'rows.csv'}",
            f"hydra.run.dir={work / 'explain'}",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if explained.returncode != 0:
        raise SystemExit(explained.stdout + explained.stderr)
    found = re.search(r"in ([0-9.]+) s \(([0-9,]+) rows/s\)", explained.stdout)
    print(f"3. task=explain on {args.explain_rows:,} rows (default random forest, tree)")
    if found:
        print(f"   explaining: {found.group(2)} rows/s ({found.group(1)} s)")
    print(
        f"   whole command: {wall:.1f} s ({args.explain_rows / wall:,.0f} rows/s incl. start, "
        "reading, Parquet and the HTML report)"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
