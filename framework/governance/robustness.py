"""Robustness of the registered ONNX model, measured at training for the model card.

Two figures, on the test split, through the same ONNX graph that serves:

- accuracy (classification) or MAE (regression) when each numeric feature, and then every
  numeric feature at once, is moved by uniform noise bounded by ``epsilon`` of its standard
  deviation;
- a black-box, decision-based attack (HopSkipJump from the Adversarial Robustness Toolbox,
  L-infinity) on the ONNX model with a small query budget: the share of rows it turned, the
  perturbation it needed, the accuracy under attack at ``epsilon``, and how many of the
  adversarial rows the out-of-distribution detector flags. Its cost (seconds, model queries)
  is printed and recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from framework.config.train import RobustnessConfig
from framework.export.ood import OodScorer
from framework.export.predictor import OnnxPredictor
from framework.export.signature import NUMERIC_INPUT


def _quality(predictor: OnnxPredictor, feeds: dict[str, np.ndarray], truth: np.ndarray) -> float:
    labels = predictor.run(feeds).labels
    if predictor.signature.classification:
        return float(np.mean(labels.astype(str) == truth.astype(str)))
    return float(np.mean(np.abs(labels.astype(float) - truth.astype(float))))


def measure(
    predictor: OnnxPredictor,
    test: pd.DataFrame,
    target: str,
    reference: pd.DataFrame,
    config: RobustnessConfig,
    detector: OodScorer | None,
    seed: int,
) -> dict[str, Any]:
    """The robustness block of the manifest (and the card)."""
    signature = predictor.signature
    numeric = list(signature.numeric)
    metric = "accuracy" if signature.classification else "mae"
    out: dict[str, Any] = {"metric": metric, "epsilon": config.epsilon}
    if not numeric or test.empty:
        out["note"] = "not measured: the model has no numeric features or no test rows"
        return out
    rng = np.random.default_rng(seed)
    rows = test.sample(min(config.rows, len(test)), random_state=seed)
    truth = rows[target].to_numpy()
    feeds = predictor.feeds_from_frame(rows)
    base = feeds[NUMERIC_INPUT].astype(np.float64)
    std = reference[numeric].apply(pd.to_numeric, errors="coerce").std().fillna(0).to_numpy()
    std = np.where(std > 0, std, 1.0)
    started = time.perf_counter()
    out["clean"] = _quality(predictor, feeds, truth)
    per_feature = {}
    for j, name in enumerate(numeric):
        moved = base.copy()
        moved[:, j] += rng.uniform(-1, 1, len(moved)) * config.epsilon * std[j]
        per_feature[name] = _quality(
            predictor, {**feeds, NUMERIC_INPUT: moved.astype(np.float32)}, truth
        )
    everything = base + rng.uniform(-1, 1, base.shape) * config.epsilon * std
    out["all_features"] = _quality(
        predictor, {**feeds, NUMERIC_INPUT: everything.astype(np.float32)}, truth
    )
    worst = sorted(per_feature.items(), key=lambda kv: kv[1], reverse=not signature.classification)
    out["per_feature"] = per_feature
    out["most_sensitive"] = worst[:5]
    out["perturbation_seconds"] = round(time.perf_counter() - started, 3)
    if signature.classification:
        out["attack"] = _attack(
            predictor, rows.head(config.attack_rows), truth, std, config, detector, seed
        )
    else:
        out["attack"] = {"note": "not run: the decision-based attack needs class labels"}
    return out


@dataclass
class Attack:
    """What the black-box attack built: rows in the model's units, and its cost."""

    original: np.ndarray
    adversarial: np.ndarray
    turned: np.ndarray  # the model's label changed
    distance: np.ndarray  # L-infinity, in standard deviations
    queries: int
    seconds: float


