"""Exact TreeSHAP (path-dependent) for tree ensembles, from array-only files.

At registration the fitted trees are written as plain arrays (children, split features,
thresholds, node values, node sample weights). At serving they are handed to shap's
TreeSHAP as a tree dictionary, so no scikit-learn object is ever unpickled; the encoded
inputs come from ``explain_features.onnx``. The values equal ``shap.TreeExplainer`` on the
fitted scikit-learn model (a test checks it to 1e-6).
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

import numpy as np

from framework.explain.attributions import Attributions, sum_to_columns
from framework.explain.base import Context, Explainer, ExplainerConfig, ExplainerPlugin, Fitted
from framework.registry import explainers

_FIELDS = ("children_left", "children_right", "children_default", "features", "thresholds")
_FORESTS = {
    "RandomForestClassifier",
    "ExtraTreesClassifier",
    "RandomForestRegressor",
    "ExtraTreesRegressor",
}
_SINGLE = {"DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier"}
_BOOSTED = {"GradientBoostingClassifier", "GradientBoostingRegressor"}


class TreeConfig(ExplainerConfig):
    type: Literal["tree"] = "tree"


def _tree_arrays(tree: Any, normalize: bool, scaling: float, column: int | None, outputs: int):
    values = tree.value.reshape(tree.value.shape[0], -1).astype(np.float64)
    if normalize:
        values = values / values.sum(axis=1, keepdims=True)
    values = values * scaling
    if column is not None:  # a boosted per-class tree: its one value goes to its class's column
        spread = np.zeros((values.shape[0], outputs))
        spread[:, column] = values[:, 0]
        values = spread
    left = tree.children_left.astype(np.int32)
    default = left
    if hasattr(tree, "missing_go_to_left"):
        default = np.where(tree.missing_go_to_left, left, tree.children_right).astype(np.int32)
    return {
        "children_left": left,
        "children_right": tree.children_right.astype(np.int32),
        "children_default": default.astype(np.int32),
        "features": tree.feature.astype(np.int32),
        "thresholds": tree.threshold.astype(np.float64),
        "values": values,
        "node_sample_weight": tree.weighted_n_node_samples.astype(np.float64),
    }


def extract(
    estimator: Any, sample: np.ndarray
) -> tuple[list[dict[str, np.ndarray]], np.ndarray, str, bool]:
    """The trees of ``estimator`` as shap tree dictionaries, its base offset per output,
    the output space, and whether a binary log-odds output stands for two classes."""
    kind = type(estimator).__name__
    classifier = hasattr(estimator, "classes_")
    if kind in _FORESTS or kind in _SINGLE:
        members = [estimator] if kind in _SINGLE else list(estimator.estimators_)
        scaling = 1.0 / len(members)
        trees = [_tree_arrays(m.tree_, classifier, scaling, None, 0) for m in members]
        outputs = trees[0]["values"].shape[1]
        space = "probability" if classifier else "value"
        return trees, np.zeros(outputs), space, False
    stages = estimator.estimators_  # (n_stages, K)
    k = stages.shape[1]
    rate = float(estimator.learning_rate)
    trees = [
        _tree_arrays(stages[s, c].tree_, False, rate, c if k > 1 else None, k)
        for s in range(stages.shape[0])
        for c in range(k)
    ]
    # The initial raw prediction (the prior): the decision minus what the trees add.
    x0 = sample[:1].astype(np.float32)
    added = np.zeros(k)
    for s in range(stages.shape[0]):
        for c in range(k):
            added[c] += rate * float(stages[s, c].predict(x0)[0])
    raw = np.atleast_1d(
        estimator.decision_function(x0) if classifier else estimator.predict(x0)
    ).reshape(-1)
    base = raw[:k] - added
    if not classifier:
        return trees, base, "value", False
    return trees, base, "log_odds" if k == 1 else "logit", k == 1


@explainers.register("tree", config=TreeConfig)
class TreeShap(ExplainerPlugin):
    exact = True

    def supports(self, estimator: Any) -> bool:
        return type(estimator).__name__ in _FORESTS | _SINGLE | _BOOSTED and hasattr(
            estimator, "n_features_in_"
        )

    def arrays(self, fitted: Fitted) -> dict[str, np.ndarray]:
        from framework.explain.features import preprocessing

        estimator = fitted.pipeline.steps[-1][1]
        sample = np.asarray(preprocessing(fitted.pipeline).transform(fitted.reference.head(1)))
        trees, base, space, binary = extract(estimator, sample)
        sizes = np.array([len(t["children_left"]) for t in trees], dtype=np.int64)
        out = {f: np.concatenate([t[f] for t in trees]) for f in (*_FIELDS, "node_sample_weight")}
        out["values"] = np.concatenate([t["values"] for t in trees])
        out["sizes"] = sizes
        out["base_offset"] = base.astype(np.float64)
        out["space"] = np.array(space)
        out["binary"] = np.array(binary)
        return out

    def load(self, arrays: dict[str, np.ndarray], context: Context) -> Explainer:
        import shap

        if context.features is None:
            raise ValueError("the tree explainer needs explain_features.onnx")
        bounds = np.concatenate([[0], np.cumsum(arrays["sizes"])])
        trees = []
        for start, stop in itertools.pairwise(bounds.tolist()):
            tree = {f: arrays[f][start:stop] for f in (*_FIELDS, "node_sample_weight")}
            tree["values"] = arrays["values"][start:stop]
            trees.append(tree)
        model = {
            "trees": trees,
            "base_offset": 0.0,
            "input_dtype": np.float32,
            "internal_dtype": np.float64,
            "tree_output": "raw_value",
        }
        explainer = shap.TreeExplainer(model)
        base = np.atleast_1d(np.asarray(explainer.expected_value, dtype=np.float64))
        base = base + arrays["base_offset"]
        space, binary = str(arrays["space"]), bool(arrays["binary"])
        source = context.source
        columns, features = context.columns, context.features
        outputs = context.outputs

        def explain(feeds: dict[str, np.ndarray]) -> Attributions:
            encoded = features(feeds)
            raw = np.asarray(explainer.shap_values(encoded, check_additivity=False))
            if raw.ndim == 2:  # one output
                raw = raw[:, :, None]
            per_column = sum_to_columns(np.moveaxis(raw, 2, 1), source, len(columns))
            rows = len(encoded)
            b = np.broadcast_to(base, (rows, len(base)))
            values, b = (
                (np.concatenate([-per_column, per_column], 1), np.concatenate([-b, b], 1))
                if binary
                else (per_column, b)
            )
            output = b + values.sum(-1)
            return Attributions("tree", space, outputs, columns, values, b, output)

        return explain
