"""Two hosts, one Ray cluster: a head in one network namespace, a worker joining it by address
from another (each with its own address on a bridge), the registry on a path both reach.

On that cluster a torch model trains on two Ray Train workers on different nodes, a sweep's
trials run on both nodes, `task=score`'s predictor actors run on both nodes, and `task=serve`
runs two replicas on different nodes; then the worker's Ray processes are killed under
steady load with client retries (at most 3): no request may fail, and the time until two
replicas serve again is printed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benchmarks.faults import RetryingLoad, wait_until
from framework.security.keys import add_key
from tests import netns
from tests.e2e.conftest import cli_env
from tests.processes import start_until

pytestmark = [pytest.mark.e2e, pytest.mark.multinode]

RAY = str(Path(sys.executable).parent / "ray")
GCS_PORT = 6380  # explicit: 6379, Ray's default, is Redis's on these machines
DASHBOARD_PORT = 8265
SERVE_PORT = 8000
NAME = "breast_cancer"


@dataclass
class TwoHosts:
    hosts: netns.Hosts
    work: Path
    env: dict[str, str]

    @property
    def head(self) -> netns.Host:
        return self.hosts["head"]

    @property
    def worker(self) -> netns.Host:
        return self.hosts["worker"]

    @property
    def dashboard(self) -> str:
        return f"http://{self.head.address}:{DASHBOARD_PORT}"

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """``python -m framework`` on the head host, joining the cluster by RAY_ADDRESS."""
        return self.head.run(
            [sys.executable, "-m", "framework", *args, f"store.path={self.work}/registry"],
            cwd=self.work,
            env=self.env,
            timeout=timeout,
        )

    def actors(self, class_name: str, alive: bool = True) -> list[dict[str, Any]]:
        argv = [RAY, "list", "actors", "--address", self.dashboard, "--format", "json"]
        argv += ["--filter", f"class_name={class_name}", "--limit", "1000", "--detail"]
        if alive:
            argv += ["--filter", "state=ALIVE"]
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def node_id(self, host: netns.Host) -> str:
        argv = [RAY, "list", "nodes", "--address", self.dashboard, "--format", "json"]
        argv += ["--filter", f"node_ip={host.address}", "--detail"]
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return str(json.loads(done.stdout)[0]["node_id"])

    def nodes_alive(self) -> int:
        argv = [RAY, "list", "nodes", "--address", self.dashboard, "--format", "json"]
        argv += ["--filter", "state=ALIVE"]
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60)
        return len(json.loads(done.stdout)) if done.returncode == 0 else 0


@pytest.fixture(scope="module")
def cluster() -> Iterator[TwoHosts]:
    reason = netns.available()
    if reason is not None:
        pytest.skip(f"no test hosts: {reason}")
    temp = Path(tempfile.mkdtemp(prefix="fwmn", dir="/tmp"))  # short: Ray's socket paths
    work = temp / "work"
    work.mkdir()
    # Every test host has the machine's hostname; torch's Gloo would resolve it to loopback,
    # so it is told each host's interface (as on any multi-NIC machine).
    env = cli_env({"RAY_AUTH_MODE": "token", "COLUMNS": "200", "GLOO_SOCKET_IFNAME": "eth0"})
    with netns.Hosts(["head", "worker"]) as hosts:
        two = TwoHosts(hosts, work, {**env, "RAY_ADDRESS": f"{hosts['head'].address}:{GCS_PORT}"})
        head = two.head.run(
            [
                RAY,
                "start",
                "--head",
                f"--node-ip-address={two.head.address}",
                f"--port={GCS_PORT}",
                "--dashboard-host=0.0.0.0",
                f"--dashboard-port={DASHBOARD_PORT}",
                "--num-cpus=2",
                f"--temp-dir={temp}/ray",
                "--disable-usage-stats",
            ],
            env=env,
            timeout=180,
        )
        assert head.returncode == 0, head.stdout + head.stderr
        joined = two.worker.run(
            [
                RAY,
                "start",
                f"--address={two.head.address}:{GCS_PORT}",
                f"--node-ip-address={two.worker.address}",
                "--num-cpus=2",
                "--disable-usage-stats",
            ],
            env=env,
            timeout=180,
        )
        assert joined.returncode == 0, joined.stdout + joined.stderr
        deadline = time.monotonic() + 120
        while two.nodes_alive() < 2:
            assert time.monotonic() < deadline, "the worker never joined the head"
            time.sleep(1)
        try:
            yield two
        finally:
            two.head.run([RAY, "stop", "--force"], env=env, timeout=120)
    shutil.rmtree(temp, ignore_errors=True)


def test_torch_trains_on_two_workers_on_two_nodes(cluster: TwoHosts) -> None:
    run = cluster.cli(
        "model=torch_mlp",
        "model.epochs=3",
        "model.hidden_sizes=[32]",
        "train.distributed.workers=2",
        "train.distributed.placement_strategy=STRICT_SPREAD",
        f"train.distributed.storage_path={cluster.work}/ray_train",
        "train.alias=none",
        "train.latency_runs=5",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "joined the running Ray cluster" in run.stdout and "(RAY_ADDRESS" in run.stdout
    workers = cluster.actors("RayTrainWorker", alive=False)
    assert len({w["node_id"] for w in workers}) == 2, workers


def test_a_sweeps_trials_run_on_both_nodes(cluster: TwoHosts) -> None:
    run = cluster.cli(
        "-m",
        "+experiment=clean_logistic_regression",
        "model.C=0.01,0.03,0.1,0.3,1.0,3.0,10.0,30.0",
        "tune.register_best=false",
        "tune.cpus_per_trial=1",
        "tune.max_concurrent_trials=4",
        f"tune.best_experiment_dir={cluster.work}/best",
        "train.latency_runs=5",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    expected = sorted([cluster.head.address, cluster.worker.address])
    assert f"trials ran on 2 node(s): {', '.join(expected)}" in run.stdout, run.stdout


def test_batch_scoring_spreads_over_both_nodes(cluster: TwoHosts) -> None:
    """task=score on the joined cluster, with no setting about nodes: its predictor actors
    run on both, and every row comes back scored."""
    import re

    import pandas as pd

    trained = cluster.cli("model=logistic_regression", "train.alias=none", "train.latency_runs=5")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    version = re.search(r"Registered breast_cancer version (\d+)", trained.stdout)
    assert version is not None, trained.stdout
    from sklearn.datasets import load_breast_cancer

    from framework.data.source import snake_case

    frame = load_breast_cancer(as_frame=True).frame.drop(columns=["target"])
    frame.columns = [snake_case(c) for c in frame.columns]
    incoming = cluster.work / "incoming"
    incoming.mkdir()
    rows = pd.concat([frame] * 8, ignore_index=True)
    for i in range(4):  # one read task per file
        rows.iloc[i::4].to_parquet(incoming / f"part-{i}.parquet", index=False)
    # three one-CPU actors cannot fit on one two-CPU node
    scored = cluster.cli(
        "task=score", f"version={version.group(1)}", f"score.input={incoming}",
        "score.pool_size=3", "score.actor_cpus=1", "score.batch_rows=256",
        "hydra.run.dir=score_run",
    )  # fmt: skip
    assert scored.returncode == 0, scored.stdout + scored.stderr
    summary = json.loads((cluster.work / "score_run" / "scores" / "summary.json").read_text())
    assert summary["rows_in"] == summary["scored"] == len(rows)
    actors = cluster.actors("MapWorker(MapBatches(Scorer))", alive=False)
    assert len({a["node_id"] for a in actors}) == 2, actors


def _serve(cluster: TwoHosts) -> tuple[subprocess.Popen[str], list[str]]:
    argv = [sys.executable, "-m", "framework", "task=serve", "serve.num_replicas=2"]
    argv += ["serve.host=0.0.0.0", f"serve.port={SERVE_PORT}"]
    argv += [f"store.path={cluster.work}/registry"]
    return start_until(cluster.head.command(argv), cwd=cluster.work, env=cluster.env)


def test_serving_survives_the_loss_of_a_node(cluster: TwoHosts) -> None:
    trained = cluster.cli("model=logistic_regression", "train.latency_runs=5")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    key, _ = add_key(cluster.work / "api_keys.json", "load", ["predict"])
    proc, lines = _serve(cluster)
    replica = f"ServeReplica:{NAME}:ModelServer"
    try:
        nodes = {a["node_id"] for a in cluster.actors(replica)}
        assert len(nodes) == 2, "".join(lines)
        lost = cluster.node_id(cluster.worker)
        assert lost in nodes

        url = f"http://{cluster.head.address}:{SERVE_PORT}/v1/models/{NAME}/predict"
        row = json.loads(next(x for x in lines if "curl -s" in x).split("-d '")[1].rstrip("'\n"))
        load = RetryingLoad(url, row, {"x-api-key": key}, clients=4, retries=3).start()
        try:
            time.sleep(3)
            before = load.answered
            assert cluster.worker.kill_all() > 0

            def on_the_head_again() -> bool:
                running = cluster.actors(replica)
                return len(running) == 2 and all(a["node_id"] != lost for a in running)

            back = wait_until(on_the_head_again, 180, every_s=1)
            time.sleep(3)
        finally:
            load.stop()
        print(f"node lost under load: {load.summary()}; two replicas again after {back} s")
        assert back is not None, "the replicas were not rescheduled on the head"
        assert load.counts["failed"] == 0, load.summary()
        assert load.answered > before
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
