"""Infra validation's own parts: the replayed rows and the comparison with ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from framework.export.predictor import Prediction
from framework.monitoring.drift import reference_sample
from framework.shipping.infra import compare, reference_records
from framework.store.registry import ModelRegistry

SCHEMA = {
    "age": {"dtype": "int"},
    "balance": {"dtype": "float"},
    "active": {"dtype": "bool"},
    "plan": {"dtype": "category", "categories": ["basic", "pro"]},
}
SIGNATURE = {"numeric": ["age", "balance", "active"], "categorical": ["plan"]}


def _version(tmp_path: Path):  # a real registered version holding a reference sample
    reference = reference_sample(
        {
            "age": np.array([31.0, 45.0, np.nan]),
            "balance": np.array([10.5, np.nan, 3.25]),
            "active": np.array([1.0, 0.0, 1.0]),
            "plan": np.array(["pro", None, "basic"], dtype=object),
        },
        ("churned", np.array(["no", "yes", "no"])),
    )
    store = ModelRegistry(tmp_path / "registry", tmp_path / "audit.key")
    manifest = {"schema": SCHEMA, "signature": SIGNATURE}
    return store.register("churn", {"reference.npz": reference}, manifest)


def test_replayed_rows_are_typed_as_the_schema_says(tmp_path: Path) -> None:
    records = reference_records(_version(tmp_path), rows=10, seed=0)
    assert len(records) == 3  # no more than the sample holds
    by_plan = {r["plan"]: r for r in records}
    assert by_plan["pro"] == {"age": 31, "balance": 10.5, "active": True, "plan": "pro"}
    assert by_plan[None] == {"age": 45, "balance": None, "active": False, "plan": None}
    assert by_plan["basic"]["age"] is None  # missing stays missing (null), never 0
    assert all(type(r["age"]) in (int, type(None)) for r in records)
    assert reference_records(_version(tmp_path / "again"), rows=2, seed=0) == records[:2]


def test_answers_equal_the_offline_prediction_within_the_tolerance() -> None:
    offline = Prediction(np.array(["yes"]), np.array([[0.25, 0.75]], dtype=np.float32))
    classes = ["no", "yes"]
    body = {"predictions": [{"label": "yes", "probabilities": {"no": 0.25, "yes": 0.75}}]}
    assert compare(body, offline, 0, classes, 1e-5) is None
    rounded = {"predictions": [{"label": "yes", "probabilities": {"no": 0.250000, "yes": 0.75}}]}
    assert compare(rounded, offline, 0, classes, 0.0) is None  # 6-decimal rounding allowed
    other = {"predictions": [{"label": "no", "probabilities": {"no": 0.25, "yes": 0.75}}]}
    assert "served label 'no', offline 'yes'" in str(compare(other, offline, 3, classes, 1e-5))
    off = {"predictions": [{"label": "yes", "probabilities": {"no": 0.2, "yes": 0.8}}]}
    assert "row 1: served P(no)=0.2" in str(compare(off, offline, 1, classes, 1e-5))
    value = Prediction(np.array([2.5]), None)
    assert compare({"predictions": [{"value": 2.5}]}, value, 0, [], 1e-5) is None
    assert "served value 2.6" in str(compare({"predictions": [{"value": 2.6}]}, value, 0, [], 1e-5))
