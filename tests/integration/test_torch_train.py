"""Torch models on Ray Train: two workers, checkpoints, resuming, one exported ONNX graph."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnx
import pytest

from framework.config.train import DistributedConfig
from framework.training.job import train
from framework.training.torch_train import NetSpec, fit_torch, run_name
from plugins.models._torch_estimator import build_mlp
from tests.helpers import small_frame
from tests.integration.test_train_job import _churn_csv, _config, _stages

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_cluster")]


def _data(rows: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    return X, y


def test_an_interrupted_run_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    X, y = _data()
    build = functools.partial(build_mlp, 6, [16], 2, "relu", 0.0, False)
    distributed = DistributedConfig(
        workers=2, storage_path=str(tmp_path / "runs"), checkpoint_every=1
    )
    crashing = NetSpec(
        build=build, task="classification", epochs=4, patience=None, fail_after_epoch=1
    )
    name = run_name(crashing, X, y, "test")
    with pytest.raises(Exception, match="injected failure after epoch 1"):
        fit_torch(crashing, X, y, None, None, distributed, name)
    assert list((tmp_path / "runs" / name).glob("checkpoint_*"))

    healthy = NetSpec(build=build, task="classification", epochs=4, patience=None)
    assert run_name(healthy, X, y, "test") == name
    result = fit_torch(healthy, X, y, None, None, distributed, name)
    assert result.resumed_from == 1
    assert [h["epoch"] for h in result.history] == [0, 1, 2, 3]
    assert set(result.state_dict) == set(build().state_dict())


def test_torch_mlp_on_two_workers_pruned_quantized_and_registered(tmp_path: Path) -> None:
    cfg = _config(
        tmp_path,
        _churn_csv(tmp_path, small_frame(rows=400)),
        {"type": "torch_mlp", "hidden_sizes": [64, 64], "epochs": 6, "patience": 3},
        train={
            "latency_runs": 20,
            "distributed": {"workers": 2, "storage_path": str(tmp_path / "runs")},
        },
        optimize={
            "pruning": {"method": "structured", "sparsity": 0.5, "finetune_epochs": 2},
            "quantization": {"method": "dynamic_int8"},
            "gate": {"max_quality_drop": 10.0},
            "runs": 20,
        },
    )
    result = train(cfg, tmp_path / "run", _stages())
    estimator = result.pipeline.steps[-1][1]
    assert 1 <= len(estimator.history_) <= 6
    assert estimator.history_[-1]["val_loss"] > 0  # early stopping watched the validation split
    assert result.parity.label_agreement == 1.0
    assert result.evaluation.metrics["accuracy"] > 0.6
    version = result.version
    assert version is not None
    graph = onnx.load(str(version.file("model.onnx"))).graph
    assert [i.name for i in graph.input] == ["numeric", "categorical"]
    assert [o.name for o in graph.output] == ["label", "probabilities"]
    ops = {node.op_type for node in graph.node}
    assert {"Softmax", "ArgMax"} <= ops
    assert any("Integer" in op or "Quantize" in op for op in ops), ops  # int8 dense layers
    assert version.manifest["model_type"] == "torch_mlp"
    # the registered file is the pruned, quantized variant; the float parent is kept beside it
    optimization = version.manifest["optimization"]
    assert optimization["chosen"] == "pruned-structured+dynamic_int8"
    assert [v["name"] for v in optimization["variants"]] == [
        "pruned-structured",
        "pruned-structured+dynamic_int8",
    ]
    assert version.file("model.onnx").stat().st_size < version.file("parent.onnx").stat().st_size
    assert optimization["variants"][0]["info"]["hidden_after"] == 64
    assert (tmp_path / "run" / "optimization.json").is_file()
    version.verify()


def test_the_gate_refuses_a_variant_past_its_limit(tmp_path: Path) -> None:
    from framework.errors import ModelRefusedError
    from framework.store.registry import ModelRegistry

    cfg = _config(
        tmp_path,
        _churn_csv(tmp_path, small_frame(rows=300)),
        {"type": "logistic_regression"},
        optimize={
            "quantization": {"method": "dynamic_int8"},
            "gate": {"max_size_mb": 0.0001},
            "runs": 20,
        },
    )
    with pytest.raises(ModelRefusedError, match=r"optimize\.gate\.max_size_mb: dynamic_int8 is"):
        train(cfg, tmp_path / "run", _stages())
    assert ModelRegistry(tmp_path / "registry").versions("churn") == []
