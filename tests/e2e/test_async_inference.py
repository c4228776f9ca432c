"""Asynchronous inference over real HTTP and a real Redis: `task=serve` with `serve.async`.

One module-wide server on the machine's Redis (a stream of its own): producers over HTTP and
straight onto the stream, consumers scaled on the backlog, a consumer killed mid-batch, a
poison message, a burst ten times the consumers' rate, the metrics. The broker restart runs
last, against a second server on a Redis of the test's own that keeps an append-only file
(the machine's Redis keeps nothing on disk).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import requests

from framework.export.onnx import Signature
from framework.export.predictor import OnnxPredictor
from tests.e2e.conftest import BROKER, drop_stream, free_port, start_serve
from tests.e2e.test_serve_http import _cli, _env, rows
from tests.processes import stop

pytestmark = pytest.mark.e2e

DATA = ["data=churn", "data.source.rows=600", "model=logistic_regression"]
START_TIMEOUT_S = 240
QUEUE = [
    "serve.num_replicas=1",
    "serve.async.enabled=true",
    "serve.async.visibility_timeout_s=3",
    "serve.async.retry_delay_s=0.3",
    "serve.async.max_deliveries=3",
    "serve.async.batch_messages=16",
    "serve.async.autoscaling.min_replicas=1",
    "serve.async.autoscaling.max_replicas=2",
    "serve.async.autoscaling.target_backlog=1000",
    "serve.async.autoscaling.upscale_delay_s=1",
    "serve.async.autoscaling.downscale_delay_s=600",
    "monitor.flush_interval_s=0.5",
]


@dataclass
class App:
    url: str
    key: str
    stream: str
    broker: str
    proc: subprocess.Popen[str]
    work: Path
    lines: list[str] = field(default_factory=list)

    def post(self, path: str, body: Any, key: str | None = "default", **kw: Any) -> Any:
        headers = {"content-type": "application/json", **kw.pop("headers", {})}
        if key is not None:
            headers["x-api-key"] = self.key if key == "default" else key
        return requests.post(self.url + path, data=json.dumps(body), headers=headers, timeout=60)

    def get(self, path: str) -> Any:
        return requests.get(self.url + path, headers={"x-api-key": self.key}, timeout=30)

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.broker)


def _start(work: Path, key: str, broker: str, *extra: str) -> App:
    port = free_port()
    stream = f"framework-test:{uuid.uuid4().hex[:12]}"
    try:
        proc, lines = start_serve(
            work,
            *DATA,
            f"serve.port={port}",
            *QUEUE,
            f"serve.async.broker_url={broker}",
            f"serve.async.stream={stream}",
            *extra,
            timeout_s=START_TIMEOUT_S,
            env=_env(),
        )
    except BaseException:
        drop_stream(stream, broker)
        raise
    return App(f"http://127.0.0.1:{port}", key, stream, broker, proc, work, lines)


def _stop(app: App) -> None:
    stop(app.proc)
    drop_stream(app.stream, app.broker)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    work = tmp_path_factory.mktemp("async")
    done = _cli(work, *DATA, "train.latency_runs=20")
    assert done.returncode == 0, done.stdout + done.stderr
    made = _cli(work, "task=api_key", "security.key_name=client", "security.key_roles=[predict]")
    assert made.returncode == 0, made.stderr
    return work, made.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def app(trained: tuple[Path, str]) -> Iterator[App]:
    work, key = trained
    started = _start(work, key, BROKER)
    try:
        yield started
    finally:
        _stop(started)


def local_predictor(work: Path) -> OnnxPredictor:
    version = work / "model_registry" / "churn" / "versions" / "1"
    signature = Signature.from_dict(
        json.loads((version / "manifest.json").read_text())["signature"]
    )
    return OnnxPredictor((version / "model.onnx").read_bytes(), signature)


def wait_results(app: App, tasks: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    """Every task's stored result, read straight from Redis (fails if one is missing)."""
    client = app.redis()
    keys = {t: f"{app.stream}:result:{t}" for t in tasks}
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(tasks) and time.monotonic() < deadline:
        missing = [t for t in tasks if t not in found]
        for start in range(0, len(missing), 1000):
            part = missing[start : start + 1000]
            for task, value in zip(part, client.mget([keys[t] for t in part]), strict=True):
                if value is not None:
                    found[task] = json.loads(value)
        time.sleep(0.2)
    client.close()
    assert len(found) == len(tasks), f"{len(tasks) - len(found)} of {len(tasks)} have no result"
    return found


