"""`task=monitor` on data that lost a feature or changed a column's type: never `ok`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.e2e.conftest import Runner

pytestmark = pytest.mark.e2e


def test_missing_data_and_emptied_columns_are_drift(cli: Runner, tmp_path: Path) -> None:
    from plugins.sources.synthetic_churn import SyntheticChurnConfig, SyntheticChurnSource

    trained = cli("data=churn", "model=logistic_regression", "train.latency_runs=5")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    frame = SyntheticChurnSource(SyntheticChurnConfig(rows=800, seed=5)).load()
    frame.to_csv(tmp_path / "clean.csv", index=False)
    frame["income"] = np.nan  # the feature went 100% missing
    frame["tenure_months"] = frame["tenure_months"] + 0.5  # an int column, no longer whole
    frame.to_csv(tmp_path / "broken.csv", index=False)

    clean = cli("task=monitor", "data=churn", "monitor.data_path=clean.csv")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "Drifted features (0/6): none" in clean.stdout

    broken = cli("task=monitor", "data=churn", "monitor.data_path=broken.csv")
    assert broken.returncode == 6, broken.stdout + broken.stderr
    out = broken.stdout
    assert "Drifted features (2/6): income, tenure_months" in out
    assert "income: missing share 1.00 against 0.00 in the reference" in out
    assert "tenure_months: the data checks repaired 800 of 800 values (100%): type (800)" in out
