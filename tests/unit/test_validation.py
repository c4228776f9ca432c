"""Schema checks and their policies, on small tables written out in the test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from framework.config.data import ChecksConfig, CleaningConfig, ColumnSpec, OutlierCheck
from framework.data.validation import validate_frame
from framework.errors import DataValidationError
from framework.training.pipeline import model_input, preprocessor

NOISY = pd.DataFrame(
    [(1, 20, 19), (2, 21, "NaN"), (3, 19, 18), (4, 120, 22)], columns=["id", "var1", "var2"]
)
NOISY_SCHEMA = {
    "id": ColumnSpec(dtype="int", role="id"),
    "var1": ColumnSpec(dtype="float"),
    "var2": ColumnSpec(dtype="float"),
}


def test_noisy_table_nan_string_is_missing_and_imputed_and_120_is_an_outlier() -> None:
    checks = ChecksConfig(outliers=OutlierCheck(method="iqr", iqr_k=1.5, action="flag"))
    frame, report = validate_frame(NOISY, NOISY_SCHEMA, checks)

    (token,) = report.failures_of("var2", "missing_token")
    assert token.count == 1 and token.action == "repair:missing"
    assert token.examples == [{"row": 1, "value": "NaN", "id": 2}]
    assert np.isnan(frame.loc[1, "var2"])

    (outlier,) = report.failures_of("var1", "outlier_iqr")
    assert outlier.count == 1 and outlier.action == "flag"
    assert outlier.examples[0]["value"] == 120 and outlier.examples[0]["id"] == 4
    assert report.rows_out == 4 and report.missing_after == {"var2": 1}

    # The fitted cleaning imputes the missing value with the training median of var2.
    features = ["var1", "var2"]
    pre = preprocessor(
        features, [], CleaningConfig(numeric_imputation="median", scaling="none", outliers="none")
    )
    cleaned = pre.fit_transform(model_input(frame, features, []))
    assert not np.isnan(cleaned).any()
    assert cleaned[1, 1] == pytest.approx(19.0)  # median of 19, 18, 22


def test_outlier_rule_can_repair_by_clipping_to_the_fences() -> None:
    checks = ChecksConfig(outliers=OutlierCheck(method="iqr", iqr_k=1.5, action="repair"))
    frame, report = validate_frame(NOISY, NOISY_SCHEMA, checks)
    assert report.failures_of("var1", "outlier_iqr")[0].action == "repair:clip"
    assert frame["var1"].max() < 120


def test_zscore_rule_and_drop_policy() -> None:
    values = pd.DataFrame({"x": [*([10.0] * 20), 11.0, 9.0, 500.0], "y": ["a"] * 23})
    schema = {"x": ColumnSpec(), "y": ColumnSpec(dtype="category", role="target")}
    checks = ChecksConfig(outliers=OutlierCheck(method="zscore", zscore_threshold=3, action="drop"))
    frame, report = validate_frame(values, schema, checks)
    assert report.dropped_rows == {"outlier_zscore:x": 1}
    assert len(frame) == 22 and frame["x"].max() == 11.0


SCHEMA = {
    "id": ColumnSpec(dtype="int", role="id"),
    "age": ColumnSpec(dtype="int", min=0, max=120, nullable=False),
    "plan": ColumnSpec(dtype="category", categories=["basic", "pro"]),
    "label": ColumnSpec(dtype="category", role="target", nullable=False),
}
ROWS = pd.DataFrame(
    {
        "id": ["1", "2", "3", "4", "5", "6"],
        "age": ["30", "abc", "150", "-3", "", "41"],
        "plan": ["basic", "pro", "gold", "basic", None, "pro"],
        "label": ["y", "n", "y", None, "n", "y"],
        "extra": [0, 0, 0, 0, 0, 0],
    }
)
NO_OUTLIERS = OutlierCheck(method="none")


def test_repair_policy_coerces_clips_and_nulls_and_counts_everything() -> None:
    frame, report = validate_frame(ROWS, SCHEMA, ChecksConfig(outliers=NO_OUTLIERS))
    kinds = {(f.column, f.kind): (f.count, f.action) for f in report.failures}
    assert kinds[("age", "type")] == (1, "repair:missing")  # 'abc'
    assert kinds[("age", "missing_token")] == (1, "repair:missing")  # ''
    assert kinds[("age", "range")] == (2, "repair:clip")  # 150, -3
    assert kinds[("plan", "category")] == (1, "repair:missing")  # 'gold'
    assert kinds[("label", "missing_target")] == (1, "drop")
    assert report.dropped_rows == {"missing_target:label": 1}
    assert report.undeclared_columns == ["extra"]
    assert report.rows_in == 6 and report.rows_out == 5
    # 'abc' and '' became missing, 150 was clipped to 120; the row with -3 lost its label
    np.testing.assert_array_equal(frame["age"], [30.0, np.nan, 120.0, np.nan, 41.0])
    assert frame["plan"].isna().sum() == 2  # 'gold' and the original None


def test_range_repair_can_null_out_instead_of_clipping() -> None:
    checks = ChecksConfig(range_repair="null", outliers=NO_OUTLIERS)
    frame, report = validate_frame(ROWS, SCHEMA, checks)
    assert report.failures_of("age", "range")[0].action == "repair:null"
    assert frame["age"].max() <= 120


def test_drop_policy_drops_rows_and_says_why() -> None:
    checks = ChecksConfig(type="drop", range="drop", category="drop", outliers=NO_OUTLIERS)
    frame, report = validate_frame(ROWS, SCHEMA, checks)
    assert report.dropped_rows["type:age"] == 1
    assert report.dropped_rows["range:age"] == 2
    assert report.dropped_rows["category:plan"] == 1
    assert set(frame["age"].dropna()) <= {30.0, 41.0}


def test_fail_policy_reports_every_problem_before_failing() -> None:
    checks = ChecksConfig(type="fail", range="fail", category="fail", outliers=NO_OUTLIERS)
    with pytest.raises(DataValidationError) as info:
        validate_frame(ROWS, SCHEMA, checks)
    message = str(info.value)
    assert "age: 1 row(s) failed 'type'" in message
    assert "age: 2 row(s) failed 'range'" in message
    assert "plan: 1 row(s) failed 'category'" in message
    assert info.value.path == "data.checks"
    assert len(info.value.report.failed) == 3  # type: ignore[attr-defined]


def test_missing_required_column_is_an_error_naming_it() -> None:
    with pytest.raises(DataValidationError, match="missing from the data: age"):
        validate_frame(ROWS.drop(columns=["age"]), SCHEMA, ChecksConfig())


def test_absent_nullable_column_is_added_as_missing() -> None:
    schema = {**SCHEMA, "score": ColumnSpec(dtype="float")}
    frame, report = validate_frame(ROWS, schema, ChecksConfig(outliers=NO_OUTLIERS))
    assert frame["score"].isna().all()
    assert report.failures_of("score", "absent_column")