def enqueue_direct(app: App, bodies: list[Any]) -> list[str]:
    """Producers that write to the stream themselves (the documented message format)."""
    client = app.redis()
    pipe = client.pipeline(transaction=False)
    for body in bodies:
        pipe.xadd(app.stream, {"model": "churn", "body": json.dumps(body)})
    entries = [e.decode() for e in pipe.execute()]
    client.close()
    return entries


def test_predict_async_answers_what_predict_answers(app: App) -> None:
    out = "".join(app.lines)
    assert f"async:    POST {app.url}/v1/models/churn/predict_async" in out
    assert f"stream {app.stream} (group consumers)" in out
    records = rows(40, seed=11)
    queued = app.post("/v1/models/churn/predict_async", records, headers={"x-request-id": "job-7"})
    assert queued.status_code == 202, queued.text
    body = queued.json()
    task = body["task"]
    assert re.fullmatch(r"[0-9a-f]{32}", task)
    assert body["status"] == "pending" and body["rows"] == 40
    assert queued.headers["location"] == f"/v1/tasks/{task}" == body["href"]
    deadline = time.monotonic() + 30
    while (answer := app.get(f"/v1/tasks/{task}").json())["status"] == "pending":
        assert time.monotonic() < deadline, answer
        time.sleep(0.1)
    assert answer["status"] == "done" and answer["version"] == 1, answer
    assert answer["deliveries"] == 1 and answer["latency_ms"] >= 0
    result = answer["result"]
    sync = app.post("/v1/models/churn/predict", records).json()
    assert result["model"] == "churn" and result["version"] == 1
    assert result["request_id"] == task and result["correlation_id"] == "job-7"
    strip = [{k: v for k, v in p.items() if k != "id"} for p in result["predictions"]]
    assert strip == [{k: v for k, v in p.items() if k != "id"} for p in sync["predictions"]]
    assert [p["id"] for p in result["predictions"]] == [f"{task}-{i}" for i in range(40)]
    expected = local_predictor(app.work).predict_records(records)
    assert [p["label"] for p in result["predictions"]] == expected.labels.tolist()
    # refused exactly as predict refuses, and nothing is queued
    before = app.redis().xlen(app.stream)
    bad = app.post("/v1/models/churn/predict_async", [{**records[0], "age": "old"}])
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", 0, "age"]
    assert app.post("/v1/models/churn/predict_async", records, key=None).status_code == 401
    assert app.post("/v1/models/other/predict_async", records).status_code == 404
    assert app.post("/v1/models/churn/predict_async", rows(1100)).status_code == 422
    assert app.redis().xlen(app.stream) == before
    unknown = app.get(f"/v1/tasks/{uuid.uuid4().hex}")
    assert unknown.status_code == 404 and unknown.json()["status"] == "unknown"
    assert app.get("/v1/tasks/..%2F..").status_code == 404
    assert requests.get(f"{app.url}/v1/tasks/{task}", timeout=10).status_code == 401


def test_a_poison_message_is_dead_lettered_and_the_others_keep_flowing(app: App) -> None:
    good = [rows(3, seed=s) for s in range(30)]
    poison, *direct = enqueue_direct(app, [[{"age": "x"}], *good[:10]])
    tasks = [app.post("/v1/models/churn/predict_async", b).json()["task"] for b in good[10:]]
    results = wait_results(app, [poison, *direct, *tasks], timeout=60)
    assert all(results[t]["status"] == "done" for t in direct + tasks)
    failed = results[poison]
    assert failed["status"] == "failed" and failed["dead_lettered"] is True
    assert failed["deliveries"] == 3
    assert "body.0.age" in failed["error"] and failed["detail"][0]["field"] == "age"
    assert app.get(f"/v1/tasks/{poison}").json()["status"] == "failed"
    letters = app.redis().xrange(f"{app.stream}:dead")
    (letter,) = [f for _, f in letters if f[b"task"].decode() == poison]
    assert letter[b"deliveries"] == b"3" and b"age" in letter[b"reason"]
    assert json.loads(letter[b"body"]) == [{"age": "x"}]
    for task, records in zip(direct, good[:10], strict=True):
        labels = [p["label"] for p in results[task]["result"]["predictions"]]
        assert labels == local_predictor(app.work).predict_records(records).labels.tolist()


