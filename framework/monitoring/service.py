"""The serving monitor: one replica beside the model servers, off the request path.

Model replicas hand it a ``RecordBatch`` every ``monitor.flush_interval_s`` and get the
current ``Routing`` back. It keeps the live windows (drift against the champion's reference,
quality per version from ``/v1/feedback`` labels), exports them as Prometheus metrics through
Ray, follows the registry aliases and runs the rollout policy (``RolloutController``), and
starts a retraining run when one is declared (``RetrainLoop``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from framework.config.app import AppConfig
from framework.export.signature import Signature
from framework.monitoring import metrics as m
from framework.monitoring import state as saved_state
from framework.monitoring.drift import DriftDetector, DriftReport
from framework.monitoring.protocol import (
    AliasMove,
    FeedbackResult,
    Label,
    RecordBatch,
    Routing,
)
from framework.monitoring.retrain import RetrainLoop
from framework.monitoring.rollout import RolloutController, promote, rollback
from framework.monitoring.windows import DriftWindow, LabelBook, StepCounts
from framework.store.registry import ModelRegistry

logger = logging.getLogger("ray.serve")


class Monitor:
    """Live windows, drift, quality, rollout decisions and metrics for one served model."""

    def __init__(self, settings: AppConfig):
        self.config = settings.monitor
        self.name = settings.model_name
        store = ModelRegistry(settings.store_path, settings.security.audit_key_file)
        self.store = store
        self.rollout = RolloutController(store, self.name, settings.serve.alias, self.config)
        self.retrain = RetrainLoop(store, self.name, self.config.retrain)
        self.labels = LabelBook(self.config.window)
        self.step = StepCounts()
        self.signature: Signature | None = None
        self.window: DriftWindow | None = None
        self.detector: DriftDetector | None = None
        self.detector_version: int | None = None
        self.drift: DriftReport | None = None
        self.drift_checked = 0.0
        self.started = time.time()
        self.last_request = 0.0
        self.last_label = 0.0
        self.traffic: dict[int, int] = {}
        self.shadow: dict[str, int] = {"agree": 0, "disagree": 0}
        self._task: asyncio.Task[None] | None = None
        self._shares: set[tuple[str, str]] = set()
        self._quality_at = -1
        self._quality: dict[int, dict[str, Any]] = {}
        self._dropped_exported: dict[str, int] = {}
        self._refusals_exported: dict[int, int] = {}
        self.verified_at = time.time()
        self.tags = {"model": self.name}
        self.metrics = {name: spec.create() for name, spec in m.recorded_by("monitor").items()}
        self.state_file = saved_state.state_path(store.root, self.name, settings.serve.alias)
        self.changes = 0
        self._saved_at = (0, 0.0)
        saved = saved_state.read(self.state_file) if self.config.persist_state else None
        if saved is not None:  # before the aliases: the same challenger keeps its step
            self.rollout.state = saved_state.restore_rollout(saved["rollout"])
        self._follow_aliases(initial=True)
        if saved is not None:
            self._restore(saved)

    # -- state across restarts -----------------------------------------------------------
    def _restore(self, saved: dict[str, Any]) -> None:
        try:
            same_pair = (saved["champion"], saved["rollout"]["challenger"]) == (
                self.rollout.champion,
                self.rollout.state.challenger,
            )
            if same_pair:
                self.step = saved_state.restore_step(saved["step"])
            if self.window is not None and saved.get("window_version") == self.detector_version:
                saved_state.restore_window(self.window, saved["window"])
                if self.window.rows:
                    self.window.new_rows = max(self.window.new_rows, 1)  # check drift again
            saved_state.restore_labels(self.labels, saved["labels"])
            self.traffic = {int(k): int(v) for k, v in saved["traffic"].items()}
            self.shadow.update(saved["shadow"])
            self.last_request = float(saved["last_request"])
            self.last_label = float(saved["last_label"])
            self.retrain.restore(saved["retrain"])
            logger.info("monitor state of %s restored from %s", self.name, self.state_file)
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("monitor state in %s not restored: %s", self.state_file, exc)

    def _snapshot(self) -> dict[str, Any]:
        return {
            "version": saved_state.VERSION,
            "saved_at": time.time(),
            "champion": self.rollout.champion,
            "rollout": saved_state.rollout_state(self.rollout.state),
            "step": saved_state.step_state(self.step),
            "window_version": self.detector_version,
            "window": saved_state.window_state(self.window) if self.window else None,
            "labels": saved_state.labels_state(self.labels),
            "traffic": self.traffic,
            "shadow": self.shadow,
            "last_request": self.last_request,
            "last_label": self.last_label,
            "retrain": self.retrain.state(),
        }

    async def _save(self, now: float) -> None:
        changes, at = self._saved_at
        if not self.config.persist_state or self.changes == changes:
            return
        if now - at < self.config.state_every_s:
            return
        self._saved_at = (self.changes, now)
        document = self._snapshot()  # taken on the loop, written off it
        await asyncio.to_thread(saved_state.write, self.state_file, document)

    # -- background loop -----------------------------------------------------------------
    def _ensure_loop(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        last_poll = 0.0
        while True:
            try:
                now = time.time()
                if now - last_poll >= self.config.registry_poll_s:
                    last_poll = now
                    self._follow_aliases()
                if now - self.verified_at >= self.config.verify_every_s:
                    self.verified_at = now
                    if await asyncio.to_thread(self.rollout.reverify):
                        self.changes += 1
                await self._check_drift(now)
                self._judge()
                self.labels.expire(now)
                if self.config.retrain.enabled:  # the Job API is HTTP: off the loop
                    await asyncio.to_thread(
                        self.retrain.tick,
                        self.drift,
                        self._champion_accuracy(),
                        self.rollout.state.challenger is not None,
                    )
                self._export()  # every tick: Ray drops a gauge not set within its interval
                await self._save(now)
            except Exception:  # the monitor never stops serving; the next tick tries again
                logger.exception("monitor tick failed")
            await asyncio.sleep(min(1.0, self.config.registry_poll_s))

    def _follow_aliases(self, initial: bool = False) -> None:
        changed, versions_changed = self.rollout.refresh(initial)
        if not changed:
            return
        self.changes += 1
        champion = self.rollout.champion
        if champion is not None and champion != self.detector_version:
            self._load_reference(champion)
        if versions_changed:  # a new pair to compare starts from zero
            self.step = StepCounts()

    def _load_reference(self, number: int) -> None:
        from framework.monitoring.job import detector_for

        version = self.store.get(self.name, number)
        self.signature = Signature.from_dict(version.manifest["signature"])
        self.window = DriftWindow(self.signature, self.config.window.rows)
        try:
            self.detector = detector_for(version, self.config.drift)
        except Exception as exc:
            logger.warning("no drift check for %s v%s: %s", self.name, number, exc)
            self.detector = None
        self.detector_version = number

    async def _check_drift(self, now: float) -> None:
        if now - self.drift_checked < self.config.window.check_every_s:
            return
        self.drift_checked = now
        if self.window is None or self.detector is None:
            return
        snapshot = self.window.snapshot(self.config.window.min_rows)  # taken on the loop
        if snapshot is not None:  # the tests run in a thread
            self.drift = await asyncio.to_thread(self.detector.check, *snapshot)

    def _judge(self) -> None:
        rollout = self.rollout
        champion, challenger = rollout.champion, rollout.state.challenger
        if champion is None or challenger is None:
            return
        before = rollout.state.step
        classification = self.classification
        decision = rollout.judge(
            self.step.stats(champion, classification),
            self.step.stats(challenger, classification),
            classification,
        )
        if decision is not None and (decision.action != "hold" or rollout.state.step != before):
            self.step = StepCounts()
            self.changes += 1

    @property
    def classification(self) -> bool:
        return self.signature is None or self.signature.classification

    def _champion_accuracy(self) -> float | None:
        champion = self.rollout.champion
        quality = self._live().get(champion) if champion is not None else None
        return quality.get("accuracy") if quality else None

    # -- calls from replicas ---------------------------------------------------------------
    async def routing(self) -> Routing:
        """Which versions replicas serve: champion, challenger at a weight, shadow."""
        self._ensure_loop()
        return self.rollout.routing()

    async def record(self, batch: RecordBatch) -> Routing:
        """Take one replica's records; answer with the routing (it saves the replica a call)."""
        self._ensure_loop()
        self.changes += 1
        if len(batch.versions):
            self.last_request = time.time()
            for version, n in zip(*_counts(batch.versions), strict=True):
                self.traffic[version] = self.traffic.get(version, 0) + n
            self.step.add(batch)
        if self.window is not None:
            self.window.add(batch)
        self.labels.track(batch, self.step)
        for outcome, count in batch.shadow.items():
            self.shadow[outcome] = self.shadow.get(outcome, 0) + count
        return self.rollout.routing()

    async def feedback(self, labels: list[Label]) -> FeedbackResult:
        """Ground-truth labels for earlier prediction ids (the first label per id wins)."""
        self._ensure_loop()
        self.changes += 1
        self.last_label = time.time()
        return self.labels.add(labels, self.step, self.classification)

    async def promote(self, actor: str, version: int | None, reason: str) -> AliasMove:
        return self._moved(self.rollout.move(promote, actor, version, reason))

    async def rollback(self, actor: str, version: int | None, reason: str) -> AliasMove:
        return self._moved(self.rollout.move(rollback, actor, version, reason))

    def _moved(self, move: AliasMove) -> AliasMove:
        if move.error is None:
            self._follow_aliases(initial=True)
        return move

    # -- reporting -----------------------------------------------------------------------
    def _live(self) -> dict[int, dict[str, Any]]:
        if self._quality_at != self.labels.joined:  # recomputed only on new labels
            self._quality_at = self.labels.joined
            classes = list(self.signature.classes) if self.signature and self.classification else []
            self._quality = self.labels.live(classes)
        return self._quality

    def _export(self) -> None:
        g, tags, now = self.metrics, self.tags, time.time()
        g[m.REQUEST_FEED_AGE.name].set(now - (self.last_request or self.started), tags)
        g[m.LABEL_FEED_AGE.name].set(now - (self.last_label or self.started), tags)
        step = self.rollout.state.step
        g[m.ROLLOUT_STEP.name].set(-1 if step is None else step, tags)
        g[m.WINDOW_ROWS.name].set(self.window.rows if self.window else 0, tags)
        routing = self.rollout.routing()
        shares: dict[tuple[str, str], float] = {}
        if routing.champion is not None:
            shares[(str(routing.champion), "champion")] = 1.0 - routing.weight
        if routing.challenger is not None:
            shares[(str(routing.challenger), "challenger")] = routing.weight
        for gone in self._shares - set(shares):  # versions no longer served: 0
            shares[gone] = 0.0
        for (version, alias), share in shares.items():
            g[m.TRAFFIC_SHARE.name].set(share, {**tags, "version": version, "alias": alias})
        self._shares = {k for k, v in shares.items() if v > 0}
        if self.drift is not None:
            for f in self.drift.features:
                feature = {**tags, "feature": f.name}
                g[m.DRIFT_PSI.name].set(_finite(f.psi), feature)
                g[m.DRIFT_P.name].set(_finite(f.p_adjusted), feature)
                g[m.DRIFTED.name].set(1.0 if f.drifted else 0.0, feature)
        g[m.REGISTRY_VERIFIED.name].set(0.0 if self.rollout.problems else 1.0, tags)
        for version, total in self.rollout.refusals.items():
            new = total - self._refusals_exported.get(version, 0)
            if new:
                g[m.VERIFICATION_FAILURES.name].inc(new, {**tags, "version": str(version)})
                self._refusals_exported[version] = total
        for reason, total in self.labels.dropped.items():
            new = total - self._dropped_exported.get(reason, 0)
            if new:
                self.metrics[m.LABELS_DROPPED.name].inc(new, {**tags, "reason": reason})
                self._dropped_exported[reason] = total
        classes = list(self.signature.classes) if self.signature else []
        for version, quality in self._live().items():
            vtags = {**tags, "version": str(version)}
            g[m.LIVE_LABELS.name].set(quality["labels"], vtags)
            names = ("accuracy", "f1_macro") if self.classification else ("mae", "rmse")
            for metric in names:
                g[m.LIVE_QUALITY.name].set(
                    quality.get(metric, math.nan), {**vtags, "metric": metric}
                )
            matrix = quality.get("confusion_matrix")
            for i, actual in enumerate(classes if matrix else []):
                for j, predicted in enumerate(classes):
                    cell = {**vtags, "actual": actual, "predicted": predicted}
                    g[m.LIVE_CONFUSION.name].set(matrix[i][j], cell)

    async def status(self) -> dict[str, Any]:
        """Everything the monitor knows, for ``GET /v1/admin/monitor``."""
        self._ensure_loop()
        from framework.monitoring.report import finite

        rollout = self.rollout
        champion, challenger = rollout.champion, rollout.state.challenger
        steps: dict[str, Any] = {}
        if challenger is not None and champion is not None:
            for label, version in (("champion", champion), ("challenger", challenger)):
                s = self.step.stats(version, self.classification)
                steps[label] = {
                    "version": version,
                    "requests": s.requests,
                    "errors": s.errors,
                    "p99_ms": s.p99_ms,
                    "labels": s.labels,
                    "quality": s.quality,
                }
        now = time.time()
        book = self.labels
        return finite(
            {
                "model": self.name,
                "aliases": rollout.aliases,
                "routing": rollout.routing().as_dict(),
                "verification": {
                    "ok": not rollout.problems,
                    "problems": list(rollout.problems),
                    "refused": {str(k): v for k, v in rollout.refused.items()},
                    "verified_at": self.verified_at,
                },
                "rollout": {
                    **rollout.state.as_dict(),
                    "steps": self.config.rollout.steps,
                    "step_stats": steps,
                },
                "quality": {str(k): v for k, v in self._live().items()},
                "drift": None if self.drift is None else self.drift.to_dict(),
                "window_rows": self.window.rows if self.window else 0,
                "traffic": {str(k): v for k, v in self.traffic.items()},
                "shadow": self.shadow,
                "labels": {
                    "pending": len(book.pending),
                    "tracked_predictions": book.tracked_rows,
                    "dropped": dict(book.dropped),
                },
                "seconds_since_last_request": now - self.last_request
                if self.last_request
                else None,
                "seconds_since_last_label": now - self.last_label if self.last_label else None,
                "retraining": self.retrain.running,
                "retrain_job": self.retrain.last_job_id,
            }
        )


def _counts(values: Any) -> tuple[list[int], list[int]]:
    import numpy as np

    unique, counts = np.unique(values, return_counts=True)
    return unique.tolist(), counts.tolist()


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.nan
