"""Sweeps: Hydra multirun (-m) runs as one Ray Tune experiment, data prepared once."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.e2e.conftest import Runner

pytestmark = pytest.mark.e2e

QUIET = ["train.latency_runs=20"]


def _sweep_dir(tmp_path: Path) -> Path:
    (found,) = [p.parent for p in (tmp_path / "multirun").glob("*/*/sweep.json")]
    return found


def _sweep(
    cli: Runner, tmp_path: Path, *args: str, best_dir: Path | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], pd.DataFrame]:
    """Run a sweep that must succeed; return the run, sweep.json and trials.csv."""
    best = best_dir or tmp_path / "best"
    run = cli("-m", *args, f"tune.best_experiment_dir={best}", *QUIET)
    assert run.returncode == 0, run.stderr
    sweep = _sweep_dir(tmp_path)
    summary = json.loads((sweep / "sweep.json").read_text())
    return run, summary, pd.read_csv(sweep / "trials.csv")


def test_four_trial_sweep_registers_the_best_and_writes_a_reproducible_experiment(
    cli: Runner, tmp_path: Path
) -> None:
    extra = tmp_path / "extra_conf"
    run, summary, trials = _sweep(
        cli,
        tmp_path,
        "+experiment=clean_logistic_regression",
        "model.C=0.01,0.1,1.0,10.0",
        best_dir=extra / "experiment",
    )
    assert "Trials by validation.f1_macro" in run.stdout
    assert "Data preparation ran 1 time(s) for 4 trial(s)" in run.stdout
    assert summary["trials"] == 4 and len(trials) == 4
    assert sorted(trials["model.C"]) == [0.01, 0.1, 1.0, 10.0]  # the grid, each value once
    assert trials["validation.f1_macro"].is_monotonic_decreasing  # sorted by the metric
    assert trials["error"].isna().all()  # no trial failed
    # Data loading, checks and the split ran once, in the driver, not in any trial.
    assert summary["data_preparations"] == 1
    assert trials["data_prepared_in_trial"].sum() == 0
    assert summary["registered"] == {"name": "breast_cancer", "version": 1, "alias": "champion"}
    assert summary["best"]["model.C"] == trials.iloc[0]["model.C"]

    experiment = Path(summary["experiment"])
    assert experiment.parent == extra / "experiment"
    text = experiment.read_text()
    assert text.startswith("# @package _global_") and "override /model: logistic_regression" in text

    again = cli("--config-dir", str(extra), f"+experiment={experiment.stem}", *QUIET)
    assert again.returncode == 0, again.stderr
    (run_dir,) = list((tmp_path / "outputs").glob("*/*"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    reproduced = metrics["validation"]["metrics"]["f1_macro"]
    assert reproduced == pytest.approx(summary["best_metric"], abs=1e-6)


def test_asha_stops_bad_trials_early(cli: Runner, tmp_path: Path) -> None:
    _, _, trials = _sweep(
        cli,
        tmp_path,
        "model=mlp",
        "tune=asha",
        "data.noise.enabled=false",
        "model.epochs=12",
        "tune.asha.max_t=12",
        "tune.asha.grace_period=2",
        "tune.register_best=false",
        # good learning rates first, so the bad ones meet recorded results at the first rung
        "model.learning_rate_init=choice(0.01,0.02,0.000001,0.000002)",
        "tune.search=grid",
    )
    bad = trials[trials["model.learning_rate_init"] < 1e-4]
    assert len(bad) == 2
    assert bad["stopped_early"].all() and (bad["epochs"] < 12).all()
    assert trials.iloc[0]["model.learning_rate_init"] >= 0.01
    assert trials.iloc[0]["validation.f1_macro"] > 0.9


def test_optuna_samples_an_interval_across_data_groups(cli: Runner, tmp_path: Path) -> None:
    run, summary, trials = _sweep(
        cli,
        tmp_path,
        "tune=optuna",
        "tune.num_samples=3",
        "model=logistic_regression",
        "data=iris,wine",
        "model.C=tag(log, interval(0.001, 10))",
        "tune.register_best=false",
    )
    assert "search=optuna" in run.stdout
    assert summary["name"] == "iris-wine_logistic_regression_sweep"
    assert len(trials) == 3 and trials["model.C"].between(0.001, 10).all()
    assert set(trials["data"]) <= {"iris", "wine"}
    # each data set of the swept group is prepared once, in the driver
    assert summary["data_preparations"] == 2 and trials["data_prepared_in_trial"].sum() == 0


def test_bad_sweep_values_and_syntax_exit_2_before_any_trial(cli: Runner) -> None:
    bad_value = cli("-m", "model.n_estimators=-5,100", "+model.max_dept=3,4", *QUIET)
    assert bad_value.returncode == 2
    assert "model.n_estimators: got -5; expected an integer > 0" in bad_value.stderr
    assert "model.max_dept: unknown key" in bad_value.stderr
    assert "did you mean 'max_depth'?" in bad_value.stderr
    assert "run trials" not in bad_value.stdout and "Traceback" not in bad_value.stderr

    failing_data = cli(
        "-m",
        "model.n_estimators=10,20",
        "data.checks.missing=fail",
        "+data.columns.mean_radius.nullable=false",
        *QUIET,
    )
    assert failing_data.returncode == 3  # the data check's own status, as in a single run
    assert "failed 'missing'" in failing_data.stderr

    bad_syntax = cli("-m", "model.n_estimators=range(10,", *QUIET)
    assert bad_syntax.returncode == 2  # Hydra's own parser reports it, as Hydra users know
    assert "no viable alternative at input 'range(10,'" in bad_syntax.stderr


def test_a_trial_larger_than_any_node_is_refused_once_ray_is_reached(cli: Runner) -> None:
    run = cli("-m", "model=logistic_regression", "model.C=0.1,1.0", "tune.cpus_per_trial=4")
    assert run.returncode == 2, run.stdout + run.stderr
    assert (
        "tune.cpus_per_trial: 4 CPUs per trial cannot be scheduled: the largest node of the "
        "Ray cluster has 2"
    ) in run.stderr
    assert "Traceback" not in run.stderr
