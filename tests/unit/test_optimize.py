"""Pruning, quantization and the gate, on small models fitted in-process (no Ray)."""

from __future__ import annotations

import numpy as np
import onnx
import pandas as pd
import pytest
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

from framework.config.optimize import GateConfig, OptimizeConfig, PruningConfig, QuantizationConfig
from framework.errors import ConfigError
from framework.export.onnx import export_pipeline
from framework.export.predictor import OnnxPredictor
from framework.optimize import OptimizationReport, Variant, check_gate, measure, refusal
from framework.optimize.prune import _finetune, prune
from framework.optimize.quantize import quantize
from plugins.models._torch_estimator import TorchMLPClassifier, build_mlp
from tests.helpers import small_frame
from tests.unit.test_pipeline_export import _data, _fit


def _torch_pipeline(hidden: int = 256) -> tuple[object, pd.DataFrame, pd.Series, object]:
    """A preprocessing pipeline ending in a torch MLP trained in-process (no Ray Train)."""
    from framework.training.pipeline import build_pipeline, model_input

    data = _data()
    frame = small_frame(rows=400)
    X = model_input(frame, data.numeric_features, data.categorical_features)
    y = frame[data.target]
    estimator = TorchMLPClassifier(params={"hidden_sizes": [hidden, hidden], "batch_size": 32})
    pipeline = build_pipeline(data, estimator)
    Xt = np.asarray(pipeline[:-1].fit_transform(X, y), dtype=np.float32)
    estimator.classes_ = np.unique(y.astype(str))
    estimator.n_features_in_ = Xt.shape[1]
    estimator.net_ = build_mlp(Xt.shape[1], [hidden, hidden], 2, "relu", 0.0, False)
    _finetune(estimator, Xt, estimator._encode(y), epochs=15, seed=0)
    return pipeline, X, y, data


@pytest.fixture(scope="module")
def torch_model() -> tuple[object, pd.DataFrame, pd.Series, object]:
    return _torch_pipeline()


def _export(pipeline: object, data: object) -> object:
    return export_pipeline(
        pipeline,
        data.numeric_features,
        data.categorical_features,
        "classification",  # type: ignore[attr-defined]
    )


def _labels(model: bytes, exported: object, X: pd.DataFrame) -> np.ndarray:
    return OnnxPredictor(model, exported.signature).predict_frame(X).labels  # type: ignore[attr-defined]


def test_the_torch_network_is_spliced_into_the_pipeline_graph(torch_model) -> None:  # type: ignore[no-untyped-def]
    pipeline, X, _, data = torch_model
    exported = _export(pipeline, data)
    graph = onnx.load_from_string(exported.onnx_bytes).graph
    assert [i.name for i in graph.input] == ["numeric", "categorical"]
    proba = OnnxPredictor(exported.onnx_bytes, exported.signature).predict_frame(X).scores
    np.testing.assert_allclose(proba, pipeline.predict_proba(X), atol=1e-5)


@pytest.mark.parametrize("method", ["dynamic_int8", "static_int8", "float16"])
def test_quantized_graphs_are_smaller_and_agree(torch_model, method: str) -> None:  # type: ignore[no-untyped-def]
    pipeline, X, _, data = torch_model
    exported = _export(pipeline, data)
    predictor = OnnxPredictor(exported.onnx_bytes, exported.signature)
    calibration = [predictor.feeds_from_frame(X.iloc[i : i + 32]) for i in range(0, 128, 32)]
    quantized = quantize(exported.onnx_bytes, QuantizationConfig(method=method), calibration)
    ratio = len(exported.onnx_bytes) / len(quantized)
    assert ratio > (3.0 if "int8" in method else 1.5), ratio
    agreement = (
        _labels(quantized, exported, X) == _labels(exported.onnx_bytes, exported, X)
    ).mean()
    assert agreement > 0.95


def test_structured_pruning_removes_neurons_and_keeps_parity(torch_model) -> None:  # type: ignore[no-untyped-def]
    pipeline, X, y, data = torch_model
    pruned, info = prune(
        pipeline, PruningConfig(method="structured", sparsity=0.5, finetune_epochs=3), X, y, 0
    )
    assert info["hidden_before"] == 512 and info["hidden_after"] == 256
    assert info["params_after"] < info["params_before"] / 3
    exported = _export(pruned, data)
    assert len(exported.onnx_bytes) < len(_export(pipeline, data).onnx_bytes) / 2.5
    proba = OnnxPredictor(exported.onnx_bytes, exported.signature).predict_frame(X).scores
    np.testing.assert_allclose(proba, pruned.predict_proba(X), atol=1e-5)
    assert pipeline.steps[-1][1].net_[0].out_features == 256  # the parent is left as it was
    assert (pruned.predict(X) == y.astype(str).to_numpy()).mean() > 0.7


def test_magnitude_pruning_reaches_its_sparsity(torch_model) -> None:  # type: ignore[no-untyped-def]
    pipeline, X, y, _ = torch_model
    pruned, info = prune(
        pipeline, PruningConfig(method="magnitude", sparsity=0.6, finetune_epochs=2), X, y, 0
    )
    assert info["sparsity"] >= 0.59
    net = pruned.steps[-1][1].net_
    assert not any(name.endswith("_orig") for name, _ in net.named_parameters())


