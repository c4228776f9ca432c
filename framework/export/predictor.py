"""``OnnxPredictor``: runs an exported pipeline with ONNX Runtime from frames or JSON records."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from framework.errors import FrameworkError
from framework.export.signature import (
    CATEGORICAL_INPUT,
    MISSING_CATEGORY,
    NUMERIC_INPUT,
    Signature,
)

if TYPE_CHECKING:  # pandas is only needed by callers that hold frames
    import pandas as pd


@dataclass
class Prediction:
    """Model outputs for a batch of rows."""

    labels: np.ndarray
    scores: np.ndarray | None  # class probabilities (classification) or None

    def __len__(self) -> int:
        return len(self.labels)


def session_options(threads: int) -> ort.SessionOptions:
    """Session options with explicit thread counts (ORT's defaults oversubscribe small boxes)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class OnnxPredictor:
    """Predicts with one ONNX Runtime session; converts frames or records to its two inputs."""

    def __init__(
        self,
        model: bytes | str,
        signature: Signature,
        threads: int = 1,
        providers: list[str] | None = None,
    ):
        self.signature = signature
        self.session = ort.InferenceSession(
            model, session_options(threads), providers=providers or ["CPUExecutionProvider"]
        )
        self._numeric = signature.numeric
        self._categorical = signature.categorical
        self._outputs = signature.outputs
        self._classes = np.asarray(signature.classes, dtype=object)

    # -- input conversion -------------------------------------------------------------
    def feeds_from_frame(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        feeds: dict[str, np.ndarray] = {}
        if self._numeric:
            numeric = _columns(frame, self._numeric)
            feeds[NUMERIC_INPUT] = numeric.to_numpy(dtype=np.float32, na_value=np.nan)
        if self._categorical:
            cats = _columns(frame, self._categorical).astype(object)
            cats = cats.where(cats.notna(), MISSING_CATEGORY).astype(str)
            feeds[CATEGORICAL_INPUT] = cats.to_numpy(dtype=object)
        return feeds

    def feeds_from_records(self, records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        feeds: dict[str, np.ndarray] = {}
        if self._numeric:
            names = self._numeric
            rows = [[_number(r.get(c)) for c in names] for r in records]
            feeds[NUMERIC_INPUT] = np.array(rows, dtype=np.float32).reshape(
                len(records), len(names)
            )
        if self._categorical:
            names = self._categorical
            rows = [[_text(r.get(c)) for c in names] for r in records]
            feeds[CATEGORICAL_INPUT] = np.array(rows, dtype=object).reshape(
                len(records), len(names)
            )
        return feeds

    # -- prediction -------------------------------------------------------------------
    def run(self, feeds: dict[str, np.ndarray]) -> Prediction:
        outputs = self.session.run(self._outputs, feeds)
        if self.signature.task == "classification":
            return Prediction(labels=outputs[0], scores=outputs[1])
        return Prediction(labels=outputs[0].reshape(-1), scores=None)

    def predict_frame(self, frame: pd.DataFrame) -> Prediction:
        return self.run(self.feeds_from_frame(frame))

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> Prediction:
        return self.run(self.feeds_from_records(records))


def _columns(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """``frame[names]``, by position (several times faster than label selection)."""
    positions = frame.columns.get_indexer(names)
    if (positions < 0).any():
        missing = [n for n, p in zip(names, positions, strict=True) if p < 0]
        raise FrameworkError(f"input is missing feature column(s): {', '.join(missing)}")
    if len(positions) == frame.shape[1] and (positions == np.arange(len(positions))).all():
        return frame
    return frame.take(positions, axis=1)


def _number(value: Any) -> float:
    if value is None:
        return math.nan
    return float(value)


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING_CATEGORY
    return str(value)
