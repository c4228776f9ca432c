"""The train graph on a real local Ray cluster, from typed config to a registered version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from framework import config
from framework.config.hydra_defaults import defaults_node
from framework.errors import DataValidationError
from framework.export.onnx import Signature
from framework.export.predictor import OnnxPredictor
from framework.progress import Stages
from framework.store.registry import ModelRegistry
from framework.training.job import train
from tests.helpers import SMALL_SCHEMA, small_frame

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_cluster")]


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            _merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


def _config(tmp_path: Path, data: dict[str, Any], model: dict[str, Any], **extra: Any):
    container = _merge(
        defaults_node(),
        {
            "data": data,
            "model": model,
            "store": {"path": str(tmp_path / "registry")},
            "train": {"latency_runs": 20},
            **extra,
        },
    )
    return config.validate(container)


def _churn_csv(tmp_path: Path, frame: pd.DataFrame, **data: Any) -> dict[str, Any]:
    """Write ``frame`` as CSV; return a data block reading it with the churn schema."""
    path = tmp_path / "churn.csv"
    frame.to_csv(path, index=False)
    return {
        "name": "churn",
        "source": {"type": "csv", "path": str(path)},
        "columns": SMALL_SCHEMA,
        **data,
    }


def _stages() -> Stages:
    return Stages(Console(quiet=True))


def test_csv_with_categories_trains_exports_and_registers(tmp_path: Path) -> None:
    frame = small_frame(rows=300)
    frame["income"] = frame["income"].astype(object)
    frame.loc[::11, "income"] = "NaN"
    frame.loc[5, "plan"] = "gold"  # not a declared category: repaired to missing
    cfg = _config(
        tmp_path,
        _churn_csv(tmp_path, frame, balance={"method": "class_weight"}),
        {"type": "logistic_regression"},
    )
    result = train(cfg, tmp_path / "run", _stages())

    assert result.report.failures_of("income", "missing_token")[0].count == len(frame.loc[::11])
    assert result.report.failures_of("plan", "category")[0].count == 1
    assert result.evaluation.metrics["accuracy"] > 0.7
    assert set(result.evaluation.subgroups["region"]) == {"north", "south"}
    assert result.parity.label_agreement == 1.0
    assert result.exported.signature.categorical == ["plan"]

    version = result.version
    assert version is not None and version.version == 1 and result.alias == "champion"
    for name in (
        "model.onnx",
        "manifest.json",
        "profile.json",
        "metrics.json",
        "validation_report.json",
        "model_card.md",
    ):
        assert (version.path / name).is_file(), name
    version.verify()
    manifest = version.manifest
    assert manifest["data"]["fingerprint"] == result.fingerprint
    assert manifest["config"]["model"]["type"] == "logistic_regression"
    assert {"scikit-learn", "onnxruntime", "ray"} <= set(manifest["packages"])
    assert manifest["parent_version"] is None and manifest["code_version"]
    assert "region" in (version.path / "model_card.md").read_text()
    assert json.loads((tmp_path / "run" / "validation_report.json").read_text())["rows_in"] == 300

    # The registered ONNX file predicts what the in-memory evaluation measured.
    predictor = OnnxPredictor(
        str(version.path / "model.onnx"), Signature.from_dict(manifest["signature"])
    )
    out = predictor.predict_records([{"age": 30, "income": 90000.0, "plan": "pro"}])
    assert out.labels[0] in ("yes", "no") and np.isclose(out.scores.sum(), 1.0)

    again = train(cfg, tmp_path / "run2", _stages())
    assert again.version is not None and again.version.version == 2
    assert again.alias == "challenger" and again.version.manifest["parent_version"] == 1
    assert ModelRegistry(cfg.store.path).aliases("churn") == {"champion": 1, "challenger": 2}


def test_parquet_regression_with_sensitive_subgroups(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame(
        {"x1": rng.normal(size=n), "x2": rng.normal(size=n), "group": rng.choice(["a", "b"], n)}
    )
    frame["y"] = 3 * frame.x1 - frame.x2 + rng.normal(0, 0.1, n) + 10
    path = tmp_path / "data.parquet"
    frame.to_parquet(path)
    cfg = _config(
        tmp_path,
        {
            "name": "reg",
            "source": {"type": "parquet", "path": str(path)},
            "columns": {
                "x1": {},
                "x2": {},
                "group": {"dtype": "category", "role": "sensitive"},
                "y": {"role": "target", "nullable": False},
            },
            "split": {"stratify": False},
        },
        {"type": "ridge"},
        train={"dry_run": True, "latency_runs": 20},
    )
    result = train(cfg, tmp_path / "run", _stages())
    assert result.evaluation.metrics["r2"] > 0.95
    assert set(result.evaluation.subgroups["group"]) == {"a", "b"}
    assert result.version is None and not (tmp_path / "registry").exists()


def test_fail_policy_stops_the_run_and_keeps_the_report(tmp_path: Path) -> None:
    frame = small_frame(rows=100)
    frame.loc[3, "age"] = 500
    cfg = _config(
        tmp_path,
        _churn_csv(tmp_path, frame, checks={"range": "fail"}),
        {"type": "random_forest", "n_estimators": 10},
    )
    with pytest.raises(DataValidationError, match="age: 1 row"):
        train(cfg, tmp_path / "run", _stages())
    saved = json.loads((tmp_path / "run" / "validation_report.json").read_text())
    assert saved["failures"][0]["examples"][0]["value"] == "500"
    assert not (tmp_path / "registry").exists()
