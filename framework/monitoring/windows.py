"""The monitor's live windows: drift rows, labels joined to predictions, per-step counts.

Every window is bounded: a flood of requests or labels costs a fixed amount of memory, and
what is pushed out is counted.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from framework.config.monitor import WindowConfig
from framework.export.signature import MISSING_CATEGORY, Signature
from framework.monitoring.protocol import FeedbackResult, Label, RecordBatch
from framework.monitoring.rollout import VersionStats


def live_quality(
    pairs: list[tuple[Any, Any]], classes: list[str], min_labels: int
) -> dict[str, Any]:
    """Accuracy, macro F1 and the confusion matrix (or MAE/RMSE) of (prediction, truth) pairs."""
    n = len(pairs)
    if n < min_labels:
        return {"status": "insufficient_labels", "labels": n, "min_labels": min_labels}
    if classes:
        index = {c: i for i, c in enumerate(classes)}
        matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
        for predicted, truth in pairs:
            if predicted in index and truth in index:
                matrix[index[truth], index[predicted]] += 1
        hits = np.diag(matrix).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.nan_to_num(hits / matrix.sum(axis=0))
            recall = np.nan_to_num(hits / matrix.sum(axis=1))
            f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
        return {
            "status": "ok",
            "labels": n,
            "accuracy": float(hits.sum() / n),
            "f1_macro": float(f1.mean()),
            "classes": classes,
            "confusion_matrix": matrix.tolist(),
        }
    errors = np.asarray([p for p, _ in pairs], dtype=np.float64) - np.asarray(
        [t for _, t in pairs], dtype=np.float64
    )
    return {
        "status": "ok",
        "labels": n,
        "mae": float(np.abs(errors).mean()),
        "rmse": float(np.sqrt((errors**2).mean())),
    }


@dataclass
class StepCounts:
    """Per-version counts since the current rollout step began."""

    started: float = field(default_factory=time.time)
    requests: dict[int, int] = field(default_factory=dict)
    errors: dict[int, int] = field(default_factory=dict)
    latencies: dict[int, deque[float]] = field(default_factory=dict)
    pairs: dict[int, list[tuple[Any, Any]]] = field(default_factory=dict)

    def add(self, batch: RecordBatch) -> None:
        for version in np.unique(batch.versions).tolist():
            mine = batch.versions == version
            self.requests[version] = self.requests.get(version, 0) + int(mine.sum())
            failed = int(batch.server_errors[mine].sum())
            self.errors[version] = self.errors.get(version, 0) + failed
            window = self.latencies.setdefault(version, deque(maxlen=5000))
            window.extend(batch.latency_ms[mine].tolist())

    def stats(self, version: int, classification: bool) -> VersionStats:
        pairs = self.pairs.get(version, [])
        quality = None
        if pairs:
            p = np.asarray([a for a, _ in pairs], dtype=object)
            t = np.asarray([b for _, b in pairs], dtype=object)
            if classification:
                quality = float((p == t).mean())
            else:
                quality = float(np.abs(p.astype(float) - t.astype(float)).mean())
        return VersionStats(
            requests=self.requests.get(version, 0),
            errors=self.errors.get(version, 0),
            latencies_ms=list(self.latencies.get(version, ())),
            labels=len(pairs),
            quality=quality,
        )


class DriftWindow:
    """The newest rows served, per feature, and the predictions made for them."""

    def __init__(self, signature: Signature, rows: int):
        self.numeric = list(signature.numeric)
        self.categorical = list(signature.categorical)
        self.columns: dict[str, deque[Any]] = {
            name: deque(maxlen=rows) for name in self.numeric + self.categorical
        }
        self.predicted: deque[Any] = deque(maxlen=rows)
        self.classification = signature.classification
        self.new_rows = 0

    @property
    def rows(self) -> int:
        return min((len(v) for v in self.columns.values()), default=0)

    def add(self, batch: RecordBatch) -> None:
        numeric, categorical = batch.numeric, batch.categorical
        if numeric is not None and numeric.ndim == 2 and numeric.shape[1] == len(self.numeric):
            for j, name in enumerate(self.numeric):
                self.columns[name].extend(numeric[:, j].tolist())
            self.new_rows += len(numeric)
        if (
            categorical is not None
            and categorical.ndim == 2
            and categorical.shape[1] == len(self.categorical)
        ):
            for j, name in enumerate(self.categorical):
                self.columns[name].extend(categorical[:, j].tolist())
            if numeric is None:
                self.new_rows += len(categorical)
        if batch.sampled_predictions is not None:
            self.predicted.extend(batch.sampled_predictions.tolist())

    def snapshot(self, min_rows: int) -> tuple[dict[str, np.ndarray], np.ndarray | None] | None:
        """Arrays of the window, or None when nothing is new or too little to test."""
        if self.new_rows == 0 or self.rows < min_rows:
            return None
        self.new_rows = 0
        current: dict[str, np.ndarray] = {}
        for name in self.numeric:
            current[name] = np.asarray(self.columns[name], dtype=np.float64)
        for name in self.categorical:
            values = np.asarray(self.columns[name], dtype=object)
            values[values == MISSING_CATEGORY] = None
            current[name] = values
        prediction = None
        if self.predicted:
            prediction = np.asarray(self.predicted, dtype=object)
            if not self.classification:
                prediction = prediction.astype(np.float64)
        return current, prediction


class LabelBook:
    """Predictions remembered by request, labels waiting for theirs, and the joined pairs.

    A prediction id is ``<request id>-<row>``. One label per prediction id: the first label
    that arrives wins, later ones are counted as duplicates and ignored (so a caller cannot
    outvote the truth with copies). Labels for ids not seen yet wait, capped by
    ``window.pending_labels`` and ``window.pending_label_s``; predictions are remembered up to
    ``window.tracked_predictions`` rows.
    """

    def __init__(self, config: WindowConfig):
        self.config = config
        #: request id -> (version, predicted labels, rows already labelled)
        self.tracked: OrderedDict[str, tuple[int, list[Any], set[int]]] = OrderedDict()
        self.tracked_rows = 0
        self.pending: OrderedDict[str, tuple[Any, float]] = OrderedDict()
        self.quality: dict[int, deque[tuple[Any, Any]]] = {}
        self.joined = 0
        self.dropped: dict[str, int] = {"pending_cap": 0, "expired": 0, "duplicate": 0}

    def track(self, batch: RecordBatch, step: StepCounts) -> None:
        """Remember the batch's predictions; join labels that were waiting for them."""
        for rid, version, labels in batch.predictions:
            if rid in self.tracked:
                continue  # ids are made by the server; a repeat is ignored, not overwritten
            self.tracked[rid] = (version, labels.tolist(), set())
            self.tracked_rows += len(labels)
            if self.pending:
                for row in range(len(labels)):
                    waiting = self.pending.pop(f"{rid}-{row}", None)
                    if waiting is not None:
                        self._join(rid, row, waiting[0], step)
        while self.tracked_rows > self.config.tracked_predictions and self.tracked:
            _, (_, labels, _) = self.tracked.popitem(last=False)
            self.tracked_rows -= len(labels)

    def add(self, labels: list[Label], step: StepCounts, classification: bool) -> FeedbackResult:
        now = time.time()
        matched = pending = duplicates = 0
        dropped_before = self.dropped["pending_cap"]
        for label in labels:
            value = str(label.value) if classification else float(label.value)
            rid, _, row = label.prediction_id.rpartition("-")
            known = self.tracked.get(rid)
            index = int(row) if row.isdecimal() and len(row) < 10 else -1
            if known is not None and 0 <= index < len(known[1]):
                if index in known[2]:
                    duplicates += 1
                else:
                    self._join(rid, index, value, step)
                    matched += 1
            elif label.prediction_id in self.pending:
                duplicates += 1
            else:
                self.pending[label.prediction_id] = (value, now)
                pending += 1
        self.dropped["duplicate"] += duplicates
        self.expire(now)
        while len(self.pending) > self.config.pending_labels:
            self.pending.popitem(last=False)
            self.dropped["pending_cap"] += 1
        return FeedbackResult(
            accepted=len(labels),
            matched=matched,
            pending=pending,
            duplicates=duplicates,
            dropped=self.dropped["pending_cap"] - dropped_before,
        )

    def expire(self, now: float) -> None:
        """Drop waiting labels older than ``window.pending_label_s``."""
        ttl = self.config.pending_label_s
        while self.pending:
            _, (_, since) = next(iter(self.pending.items()))
            if now - since <= ttl:
                break
            self.pending.popitem(last=False)
            self.dropped["expired"] += 1

    def _join(self, rid: str, row: int, truth: Any, step: StepCounts) -> None:
        version, predicted, labelled = self.tracked[rid]
        labelled.add(row)
        pair = (predicted[row], truth)
        self.joined += 1
        window = self.quality.setdefault(version, deque(maxlen=self.config.labels))
        window.append(pair)
        step.pairs.setdefault(version, []).append(pair)

    def live(self, classes: list[str]) -> dict[int, dict[str, Any]]:
        return {
            version: live_quality(list(window), classes, self.config.min_labels)
            for version, window in self.quality.items()
        }
