"""The task queue against real Redis servers: the machine's own (127.0.0.1:6379), and one
started here with an append-only file for the restart test. No Ray.

Each test uses a stream of its own, deleted afterwards, so that runs beside each other (or
beside a running application) do not meet.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from framework.config.serve import AsyncConfig, ServeConfig
from framework.serving.queue import (
    BrokerUnavailable,
    QueueFull,
    TaskQueue,
    connection_options,
    safe_url,
)
from framework.serving.scaling import BacklogPolicy

BROKER = "redis://127.0.0.1:6379/0"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _queue(url: str = BROKER, **overrides: Any) -> TaskQueue:
    stream = f"framework-test:{uuid.uuid4().hex[:12]}"
    config = AsyncConfig(enabled=True, broker_url=url, stream=stream, **overrides)
    return TaskQueue(config, "app", "/tmp/registry")


def _cleanup(url: str, stream: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(f"{stream}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def queue() -> Iterator[TaskQueue]:
    q = _queue(visibility_timeout_s=1.0, retry_delay_s=0.1, max_deliveries=3, result_ttl_s=60)
    yield q
    _cleanup(BROKER, q.stream)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_task_is_pending_then_done_and_its_result_is_stored_once(queue: TaskQueue) -> None:
    async def go() -> None:
        task = await queue.enqueue(b'{"x": 1}', "m", sticky="caller", request_id="r-1")
        pending = await queue.status(task)
        assert pending is not None and pending["status"] == "pending"
        assert pending["attempts"] == 0 and pending["enqueued_at"] > 0
        await queue.ensure_group()
        first = await queue.read("c1", 10, None)
        assert [m.task for m in first] == [task]
        assert first[0].deliveries == 1
        assert first[0].text("sticky") == "caller" and first[0].text("request_id") == "r-1"
        result = orjson.dumps({"task": task, "status": "done", "version": 1})
        assert await queue.complete([(first[0], result)], []) == 0
        done = await queue.status(task)
        assert done == {"task": task, "status": "done", "version": 1}
        # acknowledged and deleted: nothing is pending, the stream is empty
        stats = await queue.stats()
        assert (stats.depth, stats.pending, stats.lag) == (0, 0, 0)
        # a second consumer finishing the same message later cannot change the result
        again = orjson.dumps({"task": task, "status": "done", "version": 2})
        assert await queue.complete([(first[0], again)], []) == 1
        assert (await queue.status(task))["version"] == 1  # type: ignore[index]
        assert await queue.status(uuid.uuid4().hex) is None
        await queue.close()

    run(go())


def test_a_message_left_unacknowledged_is_claimed_by_another_consumer(queue: TaskQueue) -> None:
    async def go() -> None:
        tasks = [await queue.enqueue(b"[]", "m") for _ in range(3)]
        await queue.ensure_group()
        taken = await queue.read("dies", 10, None)  # this consumer stops without acknowledging
        assert len(taken) == 3
        assert await queue.reclaim("other", 1000, 10) == []  # not idle long enough yet
        stats = await queue.stats()
        assert stats.pending == 3 and stats.depth == 3
        time.sleep(1.1)
        claimed = await queue.reclaim("other", 1000, 10)
        assert sorted(m.task for m in claimed) == sorted(tasks)
        assert {m.deliveries for m in claimed} == {2}
        assert await queue.existing_results(tasks) == set()
        await queue.complete([(m, b'{"status": "done"}') for m in claimed], [])
        assert await queue.existing_results(tasks) == set(tasks)
        consumers = {c["name"]: c["pending"] for c in (await queue.stats()).consumers}
        assert consumers == {"dies": 0, "other": 0}
        assert await queue.forget_consumers(0, keep="other") == ["dies"]
        await queue.close()

    run(go())


def test_a_failing_message_is_retried_then_dead_lettered_with_its_reason(queue: TaskQueue) -> None:
    async def go() -> None:
        poison = await queue.enqueue(b'{"bad": true}', "m")
        good = await queue.enqueue(b'{"good": true}', "m")
        await queue.ensure_group()
        batch = await queue.read("c", 10, None)
        bad = next(m for m in batch if m.task == poison)
        ok = next(m for m in batch if m.task == good)
        await queue.complete([(ok, b'{"status": "done"}')], [])  # the others keep flowing
        for attempt in (1, 2):
            assert bad.deliveries == attempt
            await queue.attempt_failed(bad, f"attempt {attempt} failed")
            record = await queue.status(poison)
            assert record is not None and record["last_error"] == f"attempt {attempt} failed"
            (bad,) = await queue.reclaim("c", 0, 10, only={bad.entry})
        assert bad.deliveries == 3
        failed = orjson.dumps({"task": poison, "status": "failed", "error": "always fails"})
        await queue.complete([], [(bad, "always fails", failed)])
        assert (await queue.status(poison))["status"] == "failed"  # type: ignore[index]
        assert (await queue.status(good))["status"] == "done"  # type: ignore[index]
        (letter,) = await queue.dead_letters()
        assert letter["task"] == poison and letter["reason"] == "always fails"
        assert letter["deliveries"] == "3" and letter["body"] == '{"bad": true}'
        stats = await queue.stats()
        assert (stats.depth, stats.pending, stats.dead) == (0, 0, 1)
        await queue.close()

    run(go())


def test_a_direct_producer_message_is_known_by_its_entry_id(queue: TaskQueue) -> None:
    client = redis.Redis.from_url(BROKER)
    entry = client.xadd(queue.stream, {"model": "m", "body": b'{"a": 1}'}).decode()
    client.close()

    async def go() -> None:
        found = await queue.status(entry)
        assert found is not None and found["status"] == "pending"
        await queue.ensure_group()
        (message,) = await queue.read("c", 10, None)
        assert message.task == entry
        stats = await queue.stats()
        assert stats.depth == 1 and stats.oldest_age_s >= 0
        await queue.close()

    run(go())


def test_a_full_queue_refuses_and_a_broker_away_is_unavailable() -> None:
    full = _queue(max_queue_length=2)
    try:

        async def go() -> None:
            await full.enqueue(b"{}", "m")
            await full.enqueue(b"{}", "m")
            with pytest.raises(QueueFull, match="max_queue_length"):
                await full.enqueue(b"{}", "m")
            await full.close()

        run(go())
    finally:
        _cleanup(BROKER, full.stream)
    away = _queue(f"redis://127.0.0.1:{_free_port()}/0", connect_timeout_s=0.5)

    async def refused() -> None:
        with pytest.raises(BrokerUnavailable, match="not available"):
            await away.enqueue(b"{}", "m")
        with pytest.raises(BrokerUnavailable):
            await away.status(uuid.uuid4().hex)
        await away.close()

    run(refused())


def test_credentials_and_tls_come_from_config_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FRAMEWORK_BROKER_PASSWORD", "s3cret")
    monkeypatch.setenv("FRAMEWORK_BROKER_USERNAME", "svc")
    plain = connection_options(AsyncConfig())
    assert plain["password"] == "s3cret" and plain["username"] == "svc"
    assert "ssl_cert_reqs" not in plain
    tls = connection_options(
        AsyncConfig(broker_url="rediss://broker:6380/0", tls={"ca_file": "/etc/ca.pem"})
    )
    assert tls["ssl_cert_reqs"] == "required" and tls["ssl_ca_certs"] == "/etc/ca.pem"
    assert safe_url("redis://user:pw@host:1/0") == "redis://user:***@host:1/0"
    assert safe_url("redis://host:1/0") == "redis://host:1/0"


def test_the_config_is_serve_async_and_checks_its_timeouts() -> None:
    serve = ServeConfig.model_validate({"async": {"enabled": True, "max_deliveries": 5}})
    assert serve.queue.enabled and serve.queue.max_deliveries == 5
    assert serve.model_dump(mode="json")["async"]["max_deliveries"] == 5
    # two copies of the framework serving a model of the same name never share a stream
    one = TaskQueue(AsyncConfig(), "churn", "/srv/a/model_registry").stream
    other = TaskQueue(AsyncConfig(), "churn", "/srv/b/model_registry").stream
    assert one != other and one.startswith("framework:churn:") and one.endswith(":tasks")
    with pytest.raises(ValueError, match="retry_delay_s"):
        AsyncConfig(retry_delay_s=40, visibility_timeout_s=30)
    with pytest.raises(ValueError, match="broker_url"):
        AsyncConfig(broker_url="amqp://guest@localhost")


class _Context:
    def __init__(self, backlog: dict[str, float] | None):
        self.aggregated_metrics = {"queue_backlog": backlog} if backlog is not None else {}


def test_the_scaling_policy_follows_the_backlog() -> None:
    policy = BacklogPolicy(target_backlog=100)
    assert policy(_Context(None))[0] == 1
    assert policy(_Context({"a": 0.0}))[0] == 1
    assert policy(_Context({"a": 250.0, "b": 240.0})) == (3, {"backlog": 250.0})


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A Redis server of this test's own that writes every command to its append-only file
    before it answers (the machine's Redis keeps nothing on disk)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (the machine's Redis service provides it)")
    port = _free_port()
    command = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(tmp_path),
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
    ]
    server: dict[str, Any] = {"url": f"redis://127.0.0.1:{port}/0", "command": command}

    def start() -> None:
        server["proc"] = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    server["start"] = start
    start()
    yield server
    server["proc"].kill()
    server["proc"].wait()


def test_messages_accepted_before_a_broker_crash_survive_it(
    persistent_redis: dict[str, Any],
) -> None:
    queue = _queue(persistent_redis["url"], visibility_timeout_s=1.0, retry_delay_s=0.1)

    async def before() -> list[str]:
        tasks = [await queue.enqueue(b"{}", "m") for _ in range(20)]
        await queue.ensure_group()
        await queue.read("c", 5, None)  # five are in flight when the broker dies
        await queue.close()
        return tasks

    tasks = run(before())
    persistent_redis["proc"].kill()  # SIGKILL: no shutdown save
    persistent_redis["proc"].wait()

    async def away() -> None:
        with pytest.raises(BrokerUnavailable):
            await queue.enqueue(b"{}", "m")
        await queue.close()

    run(away())
    persistent_redis["start"]()

    async def after() -> None:
        stats = await queue.stats()
        assert (stats.depth, stats.pending, stats.lag) == (20, 5, 15)
        time.sleep(1.1)
        claimed = await queue.reclaim("c2", 1000, 50)
        fresh = await queue.read("c2", 50, None)
        assert sorted(m.task for m in claimed + fresh) == sorted(tasks)
        await queue.complete([(m, b'{"status": "done"}') for m in claimed + fresh], [])
        assert await queue.existing_results(tasks) == set(tasks)
        await queue.close()

    run(after())
