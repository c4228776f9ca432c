"""`python -m framework` as a user runs it: train, registry, Hydra flags, errors, sweeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import Runner, free_port

pytestmark = pytest.mark.e2e

FAST = ["train.latency_runs=50"]


def test_default_job_trains_registers_and_lists(cli: Runner, tmp_path: Path) -> None:
    port = free_port()
    run = cli(f"ray.dashboard_port={port}", "model.n_estimators=30")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "Noise simulator: 569 rows loaded" in out
    assert "Data checks:" in out and "missing_token" in out and "dropped" in out
    assert "Metrics on the test split" in out and "f1_macro" in out and "roc_auc" in out
    assert "ONNX model:" in out and "single-row latency p50" in out
    assert "Registered breast_cancer version 1 as champion" in out
    assert f"Ray dashboard: http://127.0.0.1:{port}" in out
    assert "Traceback" not in run.stderr

    version = tmp_path / "model_registry" / "breast_cancer" / "versions" / "1"
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["model_type"] == "random_forest"
    assert manifest["config"]["model"]["n_estimators"] == 30
    run_dirs = list((tmp_path / "outputs").glob("*/*"))
    assert len(run_dirs) == 1
    assert {"validation_report.json", "metrics.json", "model.onnx"} <= {
        p.name for p in run_dirs[0].iterdir()
    }

    listing = cli("task=registry")
    assert listing.returncode == 0, listing.stderr
    assert "breast_cancer" in listing.stdout and "champion" in listing.stdout
    assert "random_forest" in listing.stdout

    shown = cli("task=registry", "version=1")
    assert shown.returncode == 0, shown.stderr
    assert manifest["files"]["model.onnx"] in shown.stdout

    missing = cli("task=registry", "version=9")
    assert missing.returncode == 5
    assert "has no version 9" in missing.stderr and "registered versions: [1]" in missing.stderr

    verified = cli("task=registry", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "verified 1 version(s) of 1 model(s)" in verified.stdout

    # Someone with write access to the registry but not the audit key:
    folder = tmp_path / "model_registry" / "breast_cancer"
    log = folder / "audit.jsonl"
    entries = log.read_bytes()
    log.write_bytes(b"".join(entries.splitlines(keepends=True)[:-1]))  # drop the last entry
    truncated = cli("task=registry", "verify")
    assert truncated.returncode == 5, truncated.stdout + truncated.stderr
    assert "the signed head records 2 entries" in truncated.stdout
    assert "Traceback" not in truncated.stderr
    log.write_bytes(entries)

    raw = (version / "manifest.json").read_bytes()
    (version / "manifest.json").write_bytes(raw[: len(raw) // 2])
    for args in (("task=registry",), ("task=registry", "verify"), ("task=serve",)):
        broken = cli(*args)
        assert broken.returncode == 5, (args, broken.stdout + broken.stderr)
        assert "the manifest is not valid JSON" in broken.stdout + broken.stderr, broken.stderr
        assert "Traceback" not in broken.stderr
    (version / "manifest.json").write_bytes(raw)
    assert cli("task=registry", "verify").returncode == 0


def test_bad_config_exits_2_with_every_problem_and_no_traceback(cli: Runner) -> None:
    run = cli(
        "model.n_estimators=-5", "+model.max_dept=3", "model.type=random_forrest", "ray.num_cpus=0"
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr + run.stdout
    assert "model.type: unknown plugin 'random_forrest'" in run.stderr
    assert "did you mean 'random_forest'?" in run.stderr
    assert "ray.num_cpus: got 0; expected an integer > 0" in run.stderr

    run = cli("+model.max_dept=3", "model.n_estimators=-5")
    assert run.returncode == 2
    assert "model.max_dept: unknown key" in run.stderr and "did you mean 'max_depth'?" in run.stderr
    assert "model.n_estimators: got -5; expected an integer > 0" in run.stderr


def test_hydra_errors_and_flags_work_as_hydra_users_expect(cli: Runner) -> None:
    wrong_group = cli("model=random_forrest")
    assert wrong_group.returncode == 2
    assert "Could not find 'model/random_forrest'" in wrong_group.stderr
    assert "random_forest" in wrong_group.stderr  # Hydra lists the available options

    helped = cli("--help")
    assert helped.returncode == 0
    (models,) = [line for line in helped.stdout.splitlines() if line.startswith("model: ")]
    assert {"gradient_boosting", "logistic_regression", "random_forest", "ridge"} <= set(
        models.removeprefix("model: ").split(", ")
    )
    assert "tune: " in helped.stdout

    job = cli("--cfg", "job", "model=gradient_boosting", "train.onnx_threads=2")
    assert job.returncode == 0
    assert "type: gradient_boosting" in job.stdout and "onnx_threads: 2" in job.stdout

    info = cli("--info", "searchpath")
    assert info.returncode == 0 and "conf" in info.stdout


def test_experiment_selects_groups_and_values(cli: Runner) -> None:
    run = cli("+experiment=wine_gradient_boosting", *FAST, "model.n_estimators=20")
    assert run.returncode == 0, run.stderr
    assert "train gradient_boosting on wine" in run.stdout
    assert "Registered wine version 1 as champion" in run.stdout


def test_data_check_failure_exits_3(cli: Runner, tmp_path: Path) -> None:
    run = cli(*FAST, "data.checks.missing=fail", "+data.columns.mean_radius.nullable=false")
    assert run.returncode == 3, run.stdout + run.stderr
    assert "mean_radius" in run.stderr and "failed 'missing'" in run.stderr
    assert not (tmp_path / "model_registry").exists()


def test_poisoned_labels_and_copied_rows_are_refused_by_the_guards(
    cli: Runner, tmp_path: Path
) -> None:
    """20% flipped labels with label_errors=fail, 20% copies with duplicates=fail: exit 3,
    naming the guard; nothing registered."""
    flipped = cli(*FAST, "data.noise.label_flip_rate=0.2", "data.guards.label_errors=fail")
    assert flipped.returncode == 3, flipped.stdout + flipped.stderr
    assert "data.guards.label_errors" in flipped.stderr and "look wrong" in flipped.stderr
    report = json.loads(next((tmp_path / "outputs").glob("*/*/validation_report.json")).read_text())
    assert report["guards"]["duplicates"]["rows"] == 0
    copied = cli(*FAST, "data.noise.duplicate_rate=0.2", "data.guards.duplicates=fail")
    assert copied.returncode == 3, copied.stdout + copied.stderr
    assert "data.guards.duplicates" in copied.stderr and "repeat another row" in copied.stderr
    assert not (tmp_path / "model_registry").exists()
