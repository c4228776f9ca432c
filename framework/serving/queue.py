"""The task queue of asynchronous inference, on a Redis stream with a consumer group.

Keys, all named after the stream (``serve.async.stream``, by default
``framework:<app>:<registry>:tasks``, where ``<registry>`` is a short hash of the registry's
absolute path, so that another copy of the framework on the same Redis, serving a model of
the same name from another registry, never reads this application's tasks):

- ``<stream>``: the messages. Fields: ``body`` (a v1 predict body: one row object or a list
  of them), ``model`` (the served model's name), and optionally ``task`` (the task id; by
  default the entry id), ``sticky`` (the caller's key for champion/challenger routing) and
  ``request_id`` (echoed as ``correlation_id``). A producer may ``XADD`` these itself.
- ``<stream>:task:<id>``: a hash kept while a task waits (when it was queued, its attempts,
  its last error), with the result TTL.
- ``<stream>:result:<id>``: the task's outcome as JSON, written once (``SET NX``) with the
  result TTL, in the same transaction that acknowledges and deletes the message.
- ``<stream>:dead``: the dead-letter stream: the message, its reason and its deliveries.

Delivery is at least once: a consumer that dies holds its messages in the group's pending
list until another claims them after ``visibility_timeout_s``. Results are idempotent by
task id: the first stored result stands, a later one for the same task is dropped.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from framework.config.serve import AsyncConfig

logger = logging.getLogger("ray.serve")

#: Task ids: the server's own (32 hex digits) or a stream entry id (direct producers).
TASK_ID = re.compile(r"[0-9a-f]{32}|[0-9]{1,20}-[0-9]{1,20}")
ENTRY_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")

# Atomically: refuse when the stream is full, else add the message and its task record.
_ENQUEUE = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
local id = redis.call('XADD', KEYS[1], '*', 'task', ARGV[3], 'model', ARGV[4], 'body', ARGV[5],
                      'sticky', ARGV[6], 'request_id', ARGV[7])
redis.call('HSET', KEYS[2], 'enqueued_ms', string.match(id, '^(%d+)'), 'attempts', 0)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
return id
"""


class BrokerUnavailable(Exception):
    """The broker cannot be reached or refused the command."""


class QueueFull(Exception):
    """The stream holds ``max_queue_length`` messages already."""


def entry_ms(entry: str) -> int:
    """When the broker added an entry (its id's first part, in ms of the broker's clock)."""
    return int(entry.split("-", 1)[0])


@dataclass
class Message:
    """One delivered message."""

    entry: str
    fields: dict[str, bytes]
    deliveries: int

    @property
    def task(self) -> str:
        task = self.fields.get("task", b"").decode("ascii", "replace")
        return task if TASK_ID.fullmatch(task) else self.entry

    def text(self, name: str) -> str | None:
        value = self.fields.get(name)
        return value.decode("utf-8", "replace") if value else None


@dataclass
class QueueStats:
    """The queue as the broker sees it now."""

    depth: int = 0  # messages in the stream: waiting or being worked on
    pending: int = 0  # delivered, not yet acknowledged
    lag: int = 0  # not delivered yet
    oldest_age_s: float = 0.0  # age of the oldest message still in the stream
    dead: int = 0  # entries in the dead-letter stream
    consumers: list[dict[str, Any]] = field(default_factory=list)


def connection_options(config: AsyncConfig) -> dict[str, Any]:
    """``redis.from_url`` options: credentials from the environment, TLS for rediss://."""
    options: dict[str, Any] = {
        "socket_connect_timeout": config.connect_timeout_s,
        "socket_timeout": config.connect_timeout_s + config.block_ms / 1000 + 5.0,
        "health_check_interval": 15,
    }
    if config.username_env and os.environ.get(config.username_env):
        options["username"] = os.environ[config.username_env]
    if config.password_env and os.environ.get(config.password_env):
        options["password"] = os.environ[config.password_env]
    if urlsplit(config.broker_url).scheme == "rediss":
        tls = config.tls
        options["ssl_cert_reqs"] = "required" if tls.verify else "none"
        options["ssl_check_hostname"] = tls.verify
        if tls.ca_file:
            options["ssl_ca_certs"] = tls.ca_file
        if tls.cert_file:
            options["ssl_certfile"] = tls.cert_file
        if tls.key_file:
            options["ssl_keyfile"] = tls.key_file
    return options


def default_stream(app_name: str, registry: str) -> str:
    """``framework:<app>:<hash of the registry's absolute path>:tasks``."""
    tag = hashlib.sha256(str(Path(registry).expanduser().resolve()).encode()).hexdigest()[:8]
    return f"framework:{app_name}:{tag}:tasks"


