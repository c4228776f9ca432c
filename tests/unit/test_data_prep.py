"""Noise simulator, split, fingerprint, oversampling and the reference profile."""

from __future__ import annotations

import numpy as np
import pandas as pd

from framework.config import DataConfig
from framework.data.dataset import Dataset, fingerprint, oversample, split
from framework.data.noise import inject_noise
from framework.data.profile import reference_profile
from framework.data.validation import ValidationReport, validate_frame
from tests.helpers import SMALL_SCHEMA, small_frame


def _data(**extra: object) -> DataConfig:
    from framework.registry import load_plugins

    load_plugins()
    from plugins.sources.csv import CsvConfig

    return DataConfig(name="churn", source=CsvConfig(path="x.csv"), columns=SMALL_SCHEMA, **extra)  # type: ignore[arg-type]


def test_noise_injects_what_is_declared_and_the_checks_see_it() -> None:
    data = _data(
        noise={
            "enabled": True,
            "seed": 1,
            "missing_rate": 0.05,
            "nan_string_rate": 0.05,
            "outlier_rate": 0.05,
            "label_missing_rate": 0.05,
            "imbalance_ratio": 0.2,
            "minority_class": "yes",
        }
    )
    clean = small_frame(rows=600)
    noisy, noise = inject_noise(clean, data)
    assert noise.rows_before == 600 and noise.rows_after < 600
    assert set(noise.injected) == {"missing", "nan_string", "outlier", "missing_label"}
    counts = noisy["churn"].value_counts()
    assert counts["yes"] / counts["no"] < 0.25  # 0.2 before some labels went missing
    assert (noisy["age"].astype(str) == "NaN").sum() > 0
    _frame, report = validate_frame(noisy, data.columns, data.checks)
    kinds = {f.kind for f in report.failures}
    assert {"missing_token", "missing_target"} <= kinds
    assert report.dropped_rows["missing_target:churn"] == noise.injected["missing_label"]


def test_noise_disabled_returns_the_frame_untouched() -> None:
    clean = small_frame()
    same, report = inject_noise(clean, _data())
    assert same is clean and report.injected == {}


def test_split_is_stratified_seeded_and_fingerprint_tracks_content() -> None:
    data = _data(split={"test_size": 0.25, "validation_size": 0.25, "seed": 3})
    frame, report = validate_frame(small_frame(rows=400), data.columns, data.checks)
    dataset = Dataset(frame, data, report)
    parts = split(dataset, classification=True)
    assert sum(parts.sizes().values()) == 400
    share = frame["churn"].eq("yes").mean()
    for part in (parts.train, parts.validation, parts.test):
        assert abs(part["churn"].eq("yes").mean() - share) < 0.03
    again = split(dataset, classification=True)
    pd.testing.assert_frame_equal(parts.test, again.test)
    assert dataset.fingerprint == fingerprint(frame.copy(), data)
    changed = frame.copy()
    changed.loc[0, "age"] = 99
    assert fingerprint(changed, data) != dataset.fingerprint


def test_oversample_balances_classes() -> None:
    frame = small_frame(rows=300)
    counts = frame["churn"].value_counts()
    assert counts.min() != counts.max()
    balanced = oversample(frame, "churn", seed=0)
    after = balanced["churn"].value_counts()
    assert after.min() == after.max() == counts.max()


def test_reference_profile_summarises_each_feature() -> None:
    data = _data()
    frame, _ = validate_frame(small_frame(), data.columns, data.checks)
    profile = reference_profile(frame, data, "classification")
    age = profile["features"]["age"]
    assert age["bin_edges"] and sum(age["bin_counts"]) == age["count"]
    assert np.isclose(sum(profile["features"]["plan"]["frequencies"].values()), 1.0)
    assert set(profile["features"]) == {"age", "income", "plan", "churn"}
    assert isinstance(ValidationReport(rows_in=1).to_dict(), dict)
