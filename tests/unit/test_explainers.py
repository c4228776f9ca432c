"""Explainers: exact TreeSHAP and linear attributions agree with shap and add up to the ONNX
output; KernelSHAP over ONNX Runtime equals the closed form when it enumerates every
coalition; LIME runs through the ``lime`` package; all from array-only files."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier

from framework.config import DataConfig
from framework.config.explain import ExplainConfig
from framework.errors import ConfigError
from framework.explain.features import feeds_of
from framework.explain.loader import ARRAYS, FEATURES, build_explainer, read_arrays
from framework.explain.register import explanation_files, tree_agreement
from framework.export.onnx import export_pipeline
from framework.export.predictor import OnnxPredictor
from framework.training.pipeline import build_pipeline, model_input
from tests.helpers import SMALL_SCHEMA, small_frame

REGRESSION_SCHEMA = {**SMALL_SCHEMA, "churn": {"dtype": "float", "role": "target"}}


def _data(schema: dict[str, Any], encoding: str = "onehot") -> DataConfig:
    from framework.registry import load_plugins

    load_plugins()
    from plugins.sources.csv import CsvConfig

    return DataConfig(
        name="churn",
        source=CsvConfig(path="unused.csv"),
        columns=schema,  # type: ignore[arg-type]
        cleaning={"encoding": encoding},  # type: ignore[arg-type]
    )


def _frame(regression: bool = False) -> pd.DataFrame:
    frame = small_frame(300)
    frame.loc[::11, "income"] = np.nan  # the imputer runs inside the explained graph too
    frame.loc[::7, "plan"] = None
    if regression:
        rng = np.random.default_rng(1)
        frame["churn"] = (
            frame["income"].fillna(50_000) / 1000
            + (frame["plan"] == "pro") * 20
            - frame["age"] * 0.3
            + rng.normal(0, 2, len(frame))
        )
    return frame


class Version:
    """A fitted pipeline with its ONNX export and registration-time explanation files."""

    def __init__(
        self,
        estimator: Any,
        regression: bool = False,
        method: str = "auto",
        encoding: str = "onehot",
        scale: bool = True,
        samples: int = 1024,
    ):
        self.data = _data(REGRESSION_SCHEMA if regression else SMALL_SCHEMA, encoding)
        frame = _frame(regression)
        numeric, categorical = self.data.numeric_features, self.data.categorical_features
        self.X = model_input(frame, numeric, categorical)
        self.pipeline = build_pipeline(self.data, estimator, scale=scale).fit(
            self.X, frame[self.data.target]
        )
        task = "regression" if regression else "classification"
        exported = export_pipeline(self.pipeline, numeric, categorical, task)
        self.signature = exported.signature
        self.predictor = OnnxPredictor(exported.onnx_bytes, exported.signature)
        cfg = SimpleNamespace(
            explain=ExplainConfig(method=method, samples=samples),
            train=SimpleNamespace(seed=0),
            model=SimpleNamespace(type=type(estimator).__name__),
        )
        self.files, self.block = explanation_files(
            cfg, self.pipeline, self.signature, self.X.head(200), True
        )

    def explainer(self, method: str | None = None) -> Any:
        return build_explainer(
            self.block,
            self.files[ARRAYS],
            self.files.get(FEATURES),
            self.predictor,
            self.signature,
            method,
        )

    def feeds(self, rows: int = 40) -> dict[str, np.ndarray]:
        return feeds_of(self.X.tail(rows), self.signature)

    def onnx_output(self, rows: int = 40) -> np.ndarray:
        result = self.predictor.run(self.feeds(rows))
        if result.scores is not None:
            return np.asarray(result.scores, dtype=np.float64)
        return np.asarray(result.labels, dtype=np.float64).reshape(-1, 1)


@pytest.mark.parametrize(
    ("estimator", "regression"),
    [
        (RandomForestClassifier(n_estimators=30, random_state=0), False),
        (GradientBoostingClassifier(n_estimators=30, random_state=0), False),
        (RandomForestRegressor(n_estimators=20, random_state=0), True),
        (GradientBoostingRegressor(n_estimators=30, random_state=0), True),
    ],
    ids=["random_forest", "gradient_boosting", "forest_regressor", "boosting_regressor"],
)
def test_tree_attributions_equal_shap_and_add_up_to_the_onnx_output(
    estimator: Any, regression: bool
) -> None:
    version = Version(estimator, regression, scale=False)
    assert version.block["method"] == "tree" and version.block["exact"]
    explain = version.explainer()
    # agreement: the array-only trees on ONNX-computed inputs vs shap on the sklearn model
    assert tree_agreement(version.pipeline, explain, version.X.tail(60), version.signature) < 1e-6
    found = explain(version.feeds())
    assert found.columns == ["age", "income", "plan"]  # plan's one-hot features summed back
    assert found.additivity_gap() < 1e-9
    onnx = version.onnx_output()
    if found.output_space == "probability":
        np.testing.assert_allclose(found.output, onnx, atol=1e-5)
    elif found.output_space == "log_odds":  # compared as probabilities: ONNX gives float32
        np.testing.assert_allclose(1 / (1 + np.exp(-found.output[:, 1])), onnx[:, 1], atol=1e-6)
    else:
        np.testing.assert_allclose(found.output, onnx, rtol=1e-6, atol=1e-4)


def test_multiclass_boosting_adds_up_to_its_decision_function() -> None:
    """shap's own TreeExplainer refuses multiclass gradient boosting; ours explains each
    class's logit, and the output equals the fitted model's decision function."""
    from framework.explain.register import model_output_gap

    version = Version(GradientBoostingClassifier(n_estimators=15, random_state=0), scale=False)
    frame = small_frame(300)
    frame["churn"] = np.where(frame["age"] < 35, "young", frame["churn"])  # three classes
    pipeline = version.pipeline.fit(version.X, frame["churn"])
    exported = export_pipeline(pipeline, ["age", "income"], ["plan"], "classification")
    cfg = SimpleNamespace(
        explain=ExplainConfig(), train=SimpleNamespace(seed=0), model=SimpleNamespace(type="gb")
    )
    files, block = explanation_files(cfg, pipeline, exported.signature, version.X.head(100), True)
    predictor = OnnxPredictor(exported.onnx_bytes, exported.signature)
    explain = build_explainer(block, files[ARRAYS], files[FEATURES], predictor, exported.signature)
    found = explain(feeds_of(version.X.tail(30), exported.signature))
    assert found.output_space == "logit" and found.values.shape == (30, 3, 3)
    assert found.additivity_gap() < 1e-9
    assert model_output_gap(pipeline, found, version.X.tail(30)) < 1e-6


def test_linear_attributions_are_exact_in_the_decision_space() -> None:
    version = Version(LogisticRegression(max_iter=1000))
    assert version.block["method"] == "linear"
    found = version.explainer()(version.feeds())
    assert found.output_space == "log_odds" and found.additivity_gap() < 1e-9
    onnx = version.onnx_output()
    np.testing.assert_allclose(1 / (1 + np.exp(-found.output[:, 1])), onnx[:, 1], atol=1e-6)
    np.testing.assert_allclose(found.values[:, 0], -found.values[:, 1])
    ridge = Version(Ridge(), regression=True)
    found = ridge.explainer()(ridge.feeds())
    assert found.output_space == "value" and found.additivity_gap() < 1e-9
    np.testing.assert_allclose(found.output, ridge.onnx_output(), rtol=1e-6, atol=1e-4)


def test_kernel_shap_enumerating_every_coalition_equals_the_closed_form() -> None:
    """Three columns: 6 coalitions, all enumerated. For a linear model with the same
    (weighted k-means) background, exact Shapley values are w_j (z_j - E_background[z_j])."""
    version = Version(Ridge(), regression=True)
    kernel = version.explainer("kernel")
    found = kernel(version.feeds())
    assert found.additivity_gap() < 1e-9
    np.testing.assert_allclose(found.output, version.onnx_output(), rtol=1e-6)
    background = read_arrays(version.files[ARRAYS])["kernel"]
    rows = pd.DataFrame(background["numeric"], columns=version.signature.numeric)
    for i, name in enumerate(version.signature.categorical):
        rows[name] = background["categorical"][:, i]
    encode = version.pipeline[:-1].transform
    mean = background["weights"] @ np.asarray(encode(rows), dtype=np.float64)
    coef = version.pipeline[-1].coef_.reshape(-1)
    per_feature = (np.asarray(encode(version.X.tail(40)), dtype=np.float64) - mean) * coef
    source = np.asarray(version.block.get("source_columns"))
    expected = np.stack([per_feature[:, source == c].sum(1) for c in range(3)], axis=1)
    np.testing.assert_allclose(found.values[:, 0, :], expected, rtol=1e-4, atol=1e-3)


def test_kernel_shap_explains_a_model_without_an_exact_explainer_within_its_budget() -> None:
    version = Version(MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0))
    assert version.block["method"] == "kernel" and not version.block["exact"]
    assert FEATURES not in version.files  # nothing but the ONNX session is needed
    found = version.explainer()(version.feeds(10))
    assert found.output_space == "probability"
    assert found.additivity_gap() < 1e-9
    np.testing.assert_allclose(found.output, version.onnx_output(10), atol=1e-6)
    np.testing.assert_allclose(found.values.sum(1), 0, atol=1e-6)  # probabilities sum to 1


def test_lime_is_a_registered_explainer_through_the_lime_package() -> None:
    version = Version(
        RandomForestClassifier(n_estimators=20, random_state=0), scale=False, samples=300
    )
    assert version.block["available"] == ["kernel", "lime", "tree"]
    found = version.explainer("lime")(version.feeds(3))
    assert found.method == "lime" and not found.additive and found.notes
    assert found.values.shape == (3, 2, 3) and np.abs(found.values).sum() > 0
    np.testing.assert_allclose(found.output, version.onnx_output(3), atol=1e-6)


def test_explanation_files_are_plain_arrays() -> None:
    version = Version(GradientBoostingClassifier(n_estimators=10, random_state=0), scale=False)
    import io

    with np.load(io.BytesIO(version.files[ARRAYS]), allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)


def test_an_exact_method_the_model_does_not_allow_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as refused:
        Version(MLPClassifier(hidden_layer_sizes=(4,), max_iter=50), method="tree")
    assert "explain.method: 'tree' cannot explain" in str(refused.value.problems)
    with pytest.raises(ValueError, match="did you mean 'kernel'"):
        ExplainConfig(method="kernal")