def _depth(app: App) -> int:
    return int(app.redis().xlen(app.stream))


def _consumers(app: App) -> int:
    return len(app.redis().xinfo_consumers(app.stream, "consumers"))


def test_a_burst_ten_times_the_consumers_rate_is_absorbed(app: App) -> None:
    """The consumers' rate is measured first; then ten seconds of their work arrives at
    once (onto the stream) while HTTP producers keep posting: every producer gets 202, the
    queue grows, the backlog adds a consumer, and everything drains and is answered."""
    body = rows(8, seed=3)
    wait_results(app, enqueue_direct(app, [body] * 100), timeout=60)  # warm
    assert _consumers(app) == 1
    sample = enqueue_direct(app, [body] * 500)
    started = time.monotonic()
    wait_results(app, sample, timeout=60)
    rate = 500 / (time.monotonic() - started)
    burst_size = int(10 * rate)
    peak = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _depth(app))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    burst = enqueue_direct(app, [body] * burst_size)
    statuses: list[int] = []
    accepted: list[str] = []

    def produce(_: int) -> None:
        for _ in range(25):
            answer = app.post("/v1/models/churn/predict_async", body)
            statuses.append(answer.status_code)
            if answer.status_code == 202:
                accepted.append(answer.json()["task"])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(produce, range(8)))
    deadline = time.monotonic() + 120
    while _depth(app) > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    watcher.join()
    results = wait_results(app, burst + accepted, timeout=120)
    deadline = time.monotonic() + 60  # the consumer the backlog asked for joins the group
    while _consumers(app) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert statuses == [202] * 200, sorted(set(statuses))
    assert all(r["status"] == "done" for r in results.values())
    assert peak[0] >= 3 * rate, (peak[0], rate)  # it grew: seconds of work waited
    assert _depth(app) == 0
    assert _consumers(app) == 2, "the backlog did not add a consumer"
    print(f"consumer rate {rate:.0f} msg/s; burst {burst_size}; peak depth {peak[0]}")


def _consumer_pids(app: App) -> dict[str, int]:
    out = {}
    for consumer in app.redis().xinfo_consumers(app.stream, "consumers"):
        name = consumer["name"].decode()
        match = re.search(r"-(\d+)-[0-9a-f]{6}$", name)
        if match and consumer["pending"] > 0:
            pid = int(match.group(1))
            try:  # a consumer gone earlier may have left its name, its pid taken by another
                title = " ".join(psutil.Process(pid).cmdline())
            except psutil.Error:
                continue
            if "QueueConsumer" in title:
                out[name] = pid
    return out


def test_a_consumer_killed_mid_batch_loses_and_duplicates_nothing(app: App) -> None:
    """SIGKILL a consumer replica while it holds messages, under load from HTTP and direct
    producers: every accepted task gets one result, those it held after a redelivery."""
    records = rows(64, seed=5)
    tasks: list[str] = []
    killed: list[str] = []

    def produce() -> None:
        for _ in range(100):
            answer = app.post("/v1/models/churn/predict_async", records)
            assert answer.status_code == 202, answer.text
            tasks.append(answer.json()["task"])

    producer = threading.Thread(target=produce)
    producer.start()
    direct = enqueue_direct(app, [records] * 3000)
    deadline = time.monotonic() + 60
    while not killed and time.monotonic() < deadline:
        for name, pid in _consumer_pids(app).items():  # a consumer holding messages now
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            killed.append(name)
            break
        time.sleep(0.005)
    producer.join()
    assert killed, "no consumer was caught holding messages"
    everything = tasks + direct
    results = wait_results(app, everything, timeout=180)
    assert len(results) == len(set(everything)) == 3100
    assert all(r["status"] == "done" for r in results.values())
    redelivered = [t for t, r in results.items() if r["deliveries"] > 1]
    assert redelivered, "nothing the killed consumer held was delivered again"
    expected = local_predictor(app.work).predict_records(records).labels.tolist()
    for task in redelivered:
        assert [p["label"] for p in results[task]["result"]["predictions"]] == expected
    # one result per task, and nothing left pending: the dead consumer's messages were claimed
    client = app.redis()
    stored = {k.decode() for k in client.scan_iter(f"{app.stream}:result:*", count=1000)}
    assert {f"{app.stream}:result:{t}" for t in everything} <= stored
    group = next(g for g in client.xinfo_groups(app.stream) if g["name"] == b"consumers")
    assert group["pending"] == 0 and client.xlen(app.stream) == 0
    consumers = client.xinfo_consumers(app.stream, "consumers")
    held = {c["name"].decode(): c["pending"] for c in consumers}
    assert held[killed[0]] == 0
    print(f"killed {killed[0]}; {len(redelivered)} tasks answered after a redelivery")


