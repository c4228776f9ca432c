"""Serving requests against the data schema: records and Open Inference Protocol tensors."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest

from framework.config.data import ColumnSpec
from framework.export.onnx import CATEGORICAL_INPUT, NUMERIC_INPUT, Signature
from framework.serving.schema import RequestInvalid, RequestSchema
from framework.training.pipeline import MISSING_CATEGORY

COLUMNS = {
    "age": ColumnSpec(dtype="int", min=0, max=120, nullable=False),
    "income": ColumnSpec(dtype="float", min=0),
    "score": ColumnSpec(dtype="float"),
    "plan": ColumnSpec(dtype="category", categories=["basic", "plus", "pro"]),
    "city": ColumnSpec(dtype="category"),
    "churn": ColumnSpec(dtype="category", role="target", nullable=False),
}
SIGNATURE = Signature(
    task="classification",
    numeric=["age", "income", "score"],
    categorical=["plan", "city"],
    outputs=["label", "probabilities"],
    classes=["no", "yes"],
)
GOOD = {"age": 41, "income": 52000.5, "score": -1.25, "plan": "pro", "city": "Lyon"}


@pytest.fixture(scope="module")
def schema() -> RequestSchema:
    return RequestSchema("churn", COLUMNS, SIGNATURE)


def feeds_of(schema: RequestSchema, records: Any) -> dict[str, np.ndarray]:
    return schema.records_to_feeds(records, json.dumps(records, allow_nan=True).encode())


def problems_of(call: Any) -> list[dict[str, Any]]:
    with pytest.raises(RequestInvalid) as info:
        call()
    return [p.as_dict() for p in info.value.problems]


def test_valid_records_become_the_two_onnx_inputs(schema: RequestSchema) -> None:
    feeds = feeds_of(schema, [GOOD, {**GOOD, "age": 30, "plan": "basic"}])
    np.testing.assert_allclose(
        feeds[NUMERIC_INPUT], [[41, 52000.5, -1.25], [30, 52000.5, -1.25]], rtol=1e-6
    )
    assert feeds[NUMERIC_INPUT].dtype == np.float32
    assert feeds[CATEGORICAL_INPUT].tolist() == [["pro", "Lyon"], ["basic", "Lyon"]]


def test_nullable_columns_may_be_missing_or_null(schema: RequestSchema) -> None:
    feeds = feeds_of(schema, [{"age": 5}, {"age": 6, "income": None, "plan": None}])
    assert np.isnan(feeds[NUMERIC_INPUT][:, 1:]).all()
    assert feeds[CATEGORICAL_INPUT].tolist() == [[MISSING_CATEGORY] * 2] * 2


@pytest.mark.parametrize(
    ("row", "field", "kind"),
    [
        ({**GOOD, "income": "52000"}, "income", "float_type"),
        ({**GOOD, "income": True}, "income", "float_type"),
        ({**GOOD, "age": 41.5}, "age", "int_type"),
        ({**GOOD, "age": 121}, "age", "less_than_equal"),
        ({**GOOD, "income": -1.0}, "income", "greater_than_equal"),
        ({**GOOD, "plan": "gold"}, "plan", "literal_error"),
        ({**GOOD, "city": 7}, "city", "string_type"),
        ({**GOOD, "tenure": 3}, "tenure", "extra_forbidden"),
        ({k: v for k, v in GOOD.items() if k != "age"}, "age", "missing"),
        ({**GOOD, "age": None}, "age", "int_type"),
        ({**GOOD, "churn": "yes"}, "churn", "extra_forbidden"),
    ],
)
def test_every_bad_value_is_named_by_row_and_field(
    schema: RequestSchema, row: dict[str, Any], field: str, kind: str
) -> None:
    found = problems_of(lambda: feeds_of(schema, [GOOD, row]))
    assert [(p["row"], p["field"], p["type"]) for p in found] == [(1, field, kind)]
    assert found[0]["loc"] == ["body", 1, field]


def test_all_problems_are_reported_at_once(schema: RequestSchema) -> None:
    rows = [{**GOOD, "age": -1, "plan": "gold"}, GOOD, {**GOOD, "income": "x"}]
    found = problems_of(lambda: feeds_of(schema, rows))
    assert {(p["row"], p["field"]) for p in found} == {(0, "age"), (0, "plan"), (2, "income")}


def test_non_finite_numbers_are_refused(schema: RequestSchema) -> None:
    found = problems_of(lambda: feeds_of(schema, [{**GOOD, "score": float("inf")}]))
    assert found[0]["field"] == "score" and found[0]["type"] == "finite_number"


def test_a_body_that_is_not_rows_is_refused(schema: RequestSchema) -> None:
    assert problems_of(lambda: feeds_of(schema, "rows"))[0]["loc"] == ["body"]
    found = problems_of(lambda: feeds_of(schema, [GOOD, 3]))
    assert found[0]["row"] == 1


def random_row(rng: random.Random) -> dict[str, Any]:
    row: dict[str, Any] = dict(GOOD)
    choice = rng.random()
    if choice < 0.15:
        row["income"] = rng.choice(["1", True, -5.0, None, 3])
    elif choice < 0.3:
        row["age"] = rng.choice([1.5, None, -1, 200, "7", 64])
    elif choice < 0.45:
        row["plan"] = rng.choice(["gold", None, 1, "plus"])
    elif choice < 0.55:
        row.pop(rng.choice(list(row)))
    elif choice < 0.6:
        row["extra"] = 1
    else:
        row["score"] = rng.uniform(-1e6, 1e6)
    return row


def test_the_vectorized_path_agrees_with_the_pydantic_model(schema: RequestSchema) -> None:
    """Whatever the fast path accepts, the pydantic model accepts with the same feeds."""
    rng = random.Random(7)
    for _ in range(300):
        rows = [random_row(rng) for _ in range(rng.randint(1, 6))]
        try:
            fast = feeds_of(schema, rows)
        except RequestInvalid:
            fast = None
        try:
            careful = schema._careful(rows)
        except RequestInvalid:
            careful = None
        assert (fast is None) == (careful is None), rows
        if fast is not None and careful is not None:
            np.testing.assert_array_equal(fast[NUMERIC_INPUT], careful[NUMERIC_INPUT])
            assert fast[CATEGORICAL_INPUT].tolist() == careful[CATEGORICAL_INPUT].tolist()


def test_v2_tensors_in_the_models_own_layout(schema: RequestSchema) -> None:
    inputs = [
        {"name": "numeric", "datatype": "FP32", "shape": [2, 3], "data": [41, 1.5, 0, 30, 2, 1]},
        {"name": "categorical", "datatype": "BYTES", "shape": [2, 2], "data": ["pro", "a"] * 2},
    ]
    feeds, rows = schema.tensors_to_feeds(inputs, max_rows=10, strict=False)
    assert rows == 2
    np.testing.assert_allclose(feeds[NUMERIC_INPUT], [[41, 1.5, 0], [30, 2, 1]])
    assert feeds[CATEGORICAL_INPUT].tolist() == [["pro", "a"], ["pro", "a"]]


def test_v2_tensors_one_per_feature(schema: RequestSchema) -> None:
    inputs = [
        {"name": "age", "datatype": "INT64", "shape": [2], "data": [41, 30]},
        {"name": "plan", "datatype": "BYTES", "shape": [2], "data": ["pro", None]},
    ]
    feeds, rows = schema.tensors_to_feeds(inputs, max_rows=10)
    assert rows == 2
    assert feeds[NUMERIC_INPUT][:, 0].tolist() == [41, 30]
    assert np.isnan(feeds[NUMERIC_INPUT][:, 1:]).all()
    assert feeds[CATEGORICAL_INPUT].tolist() == [["pro", MISSING_CATEGORY], [MISSING_CATEGORY] * 2]


def test_v2_bad_values_point_at_the_data_index(schema: RequestSchema) -> None:
    inputs = [
        {"name": "numeric", "datatype": "FP32", "shape": [2, 3], "data": [41, -1, 0, 30, 2, "x"]},
        {"name": "categorical", "datatype": "BYTES", "shape": [2, 2], "data": ["pro", "a"] * 2},
    ]
    found = problems_of(lambda: schema.tensors_to_feeds(inputs, max_rows=10, strict=False))
    by_field = {p["field"]: p for p in found}
    assert set(by_field) == {"income", "score"}
    assert by_field["income"]["loc"] == ["body", "inputs", 0, "data", 1]
    assert by_field["income"]["row"] == 0
    assert by_field["score"]["loc"] == ["body", "inputs", 0, "data", 5]
    assert by_field["score"]["row"] == 1


@pytest.mark.parametrize(
    ("inputs", "where"),
    [
        ([{"name": "numeric", "shape": [2, 3], "data": [1, 2, 3]}], "data"),
        ([{"name": "numeric", "shape": [1, 4], "data": [1, 2, 3, 4]}], "shape"),
        ([{"name": "bogus", "shape": [1], "data": [1]}], "name"),
        ([{"name": "age", "shape": [11], "data": [1] * 11}], "shape"),
        ([{"name": "income", "shape": [1], "data": [1.0]}], "age"),
        ([{"shape": [1], "data": [1]}], 0),
    ],
)
def test_v2_malformed_tensors(schema: RequestSchema, inputs: list[Any], where: Any) -> None:
    found = problems_of(lambda: schema.tensors_to_feeds(inputs, max_rows=10))
    assert any(where in p["loc"] for p in found), found


def test_the_row_model_documents_the_schema(schema: RequestSchema) -> None:
    doc = schema.row_model.model_json_schema()
    assert doc["additionalProperties"] is False
    assert doc["required"] == ["age"]
    assert doc["properties"]["age"]["minimum"] == 0
    assert doc["properties"]["age"]["maximum"] == 120
    plan = json.dumps(doc["properties"]["plan"])
    assert "basic" in plan and "pro" in plan
