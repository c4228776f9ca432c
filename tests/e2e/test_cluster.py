"""One Ray cluster, many commands, with the defaults a user runs (no ``ray.*`` override).

`task=serve` starts the cluster (its dashboard port is held busy, so it must take another);
a second `python -m framework train.alias=challenger` joins it and the running app starts
its canary; a task submitted with `ray.submit=true` runs as a Ray Job that Ray's own CLI
lists, with its exit status passed on; drifted rows sent over HTTP make the monitor submit a
retraining job whose version enters as challenger; and a killed monitor comes back with its
rollout step, windows and counts.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from sklearn.datasets import load_breast_cancer

from framework.data.source import snake_case
from framework.security.keys import add_key
from framework.store.registry import ModelRegistry
from tests.e2e.conftest import Served, cli_env, free_port, run_cli, start_serve
from tests.processes import start_until, stop

pytestmark = pytest.mark.e2e

NAME = "breast_cancer"
TRAIN = ["model=logistic_regression", "data.noise.enabled=false", "train.latency_runs=5"]
RETRAIN = (
    'monitor.retrain.overrides=["model=logistic_regression","data.noise.enabled=false",'
    '"train.latency_runs=5"]'
)
MONITOR = [
    "monitor.retrain.enabled=true",
    "monitor.retrain.cooldown_s=3600",
    "monitor.retrain.triggers=[drift]",
    RETRAIN,
    "monitor.window.rows=300",
    "monitor.window.min_rows=100",
    "monitor.window.check_every_s=1",
    "monitor.registry_poll_s=0.5",
    "monitor.rollout.min_requests_per_step=100000",  # the canary holds its first step
    "monitor.state_every_s=0.5",
]


class Cluster(Served):
    def predict(self, rows: list[dict[str, float]]) -> dict[str, Any]:
        return self.predict_body(NAME, rows)


def _hold(port: int) -> socket.socket | None:
    """Keep ``port`` busy (None when something else holds it already)."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
    except OSError:
        sock.close()
        return None
    return sock


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("cluster")
    trained = run_cli(work, *TRAIN)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    key, _ = add_key(work / "api_keys.json", "ops", ["predict", "admin"])
    port = free_port()
    busy = _hold(8265)  # Ray's default dashboard port: the run must take a free one
    try:
        proc, lines = start_serve(
            work,
            *TRAIN,
            *MONITOR,
            f"serve.port={port}",
            env=cli_env({"COLUMNS": "200"}),
        )
    except BaseException:
        if busy is not None:
            busy.close()
        raise
    try:
        yield Cluster(work, f"http://127.0.0.1:{port}", key, proc, lines)
    finally:
        if busy is not None:
            busy.close()
        stop(proc)


def _dashboard(app: Cluster) -> str:
    line = next(x for x in app.lines if "Ray dashboard:" in x)
    return line.split("Ray dashboard:")[1].strip()