def test_queue_metrics_are_on_the_prometheus_endpoint(app: App) -> None:
    url = next(m.group(0) for line in app.lines if (m := re.search(r"http://\S+/metrics", line)))
    wanted = {
        "ray_framework_async_queue_depth": None,
        "ray_framework_async_oldest_message_age_seconds": None,
        "ray_framework_async_dead_lettered_total": 1.0,
        "ray_framework_async_redeliveries_total": 1.0,
        "ray_framework_async_latency_seconds_count": 1.0,
        "ray_framework_async_enqueued_total": 1.0,
        "ray_framework_async_broker_up": 1.0,
    }
    deadline = time.monotonic() + 60
    while True:
        text = requests.get(url, timeout=10).text
        totals: dict[str, float] = {}
        for line in text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in wanted and not line.startswith("#"):
                totals[name] = max(totals.get(name, 0.0), float(line.rsplit(" ", 1)[1]))
        low = [n for n, least in wanted.items() if n not in totals or totals[n] < (least or 0)]
        if not low:
            break
        assert time.monotonic() < deadline, f"missing or low: {low}"
        time.sleep(1)
    assert 'outcome="accepted"' in text and 'outcome="done"' in text


def test_tasks_accepted_before_a_broker_restart_are_answered(
    trained: tuple[Path, str], app: App, tmp_path: Path
) -> None:
    """On a Redis of the test's own with appendfsync always: kill -9 the broker with
    messages queued and in flight; producers get 503 with Retry-After meanwhile; once it is
    back, every task accepted before is answered."""
    _stop(app)  # one application at a time on two cores
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (the machine's Redis service provides it)"
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)]
    command += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]

    def start_broker() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        client = redis.Redis(port=port)
        for _ in range(200):
            try:
                client.ping()
                return proc
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    broker = start_broker()
    url = f"redis://127.0.0.1:{port}/0"
    work, key = trained
    restarted = _start(work, key, url, "serve.async.num_replicas=1")
    try:
        records = rows(16, seed=9)
        answered = [
            restarted.post("/v1/models/churn/predict_async", records).json()["task"]
            for _ in range(20)
        ]
        queued = enqueue_direct(restarted, [records] * 3000)  # more than is done in a moment
        broker.kill()  # SIGKILL: no save at shutdown; the append-only file is all there is
        broker.wait()
        away = restarted.post("/v1/models/churn/predict_async", records)
        assert away.status_code == 503 and away.headers["retry-after"] == "1", away.text
        assert "not available" in away.json()["error"]
        assert restarted.get(f"/v1/tasks/{answered[0]}").status_code == 503
        time.sleep(2)
        broker = start_broker()
        results = wait_results(restarted, answered + queued, timeout=180)
        assert all(r["status"] == "done" for r in results.values())
        after = restarted.post("/v1/models/churn/predict_async", records)
        assert after.status_code == 202
        late = wait_results(restarted, [after.json()["task"]], timeout=30)
        assert late[after.json()["task"]]["status"] == "done"
    finally:
        _stop(restarted)
        broker.kill()
        broker.wait()
