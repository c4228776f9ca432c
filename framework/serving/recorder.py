"""A replica's metrics and its hand-off to the monitor, both off the request path.

The request path only appends to in-memory lists (``note``, ``predicted``). Every
``monitor.flush_interval_s`` a background task turns them into Ray metrics (counters and
real histograms) and one typed ``RecordBatch`` for the monitor, which answers with the
routing; the router follows it. Only a version's own failures count as its errors.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from framework.config.monitor import MonitorConfig
from framework.export.signature import CATEGORICAL_INPUT, MISSING_CATEGORY, NUMERIC_INPUT
from framework.monitoring import metrics as m
from framework.monitoring.protocol import RecordBatch, Routing
from framework.serving.router import LoadedVersion, VersionRouter
from framework.serving.rules import Feeds

logger = logging.getLogger("ray.serve")


@dataclass
class _Pending:
    """What the request path noted since the last flush."""

    requests: list[tuple[str, int | None, int, float, bool]] = field(default_factory=list)
    predictions: list[tuple[int, str, Feeds, np.ndarray]] = field(default_factory=list)


def target_bins(
    version: LoadedVersion, profile: dict[str, Any] | None
) -> tuple[np.ndarray, list[str]]:
    """Inner quantile edges of the training target and bin names (regression; else empty)."""
    if version.signature.classification or not profile:
        return np.array([]), []
    targets = [
        c for c, s in version.manifest.get("schema", {}).items() if s.get("role") == "target"
    ]
    edges = profile.get("features", {}).get(targets[0], {}).get("bin_edges") if targets else None
    if not edges or len(edges) < 3:
        return np.array([]), []
    inner = np.asarray(edges[1:-1], dtype=float)
    bounds = ["-inf", *(f"{e:.4g}" for e in inner), "inf"]
    return inner, [f"{a}..{b}" for a, b in itertools.pairwise(bounds)]


class Recorder:
    """Counts what the replica did and hands it to the monitor in bulk."""

    def __init__(
        self,
        model: str,
        router: VersionRouter,
        monitor: Any,
        config: MonitorConfig,
        profile: dict[str, Any] | None,
    ):
        self.router = router
        self.monitor = monitor  # the Monitor deployment's handle (None: monitoring off)
        self.config = config
        self.tags = {"model": model}
        self.pending = _Pending()
        self.metrics = {name: spec.create() for name, spec in m.recorded_by("replica").items()}
        self.value_edges, self.value_bins = target_bins(router.first, profile)
        self._task: asyncio.Task[None] | None = None

    # -- the request path: appends only ---------------------------------------------------
    def note(
        self, route: str, version: int | None, status: int, started: float, failed: bool
    ) -> None:
        """One answered request; ``failed``: the version itself failed (a server error)."""
        self.pending.requests.append(
            (route, version, status, time.perf_counter() - started, failed)
        )
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def predicted(self, version: int, rid: str, feeds: Feeds, labels: np.ndarray) -> None:
        self.pending.predictions.append((version, rid, feeds, labels))

    def enqueued(self, outcome: str) -> None:
        """One predict_async request: accepted by the broker, or refused."""
        self.metrics[m.ASYNC_ENQUEUED.name].inc(1, {**self.tags, "outcome": outcome})

    def out_of_distribution(self, version: int, rows: int) -> None:
        """Rows the version's detector flagged (counted whether answered or refused)."""
        self.metrics[m.OUT_OF_DISTRIBUTION.name].inc(rows, {**self.tags, "version": str(version)})

    # -- off the request path -------------------------------------------------------------------
    async def _run(self) -> None:
        poll, flush = self.config.routing_poll_s, self.config.flush_interval_s
        last_poll = last_flush = 0.0
        while True:
            now = time.monotonic()
            try:
                if now - last_flush >= flush:
                    last_flush = now
                    routing = await self.flush()
                    if routing is not None:  # the monitor answered records with the routing
                        last_poll = now
                        await self.router.follow(routing)
                if self.monitor is not None and now - last_poll >= poll:
                    last_poll = now
                    await self.router.follow(await self.monitor.routing.remote())
            except Exception:  # a monitor that is away never stops predictions
                logger.exception("background monitoring step failed")
            await asyncio.sleep(min(poll, flush) / 2)

    async def flush(self) -> Routing | None:
        """Export the interval's metrics; send its records to the monitor (None: not sent).

        The counting runs in a thread: Ray's histogram takes one call per observation, and a
        second's worth of them on the event loop stalled the requests waiting behind it.
        """
        pending, self.pending = self.pending, _Pending()
        calls, self.router.call_rows = self.router.call_rows, []
        batch = await asyncio.to_thread(self._export, pending, calls)
        if self.monitor is None or batch.empty():
            return None
        try:
            return await self.monitor.record.remote(batch)  # type: ignore[no-any-return]
        except Exception as exc:
            self.metrics[m.RECORDS_DROPPED.name].inc(len(pending.requests), self.tags)
            logger.warning("the monitor did not take %d records: %s", len(pending.requests), exc)
            return None

    def _export(self, pending: _Pending, calls: list[int]) -> RecordBatch:
        """Metrics of the interval, and the record batch for the monitor."""
        tags, metrics = self.tags, self.metrics
        latency = metrics[m.LATENCY.name]
        counts: dict[tuple[str, str, str], int] = {}
        series: dict[tuple[str, str], dict[str, str]] = {}
        for route, version, status, seconds, _ in pending.requests:
            label = "" if version is None else str(version)
            key = (route, label, str(status))
            counts[key] = counts.get(key, 0) + 1
            where = series.get((route, label))
            if where is None:
                where = series[(route, label)] = {**tags, "route": route, "version": label}
            latency.observe(seconds, where)
        for (route, version, status), n in counts.items():
            metrics[m.REQUESTS.name].inc(
                n, {**tags, "route": route, "version": version, "status": status}
            )
        for rows in calls:
            metrics[m.BATCH_ROWS.name].observe(rows, tags)
        predicted = [r for r in pending.requests if r[1] is not None]
        batch = RecordBatch(
            versions=np.asarray([r[1] for r in predicted], dtype=np.int64),
            server_errors=np.asarray([r[4] for r in predicted], dtype=bool),
            latency_ms=np.asarray([r[3] * 1000.0 for r in predicted], dtype=np.float64),
        )
        if pending.predictions:
            self._summarize(pending.predictions, batch)
        return batch

    def _summarize(
        self, predictions: list[tuple[int, str, Feeds, np.ndarray]], batch: RecordBatch
    ) -> None:
        """Predictions by request, imputed values, class counts, the newest rows for the
        drift window and shadow agreement."""
        tags, metrics = self.tags, self.metrics
        signature = self.router.first.signature
        batch.predictions = [(rid, version, labels) for version, rid, _, labels in predictions]
        feeds = {k: np.concatenate([f[k] for _, _, f, _ in predictions]) for k in predictions[0][2]}
        labels = np.concatenate([np.asarray(lab) for *_, lab in predictions])
        for key, names, missing in (
            (NUMERIC_INPUT, signature.numeric, lambda a: np.isnan(a.astype(np.float64))),
            (CATEGORICAL_INPUT, signature.categorical, lambda a: a == MISSING_CATEGORY),
        ):
            if key not in feeds:
                continue
            for name, n in zip(names, missing(feeds[key]).sum(axis=0).tolist(), strict=True):
                if n:
                    metrics[m.IMPUTED.name].inc(n, {**tags, "feature": name})
        self._sample(predictions, feeds, labels, batch)
        for version in {v for v, *_ in predictions}:
            mine = [lab for v, _, _, lab in predictions if v == version]
            vtags = {**tags, "version": str(version)}
            if signature.classification:
                counts = Counter(np.concatenate(mine).tolist())
                for cls, n in counts.items():
                    metrics[m.PREDICTIONS.name].inc(n, {**vtags, "class": str(cls)})
            elif len(self.value_edges):
                index = np.searchsorted(self.value_edges, np.concatenate(mine).astype(float))
                for b, n in enumerate(np.bincount(index, minlength=len(self.value_bins))):
                    if n:
                        metrics[m.PREDICTION_BINS.name].inc(
                            int(n), {**vtags, "bin": self.value_bins[b]}
                        )
        shadow = self.router.shadow
        if shadow is not None:
            answer = shadow.predictor.run(feeds).labels
            if signature.classification:
                agree = int((np.asarray(answer).astype(str) == labels.astype(str)).sum())
            else:
                agree = int(np.isclose(answer.astype(float), labels.astype(float), rtol=0.05).sum())
            batch.shadow = {"agree": agree, "disagree": len(labels) - agree}
            for outcome, n in batch.shadow.items():
                if n:
                    metrics[m.SHADOW.name].inc(
                        n, {**tags, "version": str(shadow.number), "outcome": outcome}
                    )

    def _sample(
        self,
        predictions: list[tuple[int, str, Feeds, np.ndarray]],
        feeds: Feeds,
        labels: np.ndarray,
        batch: RecordBatch,
    ) -> None:
        """The newest sampled rows, at most as many as the drift window holds."""
        sizes = np.array([len(lab) for *_, lab in predictions])
        rate = self.config.sample_rate
        sampled = np.random.random(len(sizes)) < rate if rate < 1.0 else np.ones(len(sizes), bool)
        keep = np.flatnonzero(np.repeat(sampled, sizes))[-self.config.window.rows :]
        if NUMERIC_INPUT in feeds:
            batch.numeric = feeds[NUMERIC_INPUT][keep]
        if CATEGORICAL_INPUT in feeds:
            batch.categorical = feeds[CATEGORICAL_INPUT][keep]
        batch.sampled_predictions = labels[keep]