def safe_url(url: str) -> str:
    """The broker URL without a password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + netloc).geturl()


class TaskQueue:
    """Producer and consumer side of one stream."""

    def __init__(self, config: AsyncConfig, app_name: str, registry: str):
        self.config = config
        self.stream = config.stream or default_stream(app_name, registry)
        self.group = config.group
        self.dead = config.dead_letter_stream or f"{self.stream}:dead"
        self.where = safe_url(config.broker_url)
        self._client: aioredis.Redis | None = None
        self._enqueue: Any = None

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_url(
                self.config.broker_url, **connection_options(self.config)
            )
            self._enqueue = self._client.register_script(_ENQUEUE)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def result_key(self, task: str) -> str:
        return f"{self.stream}:result:{task}"

    def task_key(self, task: str) -> str:
        return f"{self.stream}:task:{task}"

    def _unavailable(self, exc: Exception) -> BrokerUnavailable:
        return BrokerUnavailable(f"the broker at {self.where} is not available: {exc}")

    # -- producers -----------------------------------------------------------------------
    async def enqueue(
        self, body: bytes, model: str, sticky: str | None = None, request_id: str | None = None
    ) -> str:
        """Add one message; its task id. Returns only once the broker holds the message."""
        client = self.client
        task = uuid.uuid4().hex
        try:
            entry = await self._enqueue(
                keys=[self.stream, self.task_key(task)],
                args=[
                    self.config.max_queue_length,
                    self.config.result_ttl_s,
                    task,
                    model,
                    body,
                    sticky or "",
                    request_id or "",
                ],
                client=client,
            )
        except RedisError as exc:
            raise self._unavailable(exc) from None
        if entry is None:
            raise QueueFull(
                f"the queue holds {self.config.max_queue_length} messages "
                "(serve.async.max_queue_length)"
            )
        return task

    async def status(self, task: str) -> dict[str, Any] | None:
        """The task's outcome, or its pending record; None when the broker knows no such task."""
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.get(self.result_key(task))
                pipe.hgetall(self.task_key(task))
                if ENTRY_ID.fullmatch(task):
                    pipe.xrange(self.stream, task, task, count=1)
                found = await pipe.execute()
        except RedisError as exc:
            raise self._unavailable(exc) from None
        if found[0] is not None:
            return dict(orjson.loads(found[0]))
        record = {k.decode(): v.decode() for k, v in (found[1] or {}).items()}
        if not record and len(found) > 2 and found[2]:
            record = {"enqueued_ms": str(entry_ms(task)), "attempts": "0"}
        if not record:
            return None
        out: dict[str, Any] = {"task": task, "status": "pending"}
        if "enqueued_ms" in record:
            out["enqueued_at"] = int(record["enqueued_ms"]) / 1000.0
        out["attempts"] = int(record.get("attempts", 0))
        if record.get("last_error"):
            out["last_error"] = record["last_error"]
        return out

    # -- consumers ---------------------------------------------------------------------------
    async def ensure_group(self) -> None:
        """The consumer group (and the stream), created from the start of the stream."""
        try:
            await self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, consumer: str, count: int, block_ms: int | None) -> list[Message]:
        """New messages for this consumer (first delivery)."""
        try:
            found = await self.client.xreadgroup(
                self.group, consumer, {self.stream: ">"}, count=count, block=block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):  # the stream was deleted under us: start again
                await self.ensure_group()
                return []
            raise
        messages = []
        for _, entries in found or []:
            for entry, fields in entries:
                messages.append(_message(entry, fields, 1))
        return messages

    async def reclaim(
        self, consumer: str, min_idle_ms: int, count: int, only: set[str] | None = None
    ) -> list[Message]:
        """Take over messages delivered at least ``min_idle_ms`` ago and never acknowledged.

        ``only``: just these entries (this consumer's own failed messages, due for a retry).
        """
        client = self.client
        if only is not None:
            ids = sorted(only, key=lambda e: tuple(int(p) for p in e.split("-")))[:count]
            pending = [
                p
                for i in ids
                for p in await client.xpending_range(self.stream, self.group, i, i, 1)
            ]
        else:
            pending = await client.xpending_range(
                self.stream, self.group, "-", "+", count, idle=min_idle_ms
            )
        if not pending:
            return []
        deliveries = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
        claimed = await client.xclaim(
            self.stream, self.group, consumer, min_idle_ms, list(deliveries)
        )
        out = []
        for entry, fields in claimed:
            if fields is None:
                continue
            key = _text(entry)
            out.append(_message(entry, fields, deliveries.get(key, 0) + 1))
        # entries deleted from the stream while pending: nothing to do but acknowledge them
        gone = set(deliveries) - {m.entry for m in out}
        if gone:
            await client.xack(self.stream, self.group, *gone)
        return out

    async def existing_results(self, tasks: list[str]) -> set[str]:
        """Which of these tasks already have a stored result."""
        if not tasks:
            return set()
        async with self.client.pipeline(transaction=False) as pipe:
            for task in tasks:
                pipe.exists(self.result_key(task))
            found = await pipe.execute()
        return {t for t, n in zip(tasks, found, strict=True) if n}

    async def complete(
        self,
        done: list[tuple[Message, bytes]],
        dead: list[tuple[Message, str, bytes]],
        skipped: list[Message] = (),  # type: ignore[assignment]
    ) -> int:
        """Store results, dead-letter failures, then acknowledge and delete: one transaction.

        ``done``: (message, result JSON); ``dead``: (message, reason, result JSON);
        ``skipped``: messages whose task has a result already. Returns how many results were
        dropped because one was stored first (a redelivered message finished twice).
        """
        ttl = self.config.result_ttl_s
        entries = [m.entry for m, _ in done] + [m.entry for m, _, _ in dead]
        entries += [m.entry for m in skipped]
        if not entries:
            return 0
        async with self.client.pipeline(transaction=True) as pipe:
            for message, result in done:
                pipe.set(self.result_key(message.task), result, nx=True, ex=ttl)
            for message, reason, result in dead:
                pipe.xadd(
                    self.dead,
                    {
                        "task": message.task,
                        "entry": message.entry,
                        "reason": reason[:2000],
                        "deliveries": message.deliveries,
                        "model": message.fields.get("model", b""),
                        "body": message.fields.get("body", b""),
                    },
                    maxlen=self.config.dead_letter_max_length,
                    approximate=True,
                )
                pipe.set(self.result_key(message.task), result, nx=True, ex=ttl)
            for message in [m for m, _ in done] + [m for m, _, _ in dead] + list(skipped):
                pipe.delete(self.task_key(message.task))
            pipe.xack(self.stream, self.group, *entries)
            pipe.xdel(self.stream, *entries)
            outcome = await pipe.execute()
        stored = outcome[: len(done)] + [outcome[len(done) + 2 * i + 1] for i in range(len(dead))]
        return sum(1 for s in stored if not s)

    async def attempt_failed(self, message: Message, reason: str) -> None:
        """Note a failed attempt on the task's record (the message stays pending)."""
        async with self.client.pipeline(transaction=False) as pipe:
            key = self.task_key(message.task)
            pipe.hset(key, mapping={"attempts": message.deliveries, "last_error": reason[:2000]})
            pipe.expire(key, self.config.result_ttl_s)
            await pipe.execute()

    async def clock_offset_ms(self) -> float:
        """The broker's clock minus this host's, in ms (entry ids carry the broker's time)."""
        before = time.time()
        seconds, micros = await self.client.time()
        after = time.time()
        return (seconds + micros / 1e6 - (before + after) / 2) * 1000.0

    async def stats(self) -> QueueStats:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.xlen(self.stream)
            pipe.xinfo_groups(self.stream)
            pipe.xrange(self.stream, "-", "+", count=1)
            pipe.time()
            pipe.xlen(self.dead)
            pipe.xinfo_consumers(self.stream, self.group)
            depth, groups, first, now, dead, consumers = await pipe.execute(raise_on_error=False)
        stats = QueueStats()
        if isinstance(depth, int):
            stats.depth = depth
        if isinstance(dead, int):
            stats.dead = dead
        for group in groups if isinstance(groups, list) else []:
            if _text(group["name"]) == self.group:
                stats.pending = int(group.get("pending") or 0)
                lag = group.get("lag")  # unknown after some restarts or deletions
                stats.lag = int(lag) if lag is not None else max(stats.depth - stats.pending, 0)
        if isinstance(first, list) and first and isinstance(now, tuple | list):
            now_ms = now[0] * 1000 + now[1] / 1000
            stats.oldest_age_s = max(0.0, (now_ms - entry_ms(_text(first[0][0]))) / 1000.0)
        if isinstance(consumers, list):
            stats.consumers = [
                {
                    "name": _text(c["name"]),
                    "pending": int(c["pending"]),
                    "idle_ms": int(c.get("idle", 0)),
                }
                for c in consumers
            ]
        return stats

    async def forget_consumers(self, idle_ms: int, keep: str) -> list[str]:
        """Drop consumers that hold nothing and were idle this long (replicas that are gone)."""
        gone = []
        for consumer in (await self.stats()).consumers:
            name = consumer["name"]
            if name != keep and consumer["pending"] == 0 and consumer["idle_ms"] >= idle_ms:
                await self.client.xgroup_delconsumer(self.stream, self.group, name)
                gone.append(name)
        return gone

    async def dead_letters(self, count: int = 100) -> list[dict[str, Any]]:
        """The newest entries of the dead-letter stream."""
        found = await self.client.xrevrange(self.dead, "+", "-", count=count)
        return [
            {"entry": _text(e), **{_text(k): _text(v) for k, v in fields.items()}}
            for e, fields in found
        ]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _message(entry: Any, fields: dict[Any, Any], deliveries: int) -> Message:
    return Message(
        _text(entry),
        {_text(k): v if isinstance(v, bytes) else str(v).encode() for k, v in fields.items()},
        deliveries,
    )
