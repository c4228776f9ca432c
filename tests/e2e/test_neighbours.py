"""Two applications on one host, as on a shared machine: neither ever answers the other's
traffic. Application A loses its only replica; while Ray brings it back, requests carrying
A's key get 503 (retry) or wait, and never an answer from application B."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from framework.security.keys import add_key
from tests.e2e.conftest import cli_env, free_port, run_cli
from tests.processes import start_until

pytestmark = pytest.mark.e2e


def _serve(work: Path, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    argv = [sys.executable, "-m", "framework", "task=serve", *args]
    return start_until(argv, cwd=work, env=cli_env())


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[str, str, Any]]]:
    started: list[subprocess.Popen[str]] = []
    out = {}
    try:
        for label, data in (("a", "churn"), ("b", "breast_cancer")):
            work = tmp_path_factory.mktemp(label)
            common = [f"data={data}", "model=logistic_regression", "data.source.rows=600"]
            if data == "breast_cancer":
                common = [f"data={data}", "model=logistic_regression"]
            trained = run_cli(work, *common, "train.latency_runs=5", "ray.address=local")
            assert trained.returncode == 0, trained.stdout + trained.stderr
            key, _ = add_key(work / "api_keys.json", "client", ["predict"])
            port = free_port()
            # Each app is its own copy of the framework with its own Ray instance (by
            # default the second would join the first's cluster).
            proc, _ = _serve(
                work, *common, f"serve.port={port}", "serve.num_replicas=1", "ray.address=local"
            )
            started.append(proc)
            out[label] = (f"http://127.0.0.1:{port}", key, proc)
        yield out
    finally:
        for proc in started:
            proc.send_signal(signal.SIGINT)
        for proc in started:
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()


def _replica(proc: subprocess.Popen[str]) -> psutil.Process:
    for child in psutil.Process(proc.pid).children(recursive=True):
        if "ModelServer" in " ".join(child.cmdline()) or "ModelServer" in child.name():
            return child
    raise AssertionError("no ModelServer replica under the serving process")


def test_a_neighbour_never_answers_while_the_only_replica_is_down(apps: dict) -> None:
    url_a, key_a, proc_a = apps["a"]
    url_b = apps["b"][0]
    row = {"age": 40, "income": 50000.0, "tenure_months": 12, "support_calls": 1}
    assert requests.post(
        f"{url_a}/v1/models/churn/predict", json=row, headers={"x-api-key": key_a}
    ).ok
    assert requests.get(f"{url_b}/readyz").json()["model"] == "breast_cancer"
    _replica(proc_a).send_signal(signal.SIGKILL)
    seen: Counter[str] = Counter()
    foreign: list[str] = []
    deadline = time.monotonic() + 90
    recovered = False
    while time.monotonic() < deadline:
        try:
            answer = requests.post(
                f"{url_a}/v1/models/churn/predict",
                json=row,
                headers={"x-api-key": key_a},
                timeout=30,
            )
            ready = requests.get(f"{url_a}/readyz", timeout=30)
        except requests.RequestException as exc:
            seen[type(exc).__name__] += 1
            time.sleep(0.2)
            continue
        seen[str(answer.status_code)] += 1
        for response in (answer, ready):
            if "breast_cancer" in response.text or response.status_code == 401:
                foreign.append(f"{response.status_code} {response.text[:200]}")
        if answer.status_code == 200 and seen.total() > 3:
            recovered = True
            break
        time.sleep(0.2)
    assert not foreign, foreign[:5]
    assert recovered, seen
    assert sum(n for outcome, n in seen.items() if outcome != "200") >= 1, seen  # the outage
    assert set(seen) <= {"200", "503", "ConnectionError", "ReadTimeout"}, seen