def black_box_attack(
    predictor: OnnxPredictor,
    rows: pd.DataFrame,
    std: np.ndarray,
    config: RobustnessConfig,
    seed: int = 0,
) -> Attack:
    """HopSkipJump (L-infinity, label-only queries) on the ONNX model, one row at a time;
    categorical inputs stay as they are, numeric ones move in standardized units. Seeded:
    the same model and rows give the same attack."""
    from art.attacks.evasion import HopSkipJump
    from art.estimators.classification import BlackBoxClassifier

    feeds = predictor.feeds_from_frame(rows)
    classes = list(predictor.signature.classes)
    index = {c: i for i, c in enumerate(classes)}
    fixed = {k: v for k, v in feeds.items() if k != NUMERIC_INPUT}
    scale = np.asarray(std, dtype=np.float64)
    standard = np.nan_to_num(feeds[NUMERIC_INPUT].astype(np.float64)) / scale
    state = {"row": 0, "queries": 0}

    def labels_of(x: np.ndarray, row: int) -> np.ndarray:
        extra = {k: np.repeat(v[row : row + 1], len(x), axis=0) for k, v in fixed.items()}
        numeric = (x * scale).astype(np.float32)
        found = predictor.run({**extra, NUMERIC_INPUT: numeric}).labels.astype(str)
        return np.array([index.get(label, -1) for label in found])

    def predict(x: np.ndarray) -> np.ndarray:
        state["queries"] += len(x)
        return np.eye(len(classes))[labels_of(x, state["row"])]

    low, high = float(standard.min() - 10), float(standard.max() + 10)
    classifier = BlackBoxClassifier(
        predict, input_shape=(standard.shape[1],), nb_classes=len(classes), clip_values=(low, high)
    )
    attack = HopSkipJump(
        classifier,
        norm=np.inf,
        max_iter=config.attack_iterations,
        max_eval=config.attack_evaluations,
        init_eval=10,
        verbose=False,
    )
    started = time.perf_counter()
    adversarial = np.empty_like(standard)
    turned = np.zeros(len(standard), dtype=bool)
    saved = np.random.get_state()  # HopSkipJump's steps draw from numpy's global generator
    np.random.seed(seed)
    draw = np.random.default_rng(seed)  # its own start is unseeded: give it one
    try:
        for i in range(len(standard)):
            state["row"] = i
            start = _starting_point(standard[i], labels_of, i, draw, low, high)
            if start is None:  # nothing found to start from: the row stays as it is
                adversarial[i] = standard[i]
                continue
            adversarial[i] = attack.generate(standard[i : i + 1], x_adv_init=start[None])[0]
            before = labels_of(standard[i : i + 1], i)
            after = labels_of(adversarial[i : i + 1], i)
            turned[i] = bool(before[0] != after[0])
    finally:
        np.random.set_state(saved)
    return Attack(
        standard * scale,
        adversarial * scale,
        turned,
        np.abs(adversarial - standard).max(axis=1),
        state["queries"],
        time.perf_counter() - started,
    )


def _starting_point(
    row: np.ndarray,
    labels_of: Callable[[np.ndarray, int], np.ndarray],
    index: int,
    draw: np.random.Generator,
    low: float,
    high: float,
    tries: int = 100,
) -> np.ndarray | None:
    """A random point the model labels differently from ``row`` (HopSkipJump's start)."""
    label = labels_of(row[None], index)[0]
    points = draw.uniform(low, high, size=(tries, len(row)))
    found = np.flatnonzero(labels_of(points, index) != label)
    return points[found[0]] if len(found) else None


def _attack(
    predictor: OnnxPredictor,
    rows: pd.DataFrame,
    truth: np.ndarray,
    std: np.ndarray,
    config: RobustnessConfig,
    detector: OodScorer | None,
    seed: int,
) -> dict[str, Any]:
    found = black_box_attack(predictor, rows, std, config, seed)
    predicted = predictor.predict_frame(rows).labels.astype(str)
    correct = predicted == truth[: len(rows)].astype(str)
    robust = correct & ~(found.turned & (found.distance <= config.epsilon))
    turned = found.turned
    out: dict[str, Any] = {
        "method": "HopSkipJump (Adversarial Robustness Toolbox), L-infinity, label-only queries",
        "rows": len(rows),
        "queries": found.queries,
        "seconds": round(found.seconds, 3),
        "turned_share": float(turned.mean()),
        "median_distance_std": float(np.median(found.distance[turned])) if turned.any() else None,
        "accuracy_under_attack": float(robust.mean()),
    }
    if detector is not None and turned.any():
        distances, _ = detector.score(found.adversarial[turned].astype(np.float32))
        out["flagged_by_ood_share"] = float(detector.flagged(distances).mean())
    return out
