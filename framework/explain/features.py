"""The encoded features a fitted pipeline's model sees, and which source column each came from.

Exact explainers work on the model's own inputs (after imputation, clipping, encoding and
scaling). At registration the preprocessing is exported as its own ONNX graph
(``explain_features.onnx``), so serving computes those inputs without scikit-learn or a
pickle; ``source_columns`` says how to sum the attributions back onto the request's columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from framework.export.signature import CATEGORICAL_INPUT, NUMERIC_INPUT, Signature

Feeds = dict[str, np.ndarray]


def preprocessing(pipeline: Any) -> Any:
    """The fitted steps in front of the model (a ``Pipeline`` slice)."""
    return pipeline[:-1]


def source_columns(pipeline: Any, columns: list[str]) -> np.ndarray:
    """For every encoded feature, the index in ``columns`` of the column it came from."""
    transformer = preprocessing(pipeline).steps[-1][1]
    out: list[int] = []
    for _, step, cols in transformer.transformers_:
        if step == "drop" or not len(cols):
            continue
        cols = list(cols)
        names = [str(n) for n in step.get_feature_names_out(cols)]
        by_length = sorted(cols, key=len, reverse=True)
        for name in names:
            if name in cols:
                out.append(columns.index(name))
                continue
            owner = next((c for c in by_length if name.startswith(f"{c}_")), None)
            if owner is None:
                raise ValueError(f"cannot tell which column the encoded feature {name!r} is from")
            out.append(columns.index(owner))
    return np.asarray(out, dtype=np.int64)


def export_features(pipeline: Any, numeric: list[str], categorical: list[str]) -> bytes:
    """The preprocessing as an ONNX graph: the model's two inputs -> ``features`` (float)."""
    from framework.export.onnx import export_pipeline

    exported = export_pipeline(preprocessing(pipeline), numeric, categorical, "transform")
    return exported.onnx_bytes


def feeds_of(frame: Any, signature: Signature) -> Feeds:
    """The ONNX inputs of a model-input frame (numeric float32, categories as text)."""
    feeds: Feeds = {}
    if signature.numeric:
        feeds[NUMERIC_INPUT] = frame[signature.numeric].to_numpy(dtype=np.float32)
    if signature.categorical:
        feeds[CATEGORICAL_INPUT] = frame[signature.categorical].to_numpy(dtype=object).astype(str)
    return feeds


class FeatureSession:
    """Runs ``explain_features.onnx``: request feeds -> the model's encoded inputs (float64)."""

    def __init__(self, onnx_bytes: bytes, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.output = self.session.get_outputs()[0].name

    def __call__(self, feeds: Feeds) -> np.ndarray:
        values = self.session.run([self.output], {k: feeds[k] for k in self.inputs})[0]
        return np.asarray(values, dtype=np.float64)
