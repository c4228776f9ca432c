"""The request rules: one scalar rule per column, its compiled (vectorized) form, and the
v1/v2 codecs that feed them. The property tests hold the compiled path to the scalar one."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framework.config.data import ColumnSpec
from framework.export.signature import CATEGORICAL_INPUT, MISSING_CATEGORY, NUMERIC_INPUT, Signature
from framework.serving.codec import decode_records
from framework.serving.problems import HttpError, RequestInvalid
from framework.serving.rules import FLOAT32_MAX, RequestRules
from framework.serving.tensors import decode_infer

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
RULES = RequestRules(COLUMNS, SIGNATURE)


def feeds_of(records: Any) -> dict[str, np.ndarray]:
    raw = json.dumps(records, allow_nan=True).encode()
    return decode_records(RULES, raw, max_rows=100)[0]


def problems_of(call: Any) -> list[dict[str, Any]]:
    with pytest.raises(RequestInvalid) as info:
        call()
    return [p.as_dict() for p in info.value.problems]


def test_valid_records_become_the_two_onnx_inputs() -> None:
    for n in (2, 8):  # the scalar rules and the compiled ones
        feeds = feeds_of([GOOD, {**GOOD, "age": 30, "plan": "basic"}] * (n // 2))
        np.testing.assert_allclose(
            feeds[NUMERIC_INPUT][:2], [[41, 52000.5, -1.25], [30, 52000.5, -1.25]], rtol=1e-6
        )
        assert feeds[NUMERIC_INPUT].dtype == np.float32
        assert feeds[CATEGORICAL_INPUT][:2].tolist() == [["pro", "Lyon"], ["basic", "Lyon"]]


def test_nullable_columns_may_be_missing_null_or_nan() -> None:
    feeds = feeds_of(
        [{"age": 5}, {"age": 6, "income": None, "plan": None}, {"age": 7, "score": math.nan}]
    )
    assert np.isnan(feeds[NUMERIC_INPUT][:2, 1:]).all() and np.isnan(feeds[NUMERIC_INPUT][2, 2])
    assert feeds[CATEGORICAL_INPUT][:2].tolist() == [[MISSING_CATEGORY] * 2] * 2


def test_integral_floats_are_integers() -> None:
    feeds = feeds_of([{**GOOD, "age": 41.0}])
    assert feeds[NUMERIC_INPUT][0, 0] == 41


@pytest.mark.parametrize(
    ("row", "field", "kind"),
    [
        ({**GOOD, "income": "52000"}, "income", "float_type"),
        ({**GOOD, "income": True}, "income", "float_type"),
        ({**GOOD, "income": [1.0]}, "income", "float_type"),
        ({**GOOD, "income": 1e39}, "income", "float32_overflow"),
        ({**GOOD, "score": -1e300}, "score", "float32_overflow"),
        ({**GOOD, "score": 10**400}, "score", "float32_overflow"),
        ({**GOOD, "age": 41.5}, "age", "int_type"),
        ({**GOOD, "age": 121}, "age", "less_than_equal"),
        ({**GOOD, "income": -1.0}, "income", "greater_than_equal"),
        ({**GOOD, "plan": "gold"}, "plan", "literal_error"),
        ({**GOOD, "city": 7}, "city", "string_type"),
        ({**GOOD, "city": {"a": 1}}, "city", "string_type"),
        ({**GOOD, "plan": ["pro"]}, "plan", "string_type"),
        ({**GOOD, "tenure": 3}, "tenure", "extra_forbidden"),
        ({k: v for k, v in GOOD.items() if k != "age"}, "age", "missing"),
        ({**GOOD, "age": None}, "age", "missing"),
        ({**GOOD, "churn": "yes"}, "churn", "extra_forbidden"),
    ],
)
@pytest.mark.parametrize("copies", [1, 6])
def test_every_bad_value_is_named_by_row_and_field(
    row: dict[str, Any], field: str, kind: str, copies: int
) -> None:
    found = problems_of(lambda: feeds_of([GOOD, row] * copies))
    assert [(p["row"], p["field"], p["type"]) for p in found][:1] == [(1, field, kind)]
    assert len(found) == copies
    assert found[0]["loc"] == ["body", 1, field]


def test_all_problems_are_reported_at_once() -> None:
    rows = [{**GOOD, "age": -1, "plan": "gold"}, GOOD, {**GOOD, "income": "x"}]
    found = problems_of(lambda: feeds_of(rows))
    assert {(p["row"], p["field"]) for p in found} == {(0, "age"), (0, "plan"), (2, "income")}


def test_a_body_that_is_not_rows_is_refused() -> None:
    assert problems_of(lambda: feeds_of("rows"))[0]["loc"] == ["body"]
    assert problems_of(lambda: feeds_of([]))[0]["loc"] == ["body"]
    assert problems_of(lambda: feeds_of([GOOD, 3]))[0]["row"] == 1
    with pytest.raises(HttpError) as info:
        decode_records(RULES, b"{rows", 10)
    assert info.value.status == 400


# -- the compiled rules against the scalar rules -------------------------------------------
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 41, 120, 121, 41.0, 41.5, -0.0, 1e39, -1e39, 3.4e38, FLOAT32_MAX]),
    st.sampled_from(["basic", "plus", "pro", "gold", "", "Lyon", "1.5", "true"]),
    st.lists(st.floats(allow_nan=False), max_size=2),
    st.just({}),
)
ROW = st.dictionaries(st.sampled_from([*GOOD, "extra"]), VALUES, max_size=7)
NEAR_GOOD = st.builds(
    lambda patch: {**GOOD, **patch},
    st.dictionaries(st.sampled_from(list(GOOD)), VALUES, max_size=2),
)


def verdict(call: Any) -> Any:
    try:
        return "ok", call()
    except RequestInvalid as exc:
        return "invalid", sorted(str(p.loc) for p in exc.problems)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(NEAR_GOOD, NEAR_GOOD, ROW, st.integers()), min_size=5, max_size=12))
def test_compiled_records_path_agrees_with_the_scalar_rules(rows: list[Any]) -> None:
    raw = json.dumps(rows, allow_nan=True).encode()
    fast = verdict(lambda: RULES.records(rows, raw))
    scalar = verdict(lambda: RULES._scalar_records(rows))
    assert fast[0] == scalar[0], (rows, fast, scalar)
    if fast[0] == "ok":
        np.testing.assert_array_equal(fast[1][NUMERIC_INPUT], scalar[1][NUMERIC_INPUT])
        assert fast[1][CATEGORICAL_INPUT].tolist() == scalar[1][CATEGORICAL_INPUT].tolist()
    else:
        assert fast[1] == scalar[1]


@settings(max_examples=300, deadline=None)
@given(st.lists(VALUES, min_size=3, max_size=3), st.lists(VALUES, min_size=3, max_size=3))
def test_compiled_column_path_agrees_with_the_scalar_rules(
    age: list[Any], income: list[Any]
) -> None:
    columns = {"age": age, "income": income}

    def where(column: str, row: int) -> tuple[Any, ...]:
        return (column, row)

    # the codec allows the compiled path only to bodies without JSON booleans
    allowed = not any(type(v) is bool for v in age + income)
    fast = verdict(lambda: RULES.columns(columns, 3, where, {"age", "income"}, fast=allowed))
    scalar = verdict(lambda: RULES.columns(columns, 3, where, {"age", "income"}, fast=False))
    assert fast[0] == scalar[0]
    if fast[0] == "ok":
        np.testing.assert_array_equal(fast[1][NUMERIC_INPUT], scalar[1][NUMERIC_INPUT])
    else:
        assert fast[1] == scalar[1]


# -- Open Inference Protocol tensors ----------------------------------------------------------
def infer(body: Any, tail: bytes = b"") -> Any:
    raw = json.dumps(body).encode()
    header = str(len(raw)) if tail else None
    return decode_infer(RULES, raw + tail, header, max_rows=10)


def test_v2_tensors_in_the_models_own_layout_flat_or_nested() -> None:
    for data in ([41, 1.5, 0, 30, 2, 1], [[41, 1.5, 0], [30, 2, 1]]):
        request = infer(
            {
                "inputs": [
                    {"name": "numeric", "datatype": "FP32", "shape": [2, 3], "data": data},
                    {
                        "name": "categorical",
                        "datatype": "BYTES",
                        "shape": [2, 2],
                        "data": ["pro", "a"] * 2,
                    },
                ]
            }
        )
        assert request.rows == 2
        np.testing.assert_allclose(request.feeds[NUMERIC_INPUT], [[41, 1.5, 0], [30, 2, 1]])
        assert request.feeds[CATEGORICAL_INPUT].tolist() == [["pro", "a"], ["pro", "a"]]
        assert request.outputs == {"label": False, "probabilities": False}


def test_v2_tensors_one_per_feature() -> None:
    request = infer(
        {
            "inputs": [
                {"name": "age", "datatype": "INT64", "shape": [2], "data": [41, 30]},
                {"name": "plan", "datatype": "BYTES", "shape": [2], "data": ["pro", None]},
            ]
        }
    )
    assert request.feeds[NUMERIC_INPUT][:, 0].tolist() == [41, 30]
    assert np.isnan(request.feeds[NUMERIC_INPUT][:, 1:]).all()
    assert request.feeds[CATEGORICAL_INPUT].tolist() == [
        ["pro", MISSING_CATEGORY],
        [MISSING_CATEGORY] * 2,
    ]


def test_v2_binary_tensors_as_tritonclient_sends_them() -> None:
    numeric = np.array([[41.0, np.nan, 0.5], [30.0, 2.0, 1.0]], dtype=np.float32)
    strings = [b"pro", b"a", b"basic", b"b"]
    categorical = b"".join(struct.pack("<I", len(s)) + s for s in strings)
    body = {
        "inputs": [
            {
                "name": "numeric",
                "datatype": "FP32",
                "shape": [2, 3],
                "parameters": {"binary_data_size": numeric.nbytes},
            },
            {
                "name": "categorical",
                "datatype": "BYTES",
                "shape": [2, 2],
                "parameters": {"binary_data_size": len(categorical)},
            },
        ],
        "parameters": {"binary_data_output": True},
    }
    request = infer(body, numeric.tobytes() + categorical)
    np.testing.assert_array_equal(request.feeds[NUMERIC_INPUT], numeric)
    assert request.feeds[CATEGORICAL_INPUT].tolist() == [["pro", "a"], ["basic", "b"]]
    assert request.outputs == {"label": True, "probabilities": True}
    with pytest.raises(RequestInvalid):  # NaN in a column that may not be missing
        numeric[0, 0] = np.nan
        infer(body, numeric.tobytes() + categorical)


def test_v2_bad_values_point_at_the_data_index() -> None:
    inputs = [
        {"name": "numeric", "datatype": "FP32", "shape": [2, 3], "data": [41, -1, 0, 30, 2, 1e39]},
        {"name": "categorical", "datatype": "BYTES", "shape": [2, 2], "data": ["pro", "a"] * 2},
    ]
    found = problems_of(lambda: infer({"inputs": inputs}))
    by_field = {p["field"]: p for p in found}
    assert set(by_field) == {"income", "score"}
    assert (
        by_field["income"]["loc"] == ["body", "inputs", 0, "data", 1]
        and by_field["income"]["row"] == 0
    )
    assert (
        by_field["score"]["loc"] == ["body", "inputs", 0, "data", 5]
        and by_field["score"]["type"] == "float32_overflow"
    )


@pytest.mark.parametrize(
    ("inputs", "where"),
    [
        ([{"name": "numeric", "datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3]}], "data"),
        ([{"name": "numeric", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}], "shape"),
        (
            [
                {
                    "name": "numeric",
                    "datatype": "FP32",
                    "shape": [2, 3],
                    "data": [[1.0], 1.0, 2, 3, 4, 5],
                }
            ],
            "data",
        ),
        (
            [{"name": "numeric", "datatype": "FP32", "shape": [2, 3], "data": [[1, 2, 3], [1, 2]]}],
            "data",
        ),
        ([{"name": "numeric", "datatype": "FP32", "shape": [1, 3], "data": [[[]]]}], "data"),
        (
            [{"name": "numeric", "datatype": "BYTES", "shape": [1, 3], "data": ["1", "2", "3"]}],
            "datatype",
        ),
        ([{"name": "numeric", "datatype": "INT32", "shape": [1, 3], "data": [1, 2.5, 3]}], "data"),
        ([{"name": "numeric", "shape": [1, 3], "data": [1, 2, 3]}], "datatype"),
        ([{"name": "bogus", "datatype": "FP32", "shape": [1], "data": [1]}], "name"),
        ([{"name": "age", "datatype": "INT64", "shape": [11], "data": [1] * 11}], "shape"),
        ([{"name": "income", "datatype": "FP32", "shape": [1], "data": [1.0]}], "age"),
        ([{"shape": [1], "data": [1]}], 0),
    ],
)
def test_v2_malformed_tensors(inputs: list[Any], where: Any) -> None:
    found = problems_of(lambda: infer({"inputs": inputs}))
    assert any(where in p["loc"] for p in found), found


def test_v2_unknown_outputs_are_refused_before_predicting() -> None:
    numeric = {"name": "numeric", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}
    cats = {"name": "categorical", "datatype": "BYTES", "shape": [1, 2], "data": ["pro", "a"]}
    for outputs in (
        [{"name": ["label"]}],
        [{"name": "nope"}],
        "label",
        [{"name": "label", "parameters": {"x": 1}}],
    ):
        found = problems_of(
            lambda outputs=outputs: infer({"inputs": [numeric, cats], "outputs": outputs})
        )
        assert found[0]["loc"][:2] == ["body", "outputs"]
    request = infer({"inputs": [numeric, cats], "outputs": [{"name": "label"}]})
    assert request.outputs == {"label": False}


def test_the_row_schema_documents_the_rules() -> None:
    doc = RULES.row_schema()
    assert doc["additionalProperties"] is False and doc["required"] == ["age"]
    assert doc["properties"]["age"]["minimum"] == 0 and doc["properties"]["age"]["maximum"] == 120
    income = doc["properties"]["income"]["anyOf"][0]
    assert income["maximum"] == FLOAT32_MAX
    assert doc["properties"]["plan"]["anyOf"][0]["enum"] == ["basic", "plus", "pro"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(VALUES, min_size=3, max_size=3), min_size=5, max_size=8))
def test_compiled_block_path_agrees_with_the_scalar_rules(rows: list[list[Any]]) -> None:
    flat = [v for row in rows for v in row]
    if any(type(v) is bool for v in flat):  # a typed numeric tensor holds no booleans
        return
    columns = {rule.name: flat[j::3] for j, rule in enumerate(RULES.numeric)}

    def where(column: str, row: int) -> tuple[Any, ...]:
        return (column, row)

    block = RULES.matrix(flat, len(rows), fast=True)
    small = RULES.matrix(flat[:6], 2, fast=False)  # two rows: the scalar rules
    small_scalar = verdict(
        lambda: RULES.columns(
            {r.name: flat[:6][j::3] for j, r in enumerate(RULES.numeric)}, 2, where, set(), False
        )
    )
    if small is not None:
        np.testing.assert_array_equal(small, small_scalar[1][NUMERIC_INPUT])
    else:
        assert small_scalar[0] == "invalid"
    scalar = verdict(lambda: RULES.columns(columns, len(rows), where, set(columns), fast=False))
    if block is not None:
        assert scalar[0] == "ok", (rows, scalar)
        np.testing.assert_array_equal(block, scalar[1][NUMERIC_INPUT])
