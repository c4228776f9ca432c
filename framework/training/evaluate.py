"""``EvaluationReport``: quality metrics on a held-out split, overall and per subgroup."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics


@dataclass
class EvaluationReport:
    """Metrics of one model on one split."""

    split: str
    task: str
    rows: int
    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    confusion_matrix: list[list[int]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    subgroups: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2))


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, classes: list[str]
) -> dict[str, float]:
    out = {
        "accuracy": metrics.accuracy_score(y_true, y_pred),
        "precision_macro": metrics.precision_score(
            y_true, y_pred, average="macro", zero_division=0
        ),
        "recall_macro": metrics.recall_score(y_true, y_pred, average="macro", zero_division=0),
        "f1_macro": metrics.f1_score(y_true, y_pred, average="macro", zero_division=0),
    }
    present = set(np.unique(y_true))
    if proba is not None and len(present) > 1 and present <= set(classes):
        if len(classes) == 2:
            out["roc_auc"] = metrics.roc_auc_score(y_true == classes[1], proba[:, 1])
        elif len(present) == len(classes):
            out["roc_auc"] = metrics.roc_auc_score(y_true, proba, multi_class="ovr", labels=classes)
    return {k: float(v) for k, v in out.items()}


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    out = {
        "mae": metrics.mean_absolute_error(y_true, y_pred),
        "rmse": float(np.sqrt(metrics.mean_squared_error(y_true, y_pred))),
    }
    if len(y_true) > 1:
        out["r2"] = metrics.r2_score(y_true, y_pred)
    return {k: float(v) for k, v in out.items()}


def evaluate(
    pipeline: Any,
    X: pd.DataFrame,
    y: pd.Series,
    task: str,
    split: str,
    groups: dict[str, pd.Series] | None = None,
) -> EvaluationReport:
    """Metrics of ``pipeline`` on ``X, y``; the same metrics per value of each group column."""
    y_true = y.to_numpy()
    if task == "classification":
        classes = [str(c) for c in pipeline.classes_]
        y_pred = pipeline.predict(X)
        proba = pipeline.predict_proba(X)

        def score(mask: np.ndarray) -> dict[str, float]:
            return classification_metrics(y_true[mask], y_pred[mask], proba[mask], classes)

        per_class_raw = metrics.precision_recall_fscore_support(
            y_true, y_pred, labels=classes, zero_division=0
        )
        per_class = {
            c: {
                "precision": float(per_class_raw[0][i]),
                "recall": float(per_class_raw[1][i]),
                "f1": float(per_class_raw[2][i]),
                "support": int(per_class_raw[3][i]),
            }
            for i, c in enumerate(classes)
        }
        confusion = metrics.confusion_matrix(y_true, y_pred, labels=classes).tolist()
    else:
        classes, per_class, confusion = [], {}, []
        y_pred = pipeline.predict(X)

        def score(mask: np.ndarray) -> dict[str, float]:
            return regression_metrics(y_true[mask], y_pred[mask])

    everything = np.ones(len(y_true), dtype=bool)
    subgroups: dict[str, dict[str, dict[str, float]]] = {}
    for column, values in (groups or {}).items():
        keys = values.astype(object).where(values.notna(), "(missing)").astype(str).to_numpy()
        subgroups[column] = {}
        for key in sorted(set(keys)):
            mask = keys == key
            subgroups[column][key] = {"rows": float(mask.sum()), **score(mask)}
    return EvaluationReport(
        split=split,
        task=task,
        rows=len(y_true),
        metrics=score(everything),
        per_class=per_class,
        confusion_matrix=confusion,
        classes=classes,
        subgroups=subgroups,
    )
