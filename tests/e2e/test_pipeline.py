"""``task=pipeline`` beside a running application, as a release job runs it.

The first version comes through the pipeline itself and becomes champion; `task=serve`
serves it with the monitor on (the canary holds its first step). Then:

- a random forest made very large on purpose, correct (it passes every offline gate, its
  answers equal ONNX Runtime's) but too slow for the declared load, is refused at infra
  validation with that stage's exit status; nothing is aliased, every request the serving
  application answered meanwhile came from the champion, and the staging routes are gone;
- a good candidate, submitted as a Ray Job to the running cluster, passes every stage and
  becomes challenger, and the running application starts its canary.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sklearn.datasets import load_breast_cancer

from framework.data.source import snake_case
from framework.security.keys import add_key
from framework.shipping.pipeline import STAGES
from framework.store.registry import ModelRegistry
from tests.e2e.conftest import Served, cli_env, free_port, run_cli, start_serve
from tests.processes import stop

pytestmark = pytest.mark.e2e

NAME = "breast_cancer"
FAST = ["model=logistic_regression", "data.noise.enabled=false", "train.latency_runs=5"]
MONITOR = [
    "monitor.registry_poll_s=0.5",
    "monitor.rollout.min_requests_per_step=100000",  # the canary holds its first step
]
#: Correct but slow: 3000 full-depth trees, declared load of 256-row requests at 40/s with
#: a p99 budget of 15 ms. ONNX Runtime needs 30 ms or more per such request on a fast
#: 2-core machine (the median of a CI run), so the budget holds at least a 2x margin, while a
#: small model answers 256 rows in a few milliseconds.
BUDGET_MS = 15
SLOW = [
    "model=random_forest",
    "model.n_estimators=3000",
    "data.noise.enabled=false",
    "train.latency_runs=5",
    "train.robustness.enabled=false",
    "gates.champion.max_quality_drop=1",
    "gates.champion.max_latency_ratio=100000",
    "gates.champion.max_size_ratio=100000",
]
LOAD = [
    "pipeline.infra.rows_per_request=256",
    "pipeline.infra.rate_rps=40",
    "pipeline.infra.duration_s=4",
    f"pipeline.infra.p99_ms={BUDGET_MS}",
]


class App(Served):
    @property
    def store(self) -> ModelRegistry:
        return ModelRegistry(self.work / "model_registry")

    def predict(self, rows: list[dict[str, float]]) -> int:
        body = self.predict_body(NAME, rows, headers={"x-customer-id": "c-1"})
        return int(body["version"])

    def stages(self, run: str) -> list[dict[str, Any]]:
        return [e for e in self.store.audit(NAME) if e.get("run") == run]


def _rows(n: int) -> list[dict[str, float]]:
    data = load_breast_cancer()
    names = [snake_case(x) for x in data.feature_names]
    return [dict(zip(names, map(float, x), strict=True)) for x in data.data[:n]]


def _run_id(output: str) -> str:
    return output.split("(run ")[1].split(")")[0]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    work = tmp_path_factory.mktemp("pipeline")
    first = run_cli(work, "task=pipeline", *FAST)
    assert first.returncode == 0, first.stdout + first.stderr
    assert ModelRegistry(work / "model_registry").aliases(NAME) == {"champion": 1}
    key, _ = add_key(work / "api_keys.json", "ops", ["predict", "admin"])
    port = free_port()
    proc, lines = start_serve(
        work, *FAST, *MONITOR, f"serve.port={port}", env=cli_env({"COLUMNS": "200"})
    )
    try:
        yield App(work, f"http://127.0.0.1:{port}", key, proc, lines)
    finally:
        stop(proc)


def test_the_first_version_passed_every_stage_and_became_champion(app: App) -> None:
    runs = [e for e in app.store.audit(NAME) if e["action"] == "pipeline_stage"]
    assert [e["stage"] for e in runs] == list(STAGES)
    assert all(e["status"] == "passed" and e["exit_status"] == 0 for e in runs)
    infra = next(e for e in runs if e["stage"] == "infra_validation")
    assert infra["mismatches"] == 0 and infra["errors"] == 0 and infra["torn_down"] is True
    assert infra["replayed"] == 200 and infra["p99_ms"] <= infra["budget_p99_ms"]


def test_a_correct_but_slow_forest_is_refused_at_infra_validation(app: App) -> None:
    rows = _rows(8)
    answered: list[int] = []
    done = threading.Event()

    failed: list[str] = []

    def traffic() -> None:  # what the serving application answers while the pipeline runs
        while not done.is_set():
            try:
                answered.append(app.predict(rows))
            except (AssertionError, requests.RequestException) as exc:
                failed.append(str(exc)[:300])
            time.sleep(0.05)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        run = run_cli(app.work, "task=pipeline", *SLOW, *LOAD)
    finally:
        done.set()
        sender.join(30)
    output = run.stdout + run.stderr
    assert run.returncode == STAGES["infra_validation"] == 9, output
    assert "error in stage infra_validation" in run.stderr, output
    assert f"over the budget of {BUDGET_MS} ms" in output, output
    assert "0 answered differently from ONNX offline" in run.stdout, output  # correct, slow

    refused = len(app.store.versions(NAME))  # registered, never aliased
    assert app.store.aliases(NAME) == {"champion": 1}
    assert not [
        e for e in app.store.audit(NAME) if e["action"] == "alias" and e.get("to") == refused
    ]
    stages = app.stages(_run_id(run.stdout))
    assert [(e["stage"], e["status"]) for e in stages] == [
        ("validate", "passed"),
        ("train", "passed"),
        ("evaluate", "passed"),
        ("gates", "passed"),
        ("register", "passed"),
        ("infra_validation", "failed"),
    ]
    assert stages[-1]["exit_status"] == 9 and stages[-1]["torn_down"] is True
    assert stages[-1]["p99_ms"] > BUDGET_MS and stages[-1]["errors"] == 0

    assert not failed, failed[:5]  # the staging app came and went beside it unnoticed
    assert answered and set(answered) == {1}, answered  # the serving app never saw it
    status = app.status()
    assert status["rollout"]["challenger"] is None, json.dumps(status)[:2000]
    assert refused not in (status["routing"]["champion"], status["routing"].get("challenger"))
    staging = f"{app.url}/_staging/{_run_id(run.stdout)}/readyz"
    assert requests.get(staging, timeout=10).status_code == 404  # torn down
    assert not any((app.work / "model_registry" / ".staging").iterdir())  # its key is gone


def test_a_pipeline_submitted_as_a_ray_job_makes_a_challenger_and_starts_the_canary(
    app: App,
) -> None:
    run = run_cli(app.work, "task=pipeline", "ray.submit=true", *FAST, "train.seed=1")
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "Submitted Ray Job framework-pipeline-" in run.stdout, output
    assert "Pipeline passed" in run.stdout, output  # the job's own output, streamed
    version = len(app.store.versions(NAME))
    assert app.store.aliases(NAME) == {"champion": 1, "challenger": version}
    stages = app.stages(_run_id(run.stdout))
    assert [e["stage"] for e in stages] == list(STAGES)
    assert all(e["status"] == "passed" for e in stages)
    status = app.wait(
        lambda s: s["rollout"]["challenger"] == version and s["routing"]["weight"] > 0,
        "the canary of the new challenger",
    )
    assert status["routing"]["champion"] == 1
