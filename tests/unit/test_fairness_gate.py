"""The fairness gate's figures and verdicts on predictions with known group behaviour."""

from __future__ import annotations

import numpy as np
import pandas as pd

from framework.config.gates import FairnessGate
from framework.errors import ModelRefusedError
from framework.governance.fairness import fairness_report, refusal


def _predictions(rows: int, miss_south: float, seed: int = 0):
    """Truth and predictions of a 90%-accurate model; in ``south`` it also misses
    ``miss_south`` of the positives."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["north", "south", "east"], rows)
    truth = np.where(rng.random(rows) < 0.3, "yes", "no")
    predicted = np.where(rng.random(rows) < 0.9, truth, np.where(truth == "yes", "no", "yes"))
    missed = (group == "south") & (truth == "yes") & (rng.random(rows) < miss_south)
    predicted = np.where(missed, "no", predicted)
    return truth, predicted, {"region": pd.Series(group)}


def test_equal_treatment_passes_and_unequal_is_refused_naming_column_groups_and_figures() -> None:
    gate = FairnessGate()
    truth, predicted, groups = _predictions(1200, 0.0)
    fair = fairness_report("classification", truth, predicted, groups, ["no", "yes"], gate)
    assert fair["breaches"] == [] and refusal(fair) is None
    column = fair["columns"][0]
    assert column["positive_label"] == "yes" and set(column["groups"]) == {"north", "south", "east"}
    assert column["equalized_odds_difference"] < 0.2

    truth, predicted, groups = _predictions(1200, 0.6)
    unfair = fairness_report("classification", truth, predicted, groups, ["no", "yes"], gate)
    error = refusal(unfair)
    assert isinstance(error, ModelRefusedError) and error.exit_code == 4
    assert "region: equalized odds difference" in error.message
    assert "true-positive rate south" in error.message and "p=" in error.message


def test_a_gap_chance_can_explain_is_reported_but_not_refused() -> None:
    """Tiny groups: a large point gap, but no test rejects equal rates."""
    truth = np.array(["yes", "yes", "no", "yes", "no", "yes", "yes", "no"] * 5)
    predicted = truth.copy()
    predicted[[0, 3]] = "no"  # two misses, both in the first group
    groups = {"region": pd.Series(["a"] * 20 + ["b"] * 20)}
    report = fairness_report(
        "classification", truth, predicted, groups, ["no", "yes"], FairnessGate(min_group_rows=10)
    )
    assert report["columns"][0]["equalized_odds_difference"] > 0.1
    assert report["breaches"] == []
    strict = fairness_report(
        "classification",
        truth,
        predicted,
        groups,
        ["no", "yes"],
        FairnessGate(min_group_rows=10, alpha=1.0, max_equalized_odds_difference=0.05),
    )
    assert strict["breaches"]  # alpha=1: the point estimate alone decides


def test_small_groups_get_bootstrap_intervals_and_are_not_gated() -> None:
    truth, predicted, groups = _predictions(400, 0.0)
    region = groups["region"].copy()
    region.iloc[:12] = "island"
    report = fairness_report(
        "classification", truth, predicted, {"region": region}, ["no", "yes"], FairnessGate()
    )
    island = report["columns"][0]["groups"]["island"]
    assert island["gated"] is False and island["rows"] == 12
    low, high = island["interval_95"]["accuracy"]
    assert 0 <= low <= island["accuracy"] <= high <= 1


def test_regression_error_gap_between_groups() -> None:
    rng = np.random.default_rng(0)
    group = rng.choice(["a", "b"], 1000)
    truth = rng.normal(100, 10, 1000)
    noise = np.where(group == "b", 15.0, 3.0)
    predicted = truth + rng.normal(0, 1, 1000) * noise
    gate = FairnessGate(max_error_gap=0.5)
    report = fairness_report("regression", truth, predicted, {"g": pd.Series(group)}, [], gate)
    assert report["columns"][0]["error_gap"] > 1.0
    assert "mean absolute error gap" in report["breaches"][0]
    even = fairness_report(
        "regression", truth, truth + rng.normal(0, 3, 1000), {"g": pd.Series(group)}, [], gate
    )
    assert even["breaches"] == []