@pytest.mark.parametrize(
    "model",
    [
        RandomForestClassifier(n_estimators=40, random_state=0),
        GradientBoostingClassifier(n_estimators=40, random_state=0),
    ],
)
def test_tree_ensembles_keep_fewer_trees(model: object) -> None:
    data = _data()
    frame = small_frame(rows=300)
    pipeline, X = _fit(data, model, frame, scale=False)
    pruned, info = prune(
        pipeline, PruningConfig(method="trees", keep_trees=0.5), X, frame[data.target], 0
    )
    assert info == {**info, "trees_before": 40.0, "trees_after": 20.0}
    parent = _export(pipeline, data)
    smaller = _export(pruned, data)
    assert len(smaller.onnx_bytes) < 0.7 * len(parent.onnx_bytes)
    proba = OnnxPredictor(smaller.onnx_bytes, smaller.signature).predict_frame(X).scores
    np.testing.assert_allclose(proba, pruned.predict_proba(X), atol=1e-5)


def test_pruning_a_model_it_does_not_fit_names_the_field() -> None:
    data = _data()
    frame = small_frame(rows=200)
    pipeline, X = _fit(data, RandomForestClassifier(n_estimators=5), frame, scale=False)
    with pytest.raises(ConfigError, match=r"optimize\.pruning\.method: 'structured' needs a torch"):
        prune(pipeline, PruningConfig(method="structured"), X, frame[data.target], 0)


def _variant(name: str, accuracy: float, rows_per_s: float, size: int) -> Variant:
    return Variant(name, b"x" * size, {"accuracy": accuracy}, 10.0, rows_per_s)


def test_the_gate_says_which_limit_and_by_how_much() -> None:
    parent = _variant("float", 0.95, 1000, 4000)
    chosen = _variant("dynamic_int8", 0.93, 1500, 1000)
    report = OptimizationReport(parent, [chosen], "accuracy", {})
    report.gate = check_gate(
        report, GateConfig(max_quality_drop=1.0, min_speedup=2.0, max_size_mb=0.0005)
    )
    error = refusal(report)
    assert error is not None and error.exit_code == 4
    text = str(error)
    assert "max_quality_drop: accuracy fell 2.00 points (0.9500 -> 0.9300)" in text
    assert "over by 1.00" in text
    assert "min_speedup: dynamic_int8 runs 1.50x" in text and "short by 0.50x" in text
    assert "max_size_mb: dynamic_int8 is 0.001 MB" in text
    report.gate = check_gate(report, GateConfig(max_quality_drop=3.0))
    assert refusal(report) is None and report.gate["size_ratio"] == 4.0


def test_measure_reports_quality_latency_and_throughput(torch_model) -> None:  # type: ignore[no-untyped-def]
    pipeline, X, y, data = torch_model
    exported = _export(pipeline, data)
    config = OptimizeConfig(runs=20, batch_rows=64)
    variant = measure("float", exported.onnx_bytes, exported, X, y.astype(str), config)
    assert 0.7 < variant.metrics["accuracy"] <= 1.0
    assert variant.p50_us > 0 and variant.rows_per_s > 1000


def test_the_regressor_exports_with_parity_and_quantizes() -> None:
    from framework.training.pipeline import build_pipeline, model_input
    from plugins.models._torch_estimator import TorchMLPRegressor

    data = _data()
    frame = small_frame(rows=300)
    X = model_input(frame, data.numeric_features, data.categorical_features)
    y = frame["age"].astype(float)
    estimator = TorchMLPRegressor(params={"hidden_sizes": [64], "batch_size": 32})
    pipeline = build_pipeline(data, estimator)
    Xt = np.asarray(pipeline[:-1].fit_transform(X, y), dtype=np.float32)
    estimator.n_features_in_ = Xt.shape[1]
    estimator.net_ = build_mlp(Xt.shape[1], [64], 1, "tanh", 0.0, True).eval()
    _finetune(estimator, Xt, estimator._encode(y), epochs=5, seed=0)
    exported = export_pipeline(
        pipeline, data.numeric_features, data.categorical_features, "regression"
    )
    values = OnnxPredictor(exported.onnx_bytes, exported.signature).predict_frame(X).labels
    np.testing.assert_allclose(values, pipeline.predict(X), rtol=1e-4, atol=1e-3)
    quantized = quantize(exported.onnx_bytes, QuantizationConfig(method="dynamic_int8"), [])
    q_values = OnnxPredictor(quantized, exported.signature).predict_frame(X).labels
    assert np.abs(q_values - values).max() < 0.05 * np.abs(values).max() + 1


def test_cost_complexity_pruning_refits_smaller_trees() -> None:
    data = _data()
    frame = small_frame(rows=300)
    pipeline, X = _fit(
        data, RandomForestClassifier(n_estimators=10, random_state=0), frame, scale=False
    )
    full = sum(t.tree_.node_count for t in pipeline.steps[-1][1].estimators_)
    _, info = prune(
        pipeline, PruningConfig(method="trees", ccp_alpha=0.01), X, frame[data.target], 0
    )
    assert info["nodes"] < full / 2
    assert info["trees_after"] == 10
