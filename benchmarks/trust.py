"""Trust checks, side by side in one run: what they cost and what they catch.

Trains and registers the default experiment (or the one the overrides name) into a temporary
registry, then measures:

  1. serving cost of the out-of-distribution check: the version's ONNX model alone vs model
     plus ``detector.onnx`` (what a replica runs with ``serve.ood=flag``), one row and 256-row
     batches;
  2. the detector against the other candidate, an Isolation Forest exported with skl2onnx,
     fitted on the same training rows, flagging past the same quantile: latency, and the share of
     test rows, rows moved far out of range, and rows built by a black-box attack it flags;
  3. verifying a version (signed audit log, manifest hash, files) vs hashing its files alone.

Usage: python benchmarks/trust.py [hydra overrides, e.g. data.noise.enabled=false]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np
import onnxruntime as ort
from hydra import compose, initialize_config_dir
from rich.console import Console
from rich.table import Table

from framework import config
from framework.config.hydra_defaults import register_defaults
from framework.export.ood import OodScorer
from framework.export.predictor import OnnxPredictor
from framework.export.signature import NUMERIC_INPUT
from framework.governance.robustness import black_box_attack
from framework.monitoring.drift import load_reference
from framework.progress import Stages
from framework.training.job import train

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
sys.path.insert(0, str(ROOT))

from benchmarks.predict_inprocess import timings_us  # noqa: E402


def isolation_forest(train_rows: np.ndarray, quantile: float, margin: float, seed: int) -> Any:
    """The other candidate: sklearn's Isolation Forest, exported with skl2onnx."""
    from skl2onnx import to_onnx
    from sklearn.ensemble import IsolationForest
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        SimpleImputer(strategy="median"), IsolationForest(n_estimators=100, random_state=seed)
    ).fit(train_rows)
    anomaly = -model.score_samples(train_rows)  # larger: more anomalous, at most 1
    threshold = float(np.quantile(anomaly, quantile))  # a margin would put it past 1
    onnx = to_onnx(model, train_rows[:1].astype(np.float32), target_opset={"": 17, "ai.onnx.ml": 3})
    session = ort.InferenceSession(onnx.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    offset = float(model[-1].offset_)

    def flagged(rows: np.ndarray) -> np.ndarray:
        scores = session.run(None, {name: rows.astype(np.float32)})[1].reshape(-1)
        return -(scores + offset) > threshold  # ONNX gives decision_function

    return flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the trained experiment")
    parser.add_argument("--runs", type=int, default=2000, help="timed single-row calls")
    args = parser.parse_args()
    console = Console()
    register_defaults()
    with TemporaryDirectory() as tmp:
        with initialize_config_dir(str(CONF), version_base="1.3"):
            composed = compose(
                "config",
                overrides=[f"store.path={tmp}/registry", "train.latency_runs=20", *args.overrides],
            )
        cfg = config.load(composed)
        result = train(cfg, Path(tmp) / "run", Stages(console))
        assert result.version is not None
        version = result.version
        signature = result.exported.signature
        numeric = list(signature.numeric)
        predictor = OnnxPredictor(version.file("model.onnx").read_bytes(), signature, 1)
        detector = OodScorer(version.file("detector.onnx").read_bytes(), version.manifest["ood"], 1)
        test = result.test_frame
        assert test is not None
        feeds_one = predictor.feeds_from_frame(test.head(1))
        rng = np.random.default_rng(0)
        batch = test.iloc[rng.integers(0, len(test), 256)]
        feeds_batch = predictor.feeds_from_frame(batch)

        def both(feeds: dict[str, np.ndarray]) -> None:
            detector.score(feeds[NUMERIC_INPUT])
            predictor.run(feeds)

        single = {
            "model": timings_us(lambda: predictor.run(feeds_one), args.runs),
            "model + detector": timings_us(lambda: both(feeds_one), args.runs),
        }
        batched = {
            "model": timings_us(lambda: predictor.run(feeds_batch), args.runs // 10),
            "model + detector": timings_us(lambda: both(feeds_batch), args.runs // 10),
        }
        table = Table(
            title=f"1. Serving cost of serve.ood=flag ({cfg.model.type}, {cfg.data.name})"
        )
        for column in ("path", "1 row p50 us", "256 rows: rows/s"):
            table.add_column(column, justify="left" if column == "path" else "right")
        for key in single:
            rows_s = 256 / (float(np.median(batched[key])) / 1e6)
            table.add_row(key, f"{np.percentile(single[key], 50):.1f}", f"{rows_s:,.0f}")
        console.print(table)
        overhead = np.percentile(single["model + detector"], 50) / np.percentile(
            single["model"], 50
        )
        console.print(f"single-row latency with the detector: {overhead:.2f}x the model alone")

        # 2. against an Isolation Forest on the same rows and threshold rule
        features, _ = load_reference(version.file("reference.npz").read_bytes())
        train_rows = np.column_stack([features[c].astype(float) for c in numeric])
        forest = isolation_forest(train_rows, cfg.train.ood.quantile, cfg.train.ood.margin, 0)
        test_rows = test[numeric].to_numpy(np.float32)
        spread = np.nanmax(train_rows, axis=0) - np.nanmin(train_rows, axis=0)
        far = (np.nan_to_num(test_rows) + 2 * spread).astype(np.float32)
        std = np.nanstd(train_rows, axis=0)
        attack = black_box_attack(predictor, test.head(20), std, cfg.train.robustness)
        attacked = attack.adversarial[attack.turned].astype(np.float32)
        ours = {
            "test rows": detector.flagged(detector.score(test_rows)[0]).mean(),
            "moved far out": detector.flagged(detector.score(far)[0]).mean(),
            "attack rows": detector.flagged(detector.score(attacked)[0]).mean(),
        }
        theirs = {
            "test rows": forest(test_rows).mean(),
            "moved far out": forest(far).mean(),
            "attack rows": forest(attacked).mean(),
        }
        timing = {
            "ours": np.percentile(timings_us(lambda: detector.score(test_rows[:1]), args.runs), 50),
            "forest": np.percentile(timings_us(lambda: forest(test_rows[:1]), args.runs), 50),
        }
        table = Table(title="2. Flagged share: robust Mahalanobis (ours) vs Isolation Forest")
        for column in ("rows", "ours", "Isolation Forest (skl2onnx)"):
            table.add_column(column, justify="left" if column == "rows" else "right")
        for key in ours:
            table.add_row(key, f"{ours[key]:.1%}", f"{theirs[key]:.1%}")
        table.add_row("1 row p50 us", f"{timing['ours']:.1f}", f"{timing['forest']:.1f}")
        console.print(table)
        console.print(
            f"attack: {int(attack.turned.sum())}/{len(attack.turned)} rows turned with "
            f"{attack.queries:,} queries in {attack.seconds:.1f} s"
        )

        # 3. verification cost
        store = version.registry
        assert store is not None

        def files_only() -> None:
            for name in version.manifest["files"]:
                hashlib.sha256(version.file(name).read_bytes()).hexdigest()

        verify = timings_us(lambda: store.get(version.name, version.version).verify(), 200, 5)
        plain = timings_us(files_only, 200, 5)
        ratio = np.median(verify) / np.median(plain)
        console.print(
            f"3. verify a version: {np.median(verify) / 1000:.2f} ms (signed log, manifest, "
            f"{len(version.manifest['files'])} files) vs hashing the files alone "
            f"{np.median(plain) / 1000:.2f} ms: {ratio:.2f}x"
        )


if __name__ == "__main__":
    main()