def test_serve_starts_the_cluster_and_takes_a_free_dashboard_port(cluster: Cluster) -> None:
    out = cluster.output
    assert "started a local Ray instance" in out, out
    assert "dashboard port 8265 is busy; the dashboard takes port" in out, out
    assert _dashboard(cluster) != "http://127.0.0.1:8265"
    token = (Path.home() / ".ray" / "auth_token").read_text().strip()  # Ray's token auth
    version = requests.get(
        f"{_dashboard(cluster)}/api/version",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert version.ok, version.text


def test_a_second_command_joins_and_its_challenger_starts_a_canary(cluster: Cluster) -> None:
    started = time.perf_counter()
    run = run_cli(cluster.work, *TRAIN, "train.alias=challenger")
    took = time.perf_counter() - started
    assert run.returncode == 0, run.stdout + run.stderr
    assert "joined the running Ray cluster" in run.stdout, run.stdout
    assert "Failed to bind" not in run.stdout + run.stderr
    status = cluster.wait(
        lambda s: s["rollout"]["challenger"] == 2 and s["routing"]["weight"] > 0,
        "canary of v2",
    )
    assert status["routing"]["champion"] == 1
    print(f"second command (joins, trains, registers): {took:.1f} s")


def test_a_submitted_task_runs_as_a_ray_job_with_its_exit_status(cluster: Cluster) -> None:
    ok = run_cli(cluster.work, "task=registry", "ray.submit=true")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Submitted Ray Job framework-registry-" in ok.stdout, ok.stdout
    assert "champion" in ok.stdout  # the job's own output streamed here
    job_id = ok.stdout.split("Submitted Ray Job ")[1].split()[0]

    failed = run_cli(cluster.work, "task=registry", "version=99", "ray.submit=true")
    assert failed.returncode == 5, failed.stdout + failed.stderr  # the job's registry error

    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent))
    assert ray_cli is not None
    listed = subprocess.run(
        [ray_cli, "job", "list", "--address", _dashboard(cluster)],
        env=cli_env({"RAY_AUTH_MODE": "token"}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert job_id in listed.stdout + listed.stderr


def _drifted_rows(n: int) -> list[dict[str, float]]:
    data = load_breast_cancer()
    names = [snake_case(x) for x in data.feature_names]
    X = data.data[:n].copy()
    for column in ("mean_radius", "worst_texture"):
        j = names.index(column)
        X[:, j] += 1.5 * data.data[:, j].std()
    return [dict(zip(names, map(float, x), strict=True)) for x in X]


def test_drift_over_http_submits_a_retraining_job_whose_version_starts_a_canary(
    cluster: Cluster,
) -> None:
    rolled = run_cli(cluster.work, "task=rollback")  # no rollout in progress
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    cluster.wait(lambda s: s["rollout"]["challenger"] is None, "no challenger")
    rows = _drifted_rows(300)
    cluster.predict(rows[:150])
    cluster.predict(rows[150:])
    status = cluster.wait(lambda s: s["retrain_job"] is not None, "retraining job submitted")
    job_id = status["retrain_job"]
    assert job_id.startswith(f"retrain-{NAME}-")
    store = ModelRegistry(cluster.work / "model_registry")
    (start,) = [e for e in store.audit(NAME) if e["action"] == "retrain_start"]
    assert start["job_id"] == job_id
    assert start["reason"].startswith("drift in ")
    status = cluster.wait(
        lambda s: s["rollout"]["challenger"] == 3 and s["routing"]["weight"] > 0,
        "canary of the retrained v3",
        timeout=240,
    )
    done = cluster.wait(lambda s: not s["retraining"], "retraining job followed to its end")
    assert done["rollout"]["challenger"] == 3
    ended = [e for e in store.audit(NAME) if e["action"] == "retrain_done"]
    assert ended and ended[-1]["job_id"] == job_id and ended[-1]["exit_status"] == 0
    assert ended[-1]["status"] == "SUCCEEDED"


def _monitor_process(app: Cluster) -> psutil.Process:
    for child in psutil.Process(app.proc.pid).children(recursive=True):
        try:
            if "Monitor" in " ".join(child.cmdline()) and "ServeReplica" in " ".join(
                child.cmdline()
            ):
                return child
        except psutil.Error:
            continue
    raise AssertionError("no Monitor replica under the serving process")


def test_a_killed_monitor_comes_back_with_its_rollout_step_and_windows(cluster: Cluster) -> None:
    cluster.wait(lambda s: s["rollout"]["challenger"] is not None, "a rollout")
    cluster.predict(_drifted_rows(50))
    time.sleep(2.0)  # past monitor.state_every_s: the state is on disk
    before = cluster.status()
    assert before["window_rows"] > 0 and before["traffic"]
    victim = _monitor_process(cluster)
    victim.send_signal(signal.SIGKILL)
    victim.wait(30)
    after = cluster.wait(lambda s: s["window_rows"] > 0, "the monitor answering again", timeout=120)
    assert after["rollout"]["challenger"] == before["rollout"]["challenger"]
    assert after["rollout"]["step"] == before["rollout"]["step"]
    assert after["routing"]["weight"] == before["routing"]["weight"]
    assert after["window_rows"] == before["window_rows"]
    assert after["traffic"] == before["traffic"]
    assert after["labels"]["tracked_predictions"] == before["labels"]["tracked_predictions"]
    assert os.path.exists(cluster.work / "model_registry" / NAME / "monitor" / "champion.json")


def test_another_app_beside_it_serves_on_a_private_instance(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A second copy of the framework (its own folder and port) with the defaults."""
    trained = run_cli(tmp_path, *TRAIN)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    key, _ = add_key(tmp_path / "api_keys.json", "client", ["predict"])
    port = free_port()
    argv = [sys.executable, "-m", "framework", "task=serve", *TRAIN, f"serve.port={port}"]
    proc, lines = start_until(argv, cwd=tmp_path, env=cli_env())
    try:
        out = "".join(lines)
        assert "joined the running Ray cluster" in out, out
        assert (
            f"note: the application '{NAME}' already runs on the joined Ray cluster; serving "
            "on a private Ray instance instead"
        ) in out, out
        assert "started a local Ray instance" in out, out
        mine = requests.get(f"http://127.0.0.1:{port}/readyz", headers={"x-api-key": key})
        assert mine.status_code == 200, mine.text
        assert cluster.status()["model"] == NAME  # the first app still answers
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(90)


METADATA = r"""
import json, sys
import ray._common.usage.usage_constants as usage
from ray._private import ray_constants
from ray._raylet import GcsClient

client = GcsClient(address=sys.argv[1])
key, space = usage.CLUSTER_METADATA_KEY, ray_constants.KV_NAMESPACE_CLUSTER
if sys.argv[2] == "set":
    document = client.internal_kv_get(key, namespace=space).decode()
    print(document)
    other = {**json.loads(document), "ray_version": "2.59.0", "python_version": "3.12.4"}
    document = json.dumps(other)
else:
    document = sys.argv[2]
client.internal_kv_put(key, document.encode(), True, namespace=space)
"""


def test_joining_a_cluster_of_other_versions_names_both(cluster: Cluster) -> None:
    address = Path("/tmp/ray/ray_current_cluster").read_text().strip()
    env = cli_env({"RAY_AUTH_MODE": "token"})
    changed = subprocess.run(
        [sys.executable, "-c", METADATA, address, "set"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert changed.returncode == 0, changed.stderr
    try:  # the cluster now says it runs Ray 2.59.0 on Python 3.12.4
        run = run_cli(cluster.work, *TRAIN, "train.alias=none")
    finally:
        subprocess.run(
            [sys.executable, "-c", METADATA, address, changed.stdout.strip()],
            env=env,
            timeout=60,
            check=True,
        )
    import ray

    mine = f"Ray {ray.__version__} on Python {sys.version.split()[0]}"
    assert run.returncode == 7, run.stdout + run.stderr
    assert (
        f"error: cannot join the Ray cluster at {address}: it runs Ray 2.59.0 on Python "
        f"3.12.4, this machine has {mine}"
    ) in run.stderr.replace("\n", " "), run.stderr
    assert "Traceback" not in run.stderr
