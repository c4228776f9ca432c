"""The champion gate: a new version becomes challenger only within margins of the champion.

Both versions are measured here, on the new version's test split (the same rows for both),
through their registered ONNX files: the main metric overall, the worst sensitive group's
main metric, single-row latency and file size. A version outside the margins is registered
without an alias; the reason is printed and audited.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from framework.config.gates import ChampionGate
from framework.export.predictor import OnnxPredictor
from framework.export.signature import Signature
from framework.store.registry import ModelVersion
from framework.training.evaluate import classification_metrics, regression_metrics


def _main(task: str, y: np.ndarray, predicted: Any, classes: list[str]) -> float:
    if task == "classification":
        labels = np.asarray(predicted.labels).astype(str)
        return classification_metrics(y.astype(str), labels, None, classes)["f1_macro"]
    return regression_metrics(y.astype(float), np.asarray(predicted.labels, dtype=float))["rmse"]


def _worst_group(
    task: str,
    y: np.ndarray,
    predicted: Any,
    classes: list[str],
    groups: dict[str, np.ndarray],
    min_rows: int,
) -> float | None:
    worst: float | None = None
    for values in groups.values():
        for g in np.unique(values):
            mask = values == g
            if mask.sum() < min_rows:
                continue
            part = type(predicted)(labels=np.asarray(predicted.labels)[mask], scores=None)
            score = _main(task, y[mask], part, classes)
            if worst is None:
                worst = score
            elif task == "classification":
                worst = min(worst, score)
            else:
                worst = max(worst, score)
    return worst


def champion_gate(
    gate: ChampionGate,
    champion: ModelVersion,
    onnx_bytes: bytes,
    signature: Signature,
    test: pd.DataFrame,
    target: str,
    sensitive: list[str],
    min_group_rows: int,
    paired_latency: Any,
) -> dict[str, Any]:
    """The comparison's figures and ``reasons`` (empty: the new version may be challenger).

    ``paired_latency(a, b)`` measures both predictors' single-row p50 in microseconds."""
    theirs = Signature.from_dict(champion.manifest["signature"])
    out: dict[str, Any] = {"champion": champion.version, "reasons": []}
    if (theirs.numeric, theirs.categorical, theirs.task, list(theirs.classes)) != (
        signature.numeric,
        signature.categorical,
        signature.task,
        list(signature.classes),
    ):
        out["reasons"].append(
            f"its inputs, task or classes differ from champion v{champion.version}'s, so the "
            "two cannot be compared (promote it by hand if that is intended)"
        )
        out["passed"] = False
        return out
    champion.verify()
    champion_bytes = champion.file("model.onnx").read_bytes()
    mine = OnnxPredictor(onnx_bytes, signature)
    other = OnnxPredictor(champion_bytes, theirs)
    rows = test[signature.numeric + signature.categorical]
    y = test[target].to_numpy()
    ours_p, theirs_p = mine.predict_frame(rows), other.predict_frame(rows)
    classes = list(signature.classes)
    task = signature.task
    groups = {
        c: test[c].astype(object).where(test[c].notna(), "(missing)").astype(str).to_numpy()
        for c in sensitive
    }
    new_q, old_q = _main(task, y, ours_p, classes), _main(task, y, theirs_p, classes)
    new_w = _worst_group(task, y, ours_p, classes, groups, min_group_rows)
    old_w = _worst_group(task, y, theirs_p, classes, groups, min_group_rows)
    # Both measured now, call by call in turn, so that a busy moment of the machine (a
    # serving app beside it, say) weighs on both alike.
    latency_p50_us, old_latency = paired_latency(mine, other)
    metric = "f1_macro" if task == "classification" else "rmse"
    out.update(
        metric=metric,
        quality={"new": new_q, "champion": old_q},
        worst_group={"new": new_w, "champion": old_w},
        latency_p50_us={"new": latency_p50_us, "champion": old_latency},
        size_bytes={"new": len(onnx_bytes), "champion": len(champion_bytes)},
    )
    reasons = out["reasons"]
    if task == "classification":
        if old_q - new_q > gate.max_quality_drop:
            reasons.append(
                f"{metric} {new_q:.4f} is {old_q - new_q:.4f} below champion v"
                f"{champion.version}'s {old_q:.4f} (allowed: {gate.max_quality_drop})"
            )
        if new_w is not None and old_w is not None and old_w - new_w > gate.max_worst_group_drop:
            reasons.append(
                f"worst-group {metric} {new_w:.4f} is {old_w - new_w:.4f} below the champion's "
                f"{old_w:.4f} (allowed: {gate.max_worst_group_drop})"
            )
    else:
        if old_q > 0 and (new_q - old_q) / old_q > gate.max_quality_drop:
            reasons.append(
                f"rmse {new_q:.4f} is {(new_q - old_q) / old_q:.1%} above champion v"
                f"{champion.version}'s {old_q:.4f} (allowed: {gate.max_quality_drop:.1%})"
            )
        if new_w is not None and old_w and (new_w - old_w) / old_w > gate.max_worst_group_drop:
            reasons.append(
                f"worst-group rmse {new_w:.4f} is {(new_w - old_w) / old_w:.1%} above the "
                f"champion's {old_w:.4f} (allowed: {gate.max_worst_group_drop:.1%})"
            )
    if old_latency > 0 and latency_p50_us / old_latency > gate.max_latency_ratio:
        reasons.append(
            f"single-row p50 {latency_p50_us:.0f} us is {latency_p50_us / old_latency:.1f}x the "
            f"champion's {old_latency:.0f} us (allowed: {gate.max_latency_ratio}x)"
        )
    if len(onnx_bytes) / len(champion_bytes) > gate.max_size_ratio:
        reasons.append(
            f"the model file is {len(onnx_bytes) / len(champion_bytes):.1f}x the champion's "
            f"(allowed: {gate.max_size_ratio}x)"
        )
    out["passed"] = not reasons
    return out
