"""The drift detector: scipy's tests, corrected thresholds, PSI, reference files, reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from framework.config.monitor import DriftConfig
from framework.monitoring.drift import DriftDetector, adjust, load_reference, reference_sample
from framework.monitoring.report import write_report


def _data(n: int, shift: float, columns: int = 20, shifted: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(columns, n))
    values[:shifted] += shift
    return {f"f{j}": values[j] for j in range(columns)}


def test_flags_exactly_the_shifted_features_where_plain_tests_do_not() -> None:
    reference = _data(20_000, 0.0, seed=1)
    current = _data(200_000, 0.3, seed=2)
    report = DriftDetector(reference, None, DriftConfig()).check(current)
    assert report.drifted == [f"f{j}" for j in range(10)]
    assert report.drift
    # PSI at the customary 0.1 misses a 0.3-std shift; the corrected test plus PSI >= 0.02 not
    psi = {f.name: f.psi for f in report.features}
    assert all(0.02 < psi[f"f{j}"] < 0.1 for j in range(10))
    # the statistic is scipy's own
    ks = stats.ks_2samp(reference["f0"], current["f0"])
    assert report.features[0].statistic == pytest.approx(ks.statistic)


def test_unshifted_data_is_not_flagged_even_on_many_features() -> None:
    flagged = []
    for seed in range(5):
        report = DriftDetector(_data(5_000, 0, seed=seed), None, DriftConfig()).check(
            _data(2_000, 0.0, shifted=0, seed=100 + seed)
        )
        flagged += report.drifted
        assert not report.drift
    assert flagged == []


def test_holm_bonferroni_and_bh_corrections() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    assert adjust(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert adjust(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjust(p, "fdr_bh") == pytest.approx(list(stats.false_discovery_control(p)))
    assert adjust(p, "none") == p


def test_categorical_features_use_chi_square_and_new_categories_count() -> None:
    rng = np.random.default_rng(0)
    reference = {"plan": rng.choice(["basic", "pro"], size=5_000, p=[0.7, 0.3]).astype(object)}
    same = {"plan": rng.choice(["basic", "pro"], size=2_000, p=[0.7, 0.3]).astype(object)}
    moved = {"plan": rng.choice(["basic", "pro", "max"], size=2_000, p=[0.4, 0.3, 0.3])}
    detector = DriftDetector(reference, None, DriftConfig(), categorical={"plan"})
    assert detector.check(same).drifted == []
    result = detector.check(moved.copy()).features[0]
    assert result.test == "chi2" and result.drifted and "max" in result.bins


def test_reference_file_round_trip_and_prediction_drift(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    features = {"x": rng.normal(size=1000), "city": np.array(["a", "b", None] * 100, dtype=object)}
    target = ("label", np.array(["yes", "no"] * 500, dtype=object))
    data = reference_sample(features, target)
    loaded, loaded_target = load_reference(data)
    assert loaded["x"].dtype == np.float64 and loaded["city"].dtype.kind == "U"
    assert loaded_target is not None and loaded_target[0] == "label"
    detector = DriftDetector.from_bytes(data, DriftConfig(), categorical={"city"})
    current = {"x": rng.normal(size=500), "city": np.array(["a", "b", None] * 100, dtype=object)}
    report = detector.check(current, prediction=np.array(["yes"] * 450 + ["no"] * 50))
    assert report.drifted == []
    assert report.prediction is not None and report.prediction.drifted
    assert report.features[1].missing_rate == pytest.approx(1 / 3)
    json_path, html_path = write_report(report, tmp_path, "drift", {"model": "m"})
    document = json.loads(json_path.read_text())
    assert document["model"] == "m" and document["drifted"] == []
    assert document["prediction"]["drifted"] is True
    assert "<svg" in html_path.read_text()


def test_drift_config_refuses_inconsistent_windows() -> None:
    from pydantic import ValidationError

    from framework.config.monitor import MonitorConfig, RolloutConfig

    with pytest.raises(ValidationError, match="min_rows"):
        MonitorConfig.model_validate({"window": {"rows": 10, "min_rows": 20}})
    with pytest.raises(ValidationError, match="steps must increase"):
        RolloutConfig(steps=[0.5, 0.1])
    with pytest.raises(ValidationError, match=r"\(0, 1\]"):
        RolloutConfig(steps=[0.1, 1.5])


def test_the_committed_grafana_dashboard_is_the_generated_one() -> None:
    from framework.monitoring.grafana import dashboard

    path = Path(__file__).resolve().parents[2] / "serve_configs" / "grafana_dashboard.json"
    document = json.loads(path.read_text())
    assert document == dashboard()
    exprs = [t["expr"] for p in document["panels"] for t in p["targets"]]
    for series in ("requests_total", "live_quality", "feature_drift_psi", "traffic_share_ratio"):
        assert any(f"ray_framework_{series}" in e for e in exprs)
    assert len({p["id"] for p in document["panels"]}) == len(document["panels"])


def test_drift_tests_are_plugins_and_a_wrong_name_is_named() -> None:
    from pydantic import ValidationError

    from framework import registry

    assert {"ks", "cramervonmises", "chi2", "g_test"} <= set(registry.drift_tests.names())
    with pytest.raises(ValidationError, match="did you mean 'ks'"):
        DriftConfig(numeric_test="kss")
    with pytest.raises(ValidationError, match="unknown categorical drift test 'ks'"):
        DriftConfig(categorical_test="ks")
    config = DriftConfig(numeric_test="cramervonmises", categorical_test="g_test")
    rng = np.random.default_rng(3)
    reference = {"x": rng.normal(size=5_000), "c": rng.choice(["a", "b"], 5_000).astype(object)}
    current = {"x": rng.normal(0.5, 1, size=2_000), "c": rng.choice(["a", "b"], 2_000)}
    report = DriftDetector(reference, None, config, categorical={"c"}).check(current)
    assert report.drifted == ["x"]
    assert [f.test for f in report.features] == ["cramervonmises", "g_test"]


def test_a_feature_gone_missing_is_drift_by_its_missing_share() -> None:
    reference = _data(5_000, 0.0, columns=3, shifted=0, seed=1)
    reference["f2"][:100] = np.nan  # 2% missing in the reference
    current = _data(2_000, 0.0, columns=3, shifted=0, seed=2)
    current["f0"][:] = np.nan  # gone
    current["f2"][:100] = np.nan  # 5%: a change under min_missing_change (0.1)
    report = DriftDetector(reference, None, DriftConfig()).check(current)
    gone = report.features[0]
    assert gone.drifted and gone.missing_drifted and gone.status == "drifted"
    assert gone.reason == "missing share 1.00 against 0.00 in the reference"
    assert report.drifted == ["f0"] and report.drift
    assert report.features[2].status == "ok" and not report.features[2].missing_drifted


def test_a_statistic_that_cannot_be_computed_is_untestable_never_ok() -> None:
    reference = _data(2_000, 0.0, columns=2, shifted=0, seed=1)
    reference["f1"][:] = np.nan  # nothing to compare against
    current = _data(500, 0.0, columns=2, shifted=0, seed=2)
    current["f1"][:] = np.nan
    report = DriftDetector(reference, None, DriftConfig()).check(current)
    untestable = report.features[1]
    assert untestable.status == "untestable" and not untestable.drifted
    assert "cannot be computed" in (untestable.reason or "")
    assert report.untestable == ["f1"] and report.to_dict()["untestable"] == ["f1"]


def test_a_column_the_checks_emptied_is_flagged_with_their_reason() -> None:
    from framework.data.validation import Failure, ValidationReport
    from framework.monitoring.job import flag_repaired

    reference = _data(2_000, 0.0, columns=2, shifted=0, seed=1)
    current = _data(400, 0.0, columns=2, shifted=0, seed=2)
    report = DriftDetector(reference, None, DriftConfig()).check(current)
    assert not report.drift
    checks = ValidationReport(
        rows_in=400,
        failures=[
            Failure("f1", "type", 380, "repair:missing", []),
            Failure("f0", "outlier_iqr", 390, "flag", []),  # flagged, not repaired: no change
        ],
    )
    flag_repaired(report, checks, 400, 0.5)
    report.recount(0.0)
    assert report.drifted == ["f1"] and report.drift
    assert report.features[1].reason == (
        "the data checks repaired 380 of 400 values (95%): type (380)"
    )
