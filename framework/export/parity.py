"""Parity check: ONNX Runtime must agree with the in-memory pipeline before registration."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from framework.config.train import ParityConfig
from framework.errors import ModelRefusedError
from framework.export.predictor import OnnxPredictor


@dataclass
class ParityReport:
    """How closely the exported graph reproduces the pipeline on the test split."""

    rows: int
    label_agreement: float
    max_abs_diff: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_parity(
    pipeline: Any, predictor: OnnxPredictor, X: pd.DataFrame, config: ParityConfig
) -> ParityReport:
    """Compare labels and probabilities (or values); raise ModelRefusedError past tolerance."""
    onnx_out = predictor.predict_frame(X)
    if predictor.signature.task == "classification":
        expected_labels = np.asarray(pipeline.predict(X)).astype(str)
        got_labels = np.asarray(onnx_out.labels).astype(str)
        assert onnx_out.scores is not None
        expected_scores = pipeline.predict_proba(X)
        diff = float(np.max(np.abs(onnx_out.scores - expected_scores), initial=0.0))
        # A tie between classes may be broken either way: the ONNX label agrees when its
        # probability is within tolerance of the best one.
        classes = [str(c) for c in pipeline.classes_]
        position = {c: i for i, c in enumerate(classes)}
        got_index = np.array([position.get(label, -1) for label in got_labels])
        rows = np.arange(len(got_labels))
        got_score = np.where(got_index >= 0, expected_scores[rows, got_index.clip(0)], -1.0)
        tied = got_score >= expected_scores.max(axis=1, initial=0.0) - config.atol
        agreement = float(np.mean((got_labels == expected_labels) | tied)) if len(rows) else 1.0
        passed = agreement >= config.min_label_agreement and diff <= config.atol
    else:
        expected = np.asarray(pipeline.predict(X), dtype=float)
        got = np.asarray(onnx_out.labels, dtype=float)
        diff = float(np.max(np.abs(got - expected), initial=0.0))
        close = np.abs(got - expected) <= config.atol + config.rtol * np.abs(expected)
        agreement = float(np.mean(close)) if len(close) else 1.0
        passed = agreement >= config.min_label_agreement
    report = ParityReport(len(X), agreement, diff, passed)
    if not passed:
        raise ModelRefusedError(
            f"ONNX export disagrees with the trained pipeline on the test split: label "
            f"agreement {agreement:.4%} (need >= {config.min_label_agreement:.4%}), largest "
            f"difference {diff:.3g} (allowed {config.atol:g}); the model was not registered",
            path="train.parity",
            hint="a converter may not support an option of this model; loosen train.parity "
            "only if the difference is understood",
        )
    return report
