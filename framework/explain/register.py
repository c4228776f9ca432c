"""At registration: pick the explainer, write its arrays, check it against shap and itself."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from framework.errors import ConfigError
from framework.explain.base import Fitted
from framework.explain.features import export_features, feeds_of, source_columns
from framework.explain.loader import ARRAYS, FEATURES, write_arrays
from framework.export.signature import Signature
from framework.registry import explainers

#: Explainers whose arrays every version carries, so any version can be explained by them.
AGNOSTIC = ("kernel", "lime")


def choose(method: str, estimator: Any, served_is_fitted: bool, model_type: str) -> str:
    """``auto``: an exact explainer that supports the model, else KernelSHAP."""
    if method != "auto":
        plugin = explainers.get(method).impl()
        if plugin.exact and not plugin.supports(estimator):
            raise ConfigError(
                [
                    f"explain.method: {method!r} cannot explain model {model_type!r} "
                    f"({type(estimator).__name__}); use auto, kernel or lime"
                ]
            )
        if plugin.exact and not served_is_fitted:
            raise ConfigError(
                [
                    f"explain.method: {method!r} explains the fitted model, but the optimized "
                    "model is served; use auto, kernel or lime"
                ]
            )
        return method
    if served_is_fitted:
        for entry in explainers:
            plugin = entry.impl()
            if plugin.exact and plugin.supports(estimator):
                return entry.name
    return "kernel"


def explanation_files(
    cfg: Any,
    pipeline: Any,
    signature: Signature,
    reference: pd.DataFrame,
    served_is_fitted: bool,
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The files (``explain.npz``, maybe ``explain_features.onnx``) and the manifest block."""
    settings = cfg.explain
    estimator = pipeline.steps[-1][1]
    method = choose(settings.method, estimator, served_is_fitted, cfg.model.type)
    fitted = Fitted(
        pipeline=pipeline,
        signature=signature,
        columns=signature.numeric + signature.categorical,
        reference=reference,
        seed=cfg.train.seed,
        background_rows=settings.background_rows,
    )
    arrays = {
        name: explainers.get(name).impl().arrays(fitted)
        for name in dict.fromkeys([method, *AGNOSTIC])
    }
    files = {ARRAYS: write_arrays(arrays)}
    block: dict[str, Any] = {
        "method": method,
        "exact": explainers.get(method).impl().exact,
        "available": sorted(arrays),
        "samples": settings.samples,
        "background_rows": settings.background_rows,
        "seed": cfg.train.seed,
    }
    if explainers.get(method).impl().exact:
        files[FEATURES] = export_features(pipeline, signature.numeric, signature.categorical)
        block["source_columns"] = source_columns(pipeline, fitted.columns).tolist()
    return files, block


def model_output_gap(pipeline: Any, found: Any, frame: pd.DataFrame) -> float:
    """Largest difference between an exact explainer's output and the fitted pipeline's own
    output in the same space (probabilities, decision values or predictions)."""
    if not len(frame):
        return 0.0
    space = found.output_space
    if space == "probability":
        expected = np.asarray(pipeline.predict_proba(frame), dtype=np.float64)
    elif space in ("log_odds", "logit"):
        decision = np.asarray(pipeline.decision_function(frame), dtype=np.float64)
        expected = np.stack([-decision, decision], 1) if decision.ndim == 1 else decision
    else:
        expected = np.asarray(pipeline.predict(frame), dtype=np.float64).reshape(len(frame), -1)
    return float(np.max(np.abs(found.output - expected)))


def tree_agreement(pipeline: Any, explain: Any, frame: pd.DataFrame, signature: Signature) -> float:
    """Largest difference between our tree attributions (ONNX features, array-only trees)
    and ``shap.TreeExplainer`` on the fitted scikit-learn model, per encoded feature summed
    to its column, over ``frame``'s rows."""
    import shap

    from framework.explain.attributions import sum_to_columns
    from framework.explain.features import preprocessing

    estimator = pipeline.steps[-1][1]
    encoded = np.asarray(preprocessing(pipeline).transform(frame), dtype=np.float64)
    reference = np.asarray(shap.TreeExplainer(estimator).shap_values(encoded))
    if reference.ndim == 2:
        reference = reference[:, :, None]
    columns = signature.numeric + signature.categorical
    theirs = sum_to_columns(
        np.moveaxis(reference, 2, 1), source_columns(pipeline, columns), len(columns)
    )
    ours = explain(feeds_of(frame, signature)).values
    if ours.shape[1] != theirs.shape[1]:  # binary log-odds: shap gives the positive class
        ours = ours[:, -theirs.shape[1] :]
    return float(np.max(np.abs(ours - theirs))) if len(frame) else 0.0
