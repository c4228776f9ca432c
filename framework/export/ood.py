"""The out-of-distribution detector: a robust Mahalanobis distance, exported to ONNX.

Fitted on the numeric features of the training split: a robust centre and covariance
(minimum covariance determinant), the squared distances of the training rows as a
reference, and a threshold (``train.ood.quantile`` of those distances times
``train.ood.margin``). The ONNX graph takes the model's own numeric input and gives, per row,
the squared distance and the in-distribution score: the share of training rows at least as
far from the centre (1: typical, 0: farther than every training row). A replica runs it in
its own ONNX Runtime session next to the model (``serve.ood``).

Perturbations that break the correlations of the training data (what the small bounded
steps of a black-box attack do) move the distance as much as one feature far out of its
range, which a per-feature range check cannot see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from framework.export.signature import NUMERIC_INPUT

DISTANCE = "distance"
SCORE = "in_distribution"
#: Reference distances kept in the graph (the score's resolution).
REFERENCE_ROWS = 2000


@dataclass
class Detector:
    """A fitted detector: its ONNX bytes and what the manifest keeps about it."""

    onnx: bytes
    threshold: float
    info: dict[str, Any]


def fit_detector(
    numeric: np.ndarray,
    names: list[str],
    quantile: float,
    margin: float,
    max_rows: int,
    seed: int,
    fence: float = 3.0,
) -> Detector:
    """Fit on the training split's numeric features (rows x features, NaN for missing).

    Rows with a value beyond ``fence`` interquartile ranges of a quartile (the outliers the
    cleaning step clips) neither shape the covariance nor set the threshold."""
    from sklearn.covariance import MinCovDet

    rng = np.random.default_rng(seed)
    data = np.asarray(numeric, dtype=np.float64)
    if len(data) > max_rows:
        data = data[rng.choice(len(data), max_rows, replace=False)]
    median = np.nanmedian(data, axis=0)
    median = np.where(np.isfinite(median), median, 0.0)
    filled = np.where(np.isnan(data), median, data)
    scale = np.nanpercentile(data, 75, axis=0) - np.nanpercentile(data, 25, axis=0)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, filled.std(axis=0) + 1e-12)
    standard = (filled - median) / scale  # MCD on comparable units
    q1, q3 = np.nanpercentile(data, 25, axis=0), np.nanpercentile(data, 75, axis=0)
    fenced = np.all((filled >= q1 - fence * scale) & (filled <= q3 + fence * scale), axis=1)
    if fenced.sum() < max(10, 2 * len(names)):
        fenced = np.ones(len(filled), dtype=bool)
    mcd = MinCovDet(random_state=seed, support_fraction=0.9).fit(standard[fenced])
    covariance = mcd.covariance_ + np.eye(len(names)) * 1e-6 * np.trace(mcd.covariance_)
    whitening = np.linalg.cholesky(np.linalg.inv(covariance))  # precision = W W^T
    centre = median + mcd.location_ * scale
    step = whitening / scale[:, None]  # (x - centre) @ step == ((x-median)/scale - loc) @ W
    train = np.square((filled - centre) @ step).sum(axis=1)
    threshold = float(np.quantile(train[fenced], quantile) * margin)  # outliers set no bound
    reference = np.sort(train)[:: max(1, len(train) // REFERENCE_ROWS)]
    onnx = _graph(median, centre, step, reference)
    return Detector(
        onnx,
        threshold,
        {
            "method": "robust Mahalanobis distance (minimum covariance determinant)",
            "features": list(names),
            "threshold": threshold,
            "quantile": quantile,
            "margin": margin,
            "fitted_rows": len(data),
            "fenced_rows": int(fenced.sum()),
            "fence_iqr": fence,
            "train_flagged_share": float((train > threshold).mean()),
            "median": median.tolist(),
            "scale": scale.tolist(),
        },
    )


def _graph(median: np.ndarray, centre: np.ndarray, step: np.ndarray, ref: np.ndarray) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    f32 = np.float32
    inits = [
        numpy_helper.from_array(median.astype(f32)[None, :], "median"),
        numpy_helper.from_array(centre.astype(f32)[None, :], "centre"),
        numpy_helper.from_array(step.astype(f32), "step"),
        numpy_helper.from_array(ref.astype(f32)[None, :], "reference"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("IsNaN", [NUMERIC_INPUT], ["missing"]),
        helper.make_node("Where", ["missing", "median", NUMERIC_INPUT], ["filled"]),
        helper.make_node("Sub", ["filled", "centre"], ["centred"]),
        helper.make_node("MatMul", ["centred", "step"], ["whitened"]),
        helper.make_node("Mul", ["whitened", "whitened"], ["squares"]),
        helper.make_node("ReduceSum", ["squares", "axis1"], ["summed"], keepdims=1),
        helper.make_node("Squeeze", ["summed", "axis1"], [DISTANCE]),
        helper.make_node("GreaterOrEqual", ["reference", "summed"], ["farther"]),
        helper.make_node("Cast", ["farther"], ["farther_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["farther_f"], ["share"], axes=[1], keepdims=0),
        helper.make_node("Identity", ["share"], [SCORE]),
    ]
    width = int(step.shape[0])
    graph = helper.make_graph(
        nodes,
        "ood_detector",
        [helper.make_tensor_value_info(NUMERIC_INPUT, TensorProto.FLOAT, [None, width])],
        [
            helper.make_tensor_value_info(DISTANCE, TensorProto.FLOAT, [None]),
            helper.make_tensor_value_info(SCORE, TensorProto.FLOAT, [None]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


class OodScorer:
    """The detector's ONNX Runtime session: distances and scores of a numeric matrix."""

    def __init__(self, onnx: bytes, info: dict[str, Any], threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
        self.threshold = float(info["threshold"])
        self.features = list(info["features"])
        self.median = np.asarray(info["median"], dtype=np.float64)
        self.scale = np.asarray(info["scale"], dtype=np.float64)

    def score(self, numeric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(squared distance, in-distribution score) per row."""
        distance, score = self.session.run(None, {NUMERIC_INPUT: numeric.astype(np.float32)})
        return distance, score

    def flagged(self, distance: np.ndarray) -> np.ndarray:
        return ~(distance <= self.threshold)  # NaN or inf distances are out too

    def furthest(self, row: np.ndarray, n: int = 3) -> list[tuple[str, float]]:
        """The features furthest from the training median, in interquartile ranges."""
        z = np.abs((row.astype(np.float64) - self.median) / self.scale)
        z = np.where(np.isfinite(z), z, 0.0)
        order = np.argsort(-z)[:n]
        return [(self.features[i], round(float(z[i]), 1)) for i in order]
