"""``QueueConsumer``: a Ray Serve deployment that answers the task queue.

Each replica is one consumer of the stream's group. It takes up to ``batch_messages``
messages at a time (its own failed ones when their retry is due, those other consumers left
unacknowledged past ``visibility_timeout_s``, then new ones), checks each body with the
served schema, predicts with one ONNX Runtime call per version, and stores every result
with the acknowledgement in one transaction. The same parts as the model server do the
work (``served``): the champion/challenger routing, the out-of-distribution check, the
recorder and so the monitor's windows and rollout.

A message that fails (its body breaks the rules, or the version fails to predict) stays
pending and is tried again after ``retry_delay_s``; a message delivered ``max_deliveries``
times without success goes to the dead-letter stream with its last reason, and its task
answers ``failed``. A broker that goes away is waited for; the messages in flight stay in
the group's pending list and are answered once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from redis.exceptions import RedisError

from framework.config.app import AppConfig
from framework.monitoring import metrics as m
from framework.serving.codec import Answer, decode_records, encode_predictions
from framework.serving.handlers import screen_ood
from framework.serving.names import BACKLOG
from framework.serving.problems import HttpError, RequestInvalid
from framework.serving.queue import Message, QueueStats, TaskQueue, entry_ms
from framework.serving.router import LoadedVersion, rows_of
from framework.serving.rules import Feeds
from framework.serving.served import load_served

logger = logging.getLogger("ray.serve")
#: The route name the consumers' predictions are counted under.
ROUTE = "async_task"


@dataclass
class _Job:
    message: Message
    feeds: Feeds
    rows: int
    version: LoadedVersion
    in_distribution: np.ndarray | None
    out_of_distribution: np.ndarray | None


class Failure(Exception):
    """A message that cannot be answered this time; ``detail``: the problems by field."""

    def __init__(self, reason: str, detail: list[dict[str, Any]] | None = None, version=None):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.version = version


def consumer_name() -> str:
    """This replica's name in the consumer group (unique across restarts)."""
    try:
        from ray import serve

        tag = serve.get_replica_context().replica_tag
    except Exception:
        tag = "consumer"
    return f"{tag}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class QueueConsumer:
    """One consumer replica of ``serve.async``."""

    def __init__(self, settings: AppConfig | dict[str, Any], monitor: Any = None):
        if not isinstance(settings, AppConfig):
            settings = AppConfig.model_validate(settings)
        self.settings = settings
        self.config = settings.serve.queue
        served = load_served(settings, monitor, batching=False)
        self.router, self.rules, self.recorder = served.router, served.rules, served.recorder
        self.model = self.router.model_name
        app = settings.serve.app_name or settings.model_name
        self.queue = TaskQueue(self.config, app, settings.store_path)
        self.name = consumer_name()
        self.tags = {"model": self.model}
        self.metrics = {name: spec.create() for name, spec in m.recorded_by("consumer").items()}
        self.stats = QueueStats()
        self.retry_due: dict[str, float] = {}  # own failed messages: entry -> when to retry
        self.last_errors: dict[str, str] = {}
        self.offset_ms = 0.0  # the broker's clock minus ours
        self.connected = False
        self.stopping = False
        self._outage_since: float | None = None
        self._next = {"claim": 0.0, "stats": 0.0, "clock": 0.0, "forget": 0.0}
        self._task: asyncio.Task[None] | None = None
        with contextlib.suppress(RuntimeError):  # no running loop: the health check starts it
            self._start()
        logger.info(
            "consumer %s of %s on %s (group %s)",
            self.name,
            self.queue.stream,
            self.queue.where,
            self.queue.group,
        )

    def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    # -- Ray Serve hooks -------------------------------------------------------------------
    async def check_health(self) -> None:
        """The loop runs (it is restarted if it ended); a broker outage is not a failure."""
        if self._task is None or self._task.done():
            if self._task is not None and not self._task.cancelled() and self._task.exception():
                logger.error("the consumer loop ended", exc_info=self._task.exception())
            self._start()

    def record_autoscaling_stats(self) -> dict[str, float]:
        """The backlog the autoscaling policy scales on (the same for every consumer)."""
        return {BACKLOG: float(self.stats.depth)}

    async def __call__(self, *args: Any) -> dict[str, Any]:
        """The consumer's state (it takes no requests: the stream is its input)."""
        return {
            "consumer": self.name,
            "connected": self.connected,
            "stream": self.queue.stream,
            "depth": self.stats.depth,
            "pending": self.stats.pending,
        }

    async def __del__(self) -> None:
        self.stopping = True
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=5.0)
            except Exception:
                self._task.cancel()
        await self.queue.close()

    # -- the loop ------------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = 0.2
        while not self.stopping:
            try:
                if not self.connected:
                    await self._connect()
                await self._housekeeping()
                batch = await self._next_batch()
                if batch:
                    await self._process(batch)
                backoff = 0.2
            except (RedisError, OSError) as exc:
                self._lost(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception:
                logger.exception("a consumer step failed")
                await asyncio.sleep(0.5)

    async def _connect(self) -> None:
        await self.queue.ensure_group()
        # listed in the group from the start (Redis adds a consumer only when served first)
        await self.queue.client.xgroup_createconsumer(
            self.queue.stream, self.queue.group, self.name
        )
        # what this consumer held before a broker outage: take it up again now
        held = await self.queue.client.xpending_range(
            self.queue.stream, self.queue.group, "-", "+", 10_000, consumername=self.name
        )
        now = time.monotonic()
        for pending in held:
            entry = pending["message_id"]
            self.retry_due.setdefault(entry.decode() if isinstance(entry, bytes) else entry, now)
        self.connected = True
        self.metrics[m.ASYNC_BROKER_UP.name].set(1, self.tags)
        if self._outage_since is not None:
            logger.warning(
                "consumer %s: the broker at %s is back after %.1f s",
                self.name,
                self.queue.where,
                time.monotonic() - self._outage_since,
            )
            self._outage_since = None

    def _lost(self, exc: Exception) -> None:
        self.connected = False
        self.metrics[m.ASYNC_BROKER_UP.name].set(0, self.tags)
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            logger.warning(
                "consumer %s: the broker at %s is not available (%s); retrying",
                self.name,
                self.queue.where,
                exc,
            )

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        cfg = self.config
        if now >= self._next["clock"]:
            self._next["clock"] = now + 30.0
            self.offset_ms = await self.queue.clock_offset_ms()
        if now >= self._next["stats"]:
            self._next["stats"] = now + 1.0
            self.stats = stats = await self.queue.stats()
            tags, metrics = self.tags, self.metrics
            metrics[m.ASYNC_DEPTH.name].set(stats.depth, tags)
            metrics[m.ASYNC_PENDING.name].set(stats.pending, tags)
            metrics[m.ASYNC_OLDEST.name].set(stats.oldest_age_s, tags)
            metrics[m.ASYNC_DEAD_ENTRIES.name].set(stats.dead, tags)
        if now >= self._next["forget"]:
            self._next["forget"] = now + 60.0
            idle_ms = int(max(10 * cfg.visibility_timeout_s, 300.0) * 1000)
            gone = await self.queue.forget_consumers(idle_ms, keep=self.name)
            if gone:
                logger.info("dropped %d idle consumer(s) that hold nothing: %s", len(gone), gone)

    async def _next_batch(self) -> list[Message]:
        cfg, queue = self.config, self.queue
        now = time.monotonic()
        batch: list[Message] = []
        due = {e for e, t in self.retry_due.items() if t <= now}
        if due:
            batch += await queue.reclaim(self.name, 0, cfg.batch_messages, only=due)
            for entry in due:
                self.retry_due.pop(entry, None)
        if now >= self._next["claim"] and len(batch) < cfg.batch_messages:
            self._next["claim"] = now + min(cfg.visibility_timeout_s / 4, 2.0)
            batch += await queue.reclaim(
                self.name, int(cfg.visibility_timeout_s * 1000), cfg.batch_messages - len(batch)
            )
        room = cfg.batch_messages - len(batch)
        if room > 0:
            block: int | None = None
            if not batch:
                block = cfg.block_ms
                if self.retry_due:
                    wait = min(self.retry_due.values()) - time.monotonic()
                    block = max(1, min(block, int(wait * 1000)))
            batch += await queue.read(self.name, room, block)
        return batch

    # -- one batch -------------------------------------------------------------------------
    async def _process(self, batch: list[Message]) -> None:
        started = time.perf_counter()
        cfg, tags, metrics = self.config, self.tags, self.metrics
        redelivered = [msg for msg in batch if msg.deliveries > 1]
        if redelivered:
            metrics[m.ASYNC_REDELIVERIES.name].inc(len(redelivered), tags)
        finished = await self.queue.existing_results([msg.task for msg in redelivered])
        skipped = [msg for msg in batch if msg.task in finished]
        done: list[tuple[Message, bytes]] = []
        dead: list[tuple[Message, str, bytes]] = []
        retry: list[tuple[Message, str]] = []

        def failed(message: Message, failure: Failure) -> None:
            if failure.version is not None:  # the version itself failed: counted against it
                self.recorder.note(ROUTE, failure.version, 500, started, True)
            if message.deliveries >= cfg.max_deliveries:
                dead.append((message, failure.reason, self._failed_result(message, failure)))
            else:
                retry.append((message, failure.reason))

        jobs: list[_Job] = []
        for message in batch:
            if message.task in finished:
                continue
            if message.deliveries > cfg.max_deliveries:
                reason = self.last_errors.pop(message.entry, None) or (
                    f"delivered {message.deliveries - 1} times and never acknowledged: its "
                    "consumer stopped, or took longer than serve.async.visibility_timeout_s"
                )
                failure = Failure(reason)
                dead.append((message, reason, self._failed_result(message, failure)))
                continue
            try:
                jobs.append(self._decode(message))
            except Failure as failure:
                failed(message, failure)
        by_version: dict[int, list[_Job]] = defaultdict(list)
        for job in jobs:
            by_version[job.version.number].append(job)
        for group in by_version.values():
            for chunk in _chunks(group, cfg.max_batch_rows):
                try:
                    answers = self._predict(chunk)
                except Failure as failure:
                    for job in chunk:
                        failed(job.message, failure)
                    continue
                for job, answer in zip(chunk, answers, strict=True):
                    self.recorder.note(ROUTE, answer.version, 200, started, False)
                    done.append((job.message, self._done_result(job, answer)))
        dropped = await self.queue.complete(done, dead, skipped)
        for message, reason in retry:
            self.last_errors[message.entry] = reason
            self.retry_due[message.entry] = time.monotonic() + cfg.retry_delay_s
            await self.queue.attempt_failed(message, reason)
        for message, _, _ in dead:
            self.last_errors.pop(message.entry, None)
        # outcomes and latency
        now_ms = time.time() * 1000.0 + self.offset_ms
        latency = metrics[m.ASYNC_LATENCY.name]
        for message, _ in done:
            self.last_errors.pop(message.entry, None)
            latency.observe(max(0.0, (now_ms - entry_ms(message.entry)) / 1000.0), tags)
        for outcome, n in (
            ("done", len(done) - dropped),
            ("duplicate", dropped + len(skipped)),
            ("dead_lettered", len(dead)),
            ("retried", len(retry)),
        ):
            if n:
                metrics[m.ASYNC_TASKS.name].inc(n, {**tags, "outcome": outcome})
        if dead:
            metrics[m.ASYNC_DEAD_LETTERED.name].inc(len(dead), tags)
            for message, reason, _ in dead:
                logger.warning(
                    "task %s dead-lettered after %d deliveries: %s",
                    message.task,
                    message.deliveries,
                    reason,
                )

    def _decode(self, message: Message) -> _Job:
        model = message.text("model")
        if model is not None and model != self.model:
            raise Failure(f"model {model[:64]!r} is not served here; this is {self.model!r}")
        body = message.fields.get("body")
        if body is None:
            raise Failure("the message has no body field")
        try:
            feeds, rows = decode_records(self.rules, body, self.settings.serve.max_rows_per_request)
        except HttpError as exc:
            raise Failure(exc.message) from None
        except RequestInvalid as exc:
            raise Failure(
                exc.summary(self.router.model_name, self.router.first.number), exc.detail()
            ) from None
        sticky = message.text("sticky")
        version = self.router.choose(sticky or None, message.task)
        try:
            score, flagged = screen_ood(self.settings.serve.ood, version, feeds, self.recorder)
        except RequestInvalid as invalid:
            raise Failure(
                invalid.summary(self.router.model_name, self.router.first.number),
                invalid.detail(),
            ) from None
        return _Job(message, feeds, rows, version, score, flagged)

    def _predict(self, chunk: list[_Job]) -> list[Answer]:
        """One ONNX Runtime call for a chunk of jobs of one version."""
        version = chunk[0].version
        feeds = (
            chunk[0].feeds
            if len(chunk) == 1
            else {k: np.concatenate([j.feeds[k] for j in chunk]) for k in chunk[0].feeds}
        )
        self.router.call_rows.append(rows_of(feeds))
        try:
            result = version.predictor.run(feeds)
        except Exception as exc:
            logger.error("prediction by v%s failed", version.number, exc_info=exc)
            raise Failure(
                f"the prediction failed: v{version.number}: {type(exc).__name__}",
                version=version.number,
            ) from None
        answers, start = [], 0
        for job in chunk:
            stop = start + job.rows
            scores = None if result.scores is None else result.scores[start:stop]
            labels = result.labels[start:stop]
            answers.append(
                Answer(
                    version.number,
                    job.message.task,
                    labels,
                    scores,
                    job.in_distribution,
                    job.out_of_distribution,
                )
            )
            self.recorder.predicted(version.number, job.message.task, job.feeds, labels)
            start = stop
        return answers

    def _done_result(self, job: _Job, answer: Answer) -> bytes:
        body = encode_predictions(
            self.model, answer, self.router.first.signature, job.message.text("request_id")
        )
        return _record(
            job.message,
            self.offset_ms,
            status="done",
            model=self.model,
            version=answer.version,
            result=orjson.Fragment(body),
        )

    def _failed_result(self, message: Message, failure: Failure) -> bytes:
        extra: dict[str, Any] = {"error": failure.reason, "dead_lettered": True}
        if failure.detail:
            extra["detail"] = failure.detail
        return _record(message, self.offset_ms, status="failed", model=self.model, **extra)


def _record(message: Message, offset_ms: float, **fields: Any) -> bytes:
    finished_ms = time.time() * 1000.0 + offset_ms
    queued_ms = entry_ms(message.entry)
    return orjson.dumps(
        {
            "task": message.task,
            **fields,
            "deliveries": message.deliveries,
            "enqueued_at": queued_ms / 1000.0,
            "finished_at": round(finished_ms / 1000.0, 3),
            "latency_ms": round(max(0.0, finished_ms - queued_ms), 1),
        }
    )


def _chunks(jobs: list[_Job], max_rows: int) -> list[list[_Job]]:
    chunks: list[list[_Job]] = [[]]
    rows = 0
    for job in jobs:
        if chunks[-1] and rows + job.rows > max_rows:
            chunks.append([])
            rows = 0
        chunks[-1].append(job)
        rows += job.rows
    return chunks
