"""The serving monitor: one replica beside the model servers, off the request path.

Model replicas hand it their records every ``monitor.flush_interval_s`` (rows, predictions,
latencies, statuses) and ask it every ``monitor.routing_poll_s`` which versions to serve at
which weights. It keeps the live windows (drift against the champion's reference, quality per
version from labels sent to ``/v1/feedback``), exports them as Prometheus metrics through Ray,
reads the registry aliases (so ``task=promote`` from a shell reaches the running application),
runs the rollout policy, and starts a retraining run when one is declared.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import subprocess
import sys
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

import numpy as np
from ray.util.metrics import Gauge

from framework.config.monitor import MonitorConfig
from framework.errors import FrameworkError
from framework.export.onnx import Signature
from framework.monitoring.drift import DriftDetector, DriftReport
from framework.monitoring.rollout import VersionStats, decide, promote, rollback
from framework.store.registry import ModelRegistry
from framework.training.pipeline import MISSING_CATEGORY

logger = logging.getLogger("ray.serve")

#: Rollout states without a challenger.
NO_CHALLENGER = {"challenger": None, "weight": 0.0, "step": None}


def live_quality(
    pairs: list[tuple[Any, Any]], classes: list[str], min_labels: int
) -> dict[str, Any]:
    """Accuracy, macro F1 and the confusion matrix (or MAE/RMSE) of (prediction, truth) pairs."""
    n = len(pairs)
    if n < min_labels:
        return {"status": "insufficient_labels", "labels": n, "min_labels": min_labels}
    predicted = [p for p, _ in pairs]
    truth = [t for _, t in pairs]
    if classes:
        from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

        return {
            "status": "ok",
            "labels": n,
            "accuracy": float(accuracy_score(truth, predicted)),
            "f1_macro": float(
                f1_score(truth, predicted, labels=classes, average="macro", zero_division=0)
            ),
            "classes": classes,
            "confusion_matrix": confusion_matrix(truth, predicted, labels=classes).tolist(),
        }
    errors = np.asarray(predicted, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    return {
        "status": "ok",
        "labels": n,
        "mae": float(np.abs(errors).mean()),
        "rmse": float(np.sqrt((errors**2).mean())),
    }


class _Step:
    """Per-version counts since the current rollout step began."""

    def __init__(self) -> None:
        self.started = time.time()
        self.requests: dict[int, int] = {}
        self.errors: dict[int, int] = {}
        self.latencies: dict[int, deque[float]] = {}
        self.pairs: dict[int, list[tuple[Any, Any]]] = {}

    def stats(self, version: int, classification: bool) -> VersionStats:
        pairs = self.pairs.get(version, [])
        quality = None
        if pairs:
            p = np.asarray([a for a, _ in pairs], dtype=object)
            t = np.asarray([b for _, b in pairs], dtype=object)
            if classification:
                quality = float((p == t).mean())
            else:
                quality = float(np.abs(p.astype(float) - t.astype(float)).mean())
        return VersionStats(
            requests=self.requests.get(version, 0),
            errors=self.errors.get(version, 0),
            latencies_ms=list(self.latencies.get(version, ())),
            labels=len(pairs),
            quality=quality,
        )


class Monitor:
    """Live windows, drift, quality, rollout decisions and metrics for one served model."""

    def __init__(self, args: dict[str, Any]):
        from framework.serving.app import AppArgs

        settings = AppArgs.model_validate(args)
        self.config: MonitorConfig = settings.monitor
        self.store = ModelRegistry(settings.store_path)
        self.name = settings.model_name
        self.workdir = settings.keys_base
        self.served_alias = settings.serve.alias
        self.aliases: dict[str, int] = {}
        # Replicas reload when the generation changes; starting from the clock keeps a
        # restarted monitor from repeating a number a replica already holds.
        self.generation = int(time.time() * 1000)
        self.rollout: dict[str, Any] = dict(NO_CHALLENGER)
        self.step = _Step()
        self.detector: DriftDetector | None = None
        self.detector_version: int | None = None
        self.classes: list[str] = []
        self.classification = True
        window = self.config.window
        self.numeric_names: list[str] = []
        self.categorical_names: list[str] = []
        self.rows: dict[str, deque[Any]] = {}
        self.predicted: deque[Any] = deque(maxlen=window.rows)
        self.new_rows = 0
        self.drift: DriftReport | None = None
        self.drift_checked = 0.0
        self.tracked: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self.pending: OrderedDict[str, tuple[Any, float]] = OrderedDict()
        self.quality: dict[int, deque[tuple[Any, Any]]] = {}
        self.unmatched_labels = 0
        self.last_request = 0.0
        self.last_label = 0.0
        self.started = time.time()
        self.traffic: dict[int, int] = {}
        self.shadow: dict[str, int] = {"agree": 0, "disagree": 0}
        self.retrain_process: subprocess.Popen[bytes] | None = None
        self.retrain_started = 0.0
        self.retrain_log: Path | None = None
        self._task: asyncio.Task[None] | None = None
        self.shares_set: set[tuple[str, str]] = set()
        self.labels_joined = 0
        self._quality_exported = -1
        self._quality_cache: dict[int, dict[str, Any]] = {}
        self._metrics()
        self._read_aliases(initial=True)

    # -- metrics -------------------------------------------------------------------------
    def _metrics(self) -> None:
        self.g_drift_score = Gauge(
            "framework_feature_drift_psi",
            description="Population stability index of a feature's live window vs reference.",
            tag_keys=("model", "feature"),
        )
        self.g_drift_p = Gauge(
            "framework_feature_drift_p_value",
            description="Corrected p-value of a feature's drift test.",
            tag_keys=("model", "feature"),
        )
        self.g_drifted = Gauge(
            "framework_feature_drifted",
            description="1 when a feature's live window drifted from the reference, else 0.",
            tag_keys=("model", "feature"),
        )
        self.g_window_rows = Gauge(
            "framework_drift_window_rows",
            description="Rows in the live drift window.",
            tag_keys=("model",),
        )
        self.g_quality = Gauge(
            "framework_live_quality",
            description="Live quality of a version on labelled requests (NaN: too few labels).",
            tag_keys=("model", "version", "metric"),
        )
        self.g_labels = Gauge(
            "framework_live_labels",
            description="Labels in a version's live quality window.",
            tag_keys=("model", "version"),
        )
        self.g_confusion = Gauge(
            "framework_live_confusion",
            description="Live confusion matrix cell: rows of true class predicted as class.",
            tag_keys=("model", "version", "actual", "predicted"),
        )
        self.g_share = Gauge(
            "framework_traffic_share_ratio",
            description="Declared traffic share of a version.",
            tag_keys=("model", "version", "alias"),
        )
        self.g_since_request = Gauge(
            "framework_request_feed_age_seconds",
            description="Seconds since a replica last reported a request (a stopped feed).",
            tag_keys=("model",),
        )
        self.g_since_label = Gauge(
            "framework_label_feed_age_seconds",
            description="Seconds since the last label arrived on /v1/feedback.",
            tag_keys=("model",),
        )
        self.g_step = Gauge(
            "framework_rollout_step",
            description="Index of the challenger's rollout step (-1: no challenger).",
            tag_keys=("model",),
        )
        self.tags = {"model": self.name}

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
                    self._read_aliases()
                if now - self.drift_checked >= self.config.window.check_every_s:
                    window = self._drift_window()
                    if window is not None and self.detector is not None:
                        # the copy was taken on the loop; the tests run in a thread
                        self.drift = await asyncio.to_thread(self.detector.check, *window)
                self._decide()
                self._retrain_tick()
                self._export()  # every tick: Ray drops a gauge not set within its interval
            except Exception:  # the monitor never stops serving; the next tick tries again
                logger.exception("monitor tick failed")
            await asyncio.sleep(min(1.0, self.config.registry_poll_s))

    # -- registry and routing ------------------------------------------------------------
    def _read_aliases(self, initial: bool = False) -> None:
        aliases = self.store.aliases(self.name)
        if aliases == self.aliases and not initial:
            return
        before = self.aliases
        self.aliases = aliases
        champion = self._champion()
        if champion is not None and champion != self.detector_version:
            self._load_reference(champion)
        challenger = aliases.get("challenger")
        if challenger is not None and challenger != champion:
            if self.rollout.get("challenger") != challenger:
                steps = self.config.rollout.steps
                self.rollout = {"challenger": challenger, "weight": steps[0], "step": 0}
                self.step = _Step()
                if not initial or before.get("challenger") != challenger:
                    self.store.record(
                        self.name,
                        "rollout_start",
                        "rollout-policy",
                        version=challenger,
                        champion=champion,
                        **{"from": 0.0, "to": steps[0]},
                    )
        elif self.rollout.get("challenger") is not None:
            self.rollout = dict(NO_CHALLENGER)
        if before.get("champion") != champion:
            self.step = _Step()
        self.generation += 1
        logger.info("routing for %s: %s", self.name, self.current_routing())

    def _champion(self) -> int | None:
        alias = self.served_alias
        if alias.isdigit():
            return int(alias)
        return self.aliases.get(alias)

    def _load_reference(self, version_number: int) -> None:
        from framework.monitoring.job import detector_for

        version = self.store.get(self.name, version_number)
        signature = Signature.from_dict(version.manifest["signature"])
        self.classes = [str(c) for c in signature.classes]
        self.classification = signature.task == "classification"
        self.numeric_names = list(signature.numeric)
        self.categorical_names = list(signature.categorical)
        self.rows = {n: deque(maxlen=self.config.window.rows) for n in self.numeric_names}
        self.rows.update({n: deque(maxlen=self.config.window.rows) for n in self.categorical_names})
        self.predicted.clear()
        try:
            self.detector = detector_for(version, self.config.drift)
        except Exception as exc:
            logger.warning("no drift check for %s v%s: %s", self.name, version_number, exc)
            self.detector = None
        self.detector_version = version_number

    async def routing(self) -> dict[str, Any]:
        """Which versions replicas serve: champion, challenger at a weight, shadow."""
        self._ensure_loop()
        return self.current_routing()

    def current_routing(self) -> dict[str, Any]:
        shadow = self.aliases.get(self.config.rollout.shadow_alias)
        champion = self._champion()
        return {
            "generation": self.generation,
            "champion": champion,
            "challenger": self.rollout.get("challenger"),
            "weight": float(self.rollout.get("weight") or 0.0),
            "shadow": shadow if shadow not in (champion, self.rollout.get("challenger")) else None,
        }

    # -- records from replicas -----------------------------------------------------------
    async def record(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Take one replica's records (requests, rows, predictions by id, shadow results);
        answer with the current routing, which saves the replica a call."""
        self._ensure_loop()
        now = time.time()
        versions = batch.get("versions")
        if versions is not None and len(versions):
            self.last_request = now
            errors, latencies = batch["errors"], batch["latency_ms"]
            step = self.step
            for version in np.unique(versions).tolist():
                mine = versions == version
                n = int(mine.sum())
                self.traffic[version] = self.traffic.get(version, 0) + n
                step.requests[version] = step.requests.get(version, 0) + n
                step.errors[version] = step.errors.get(version, 0) + int(errors[mine].sum())
                window = step.latencies.setdefault(version, deque(maxlen=5000))
                window.extend(latencies[mine].tolist())
        numeric = batch.get("numeric")
        if (
            numeric is not None
            and self.numeric_names
            and numeric.shape[1] == len(self.numeric_names)
        ):
            for j, name in enumerate(self.numeric_names):
                self.rows[name].extend(numeric[:, j].tolist())
            self.new_rows += len(numeric)
        categorical = batch.get("categorical")
        if (
            categorical is not None
            and self.categorical_names
            and categorical.shape[1] == len(self.categorical_names)
        ):
            for j, name in enumerate(self.categorical_names):
                self.rows[name].extend(categorical[:, j].tolist())
            if numeric is None:
                self.new_rows += len(categorical)
        sampled = batch.get("sampled_predictions")
        if sampled is not None:
            self.predicted.extend(sampled.tolist())
        ids = batch.get("ids")
        if ids:
            pairs = zip(
                batch["prediction_versions"].tolist(),
                batch["prediction_labels"].tolist(),
                strict=True,
            )
            self.tracked.update(zip(ids, pairs, strict=True))
            if self.pending:
                for rid in ids:
                    waiting = self.pending.pop(rid, None)
                    if waiting is not None:
                        self._join(rid, waiting[0])
            limit = self.config.window.tracked_predictions
            while len(self.tracked) > limit:
                self.tracked.popitem(last=False)
        for outcome, count in batch.get("shadow", {}).items():
            self.shadow[outcome] = self.shadow.get(outcome, 0) + count
        return self.current_routing()

    async def feedback(self, items: list[tuple[str, Any]]) -> dict[str, int]:
        """Ground-truth labels for earlier prediction ids."""
        self._ensure_loop()
        now = time.time()
        matched = pending = 0
        for rid, label in items:
            self.last_label = now
            if rid in self.tracked:
                self._join(rid, label)
                matched += 1
            else:  # the prediction may still be on its way from a replica
                self.pending[rid] = (label, now)
                pending += 1
        ttl = self.config.window.pending_label_s
        while self.pending:
            rid, (_, since) = next(iter(self.pending.items()))
            if now - since <= ttl:
                break
            self.pending.popitem(last=False)
            self.unmatched_labels += 1
        return {"accepted": len(items), "matched": matched, "pending": pending}

    def _join(self, rid: str, truth: Any) -> None:
        version, predicted = self.tracked[rid]
        if self.classification:
            truth = str(truth)
        pair = (predicted, truth)
        self.labels_joined += 1
        window = self.quality.setdefault(version, deque(maxlen=self.config.window.labels))
        window.append(pair)
        self.step.pairs.setdefault(version, []).append(pair)

    # -- drift ---------------------------------------------------------------------------
    @property
    def window_rows(self) -> int:
        return min((len(v) for v in self.rows.values()), default=0)

    def _drift_window(self) -> tuple[dict[str, np.ndarray], np.ndarray | None] | None:
        """Arrays of the live window (taken on the event loop, where records arrive), or None
        when there is nothing new or too little to test."""
        self.drift_checked = time.time()
        if self.detector is None or self.new_rows == 0:
            return None
        if self.window_rows < self.config.window.min_rows:
            return None
        self.new_rows = 0
        current: dict[str, np.ndarray] = {}
        for name in self.numeric_names:
            current[name] = np.asarray(self.rows[name], dtype=np.float64)
        for name in self.categorical_names:
            values = np.asarray(self.rows[name], dtype=object)
            values[values == MISSING_CATEGORY] = None
            current[name] = values
        prediction = None
        if self.predicted:
            prediction = np.asarray(self.predicted, dtype=object)
            if not self.classification:
                prediction = prediction.astype(np.float64)
        return current, prediction

    # -- rollout policy ------------------------------------------------------------------
    def _decide(self) -> None:
        challenger = self.rollout.get("challenger")
        champion = self._champion()
        policy = self.config.rollout
        if challenger is None or champion is None or not policy.enabled:
            return
        step = int(self.rollout["step"])
        decision = decide(
            policy,
            step,
            self.step.stats(champion, self.classification),
            self.step.stats(challenger, self.classification),
            self.config.window.min_labels,
            self.classification,
        )
        if decision.action == "hold":
            self.rollout["reason"] = decision.reason
            return
        actor = "rollout-policy"
        if decision.action == "step":
            self.store.record(
                self.name,
                "rollout_step",
                actor,
                version=challenger,
                champion=champion,
                reason=decision.reason,
                **{"from": decision.weight_from, "to": decision.weight_to},
            )
            self.rollout = {
                "challenger": challenger,
                "weight": decision.weight_to,
                "step": step + 1,
            }
            self.step = _Step()
            self.generation += 1
        elif decision.action == "promote":
            promote(self.store, self.name, challenger, actor, reason=decision.reason)
            self._read_aliases()
        elif decision.action == "rollback":
            rollback(self.store, self.name, None, actor, reason=decision.reason)
            self._read_aliases()
        logger.info(
            "rollout of %s v%s: %s (%s)", self.name, challenger, decision.action, decision.reason
        )

    async def promote(self, actor: str, version: int | None, reason: str) -> dict[str, Any]:
        return self._move(promote, actor, version, reason)

    async def rollback(self, actor: str, version: int | None, reason: str) -> dict[str, Any]:
        return self._move(rollback, actor, version, reason)

    def _move(self, action: Any, actor: str, version: int | None, reason: str) -> dict[str, Any]:
        try:
            changes = action(self.store, self.name, version, actor, reason)
        except FrameworkError as exc:  # answered as 409 with the reason, not raised over Ray
            return {"error": exc.message, "hint": exc.hint}
        self._read_aliases()
        return {"changes": changes, "aliases": self.aliases}

    # -- retraining ----------------------------------------------------------------------
    def _retrain_tick(self) -> None:
        retrain = self.config.retrain
        if not retrain.enabled:
            return
        process = self.retrain_process
        if process is not None:
            code = process.poll()
            if code is None and time.time() - self.retrain_started > retrain.timeout_s:
                process.kill()
                code = process.wait()
            if code is not None:
                self.retrain_process = None
                self.store.record(
                    self.name,
                    "retrain_done",
                    "retraining-loop",
                    exit_status=code,
                    log=str(self.retrain_log),
                )
            return
        if self.rollout.get("challenger") is not None:
            return  # one candidate at a time
        if time.time() - self.retrain_started < retrain.cooldown_s and self.retrain_started:
            return
        reason = self._retrain_reason()
        if reason is None:
            return
        overrides = [
            "task=train",
            "train.alias=challenger",
            f"store.path={self.store.root}",
            f"store.model_name={self.name}",
            *retrain.overrides,
        ]
        log_dir = Path(self.store.root) / self.name / "retrain"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.retrain_log = log_dir / f"{time.strftime('%Y%m%d-%H%M%S')}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        with self.retrain_log.open("wb") as log:
            self.retrain_process = subprocess.Popen(
                [sys.executable, "-m", "framework", *overrides],
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.retrain_started = time.time()
        self.store.record(
            self.name, "retrain_start", "retraining-loop", reason=reason, overrides=overrides
        )

    def _retrain_reason(self) -> str | None:
        retrain = self.config.retrain
        if "drift" in retrain.triggers and self.drift is not None and self.drift.drift:
            return f"drift in {', '.join(self.drift.drifted)}"
        champion = self._champion()
        if "quality" in retrain.triggers and retrain.min_accuracy is not None and champion:
            window = self.quality.get(champion, deque())
            if len(window) >= self.config.window.min_labels:
                accuracy = float(np.mean([p == t for p, t in window]))
                if accuracy < retrain.min_accuracy:
                    return f"live accuracy {accuracy:.3f} < {retrain.min_accuracy}"
        return None

    # -- reporting -----------------------------------------------------------------------
    def _quality(self) -> dict[int, dict[str, Any]]:
        return {
            version: live_quality(
                list(window),
                self.classes if self.classification else [],
                self.config.window.min_labels,
            )
            for version, window in self.quality.items()
        }

    def _export(self) -> None:
        tags = self.tags
        now = time.time()
        self.g_since_request.set(now - (self.last_request or self.started), tags)
        self.g_since_label.set(now - (self.last_label or self.started), tags)
        self.g_step.set(-1 if self.rollout.get("step") is None else self.rollout["step"], tags)
        self.g_window_rows.set(self.window_rows, tags)
        champion = self._champion()
        challenger = self.rollout.get("challenger")
        weight = float(self.rollout.get("weight") or 0.0)
        shares: dict[tuple[str, str], float] = {}
        if champion is not None:
            shares[(str(champion), "champion")] = 1.0 - weight
        if challenger is not None:
            shares[(str(challenger), "challenger")] = weight
        for gone in set(self.shares_set) - set(shares):  # versions no longer served: 0
            shares[gone] = 0.0
        for (version, alias), share in shares.items():
            self.g_share.set(share, {**tags, "version": version, "alias": alias})
        self.shares_set = {k for k, v in shares.items() if v > 0}
        # Ray exports a gauge only while it is set within the report interval: set every tick.
        if self.drift is not None:
            for f in self.drift.features:
                feature = {**tags, "feature": f.name}
                self.g_drift_score.set(_finite(f.psi), feature)
                self.g_drift_p.set(_finite(f.p_adjusted), feature)
                self.g_drifted.set(1.0 if f.drifted else 0.0, feature)
        if self._quality_exported != self.labels_joined:  # recomputed only on new labels
            self._quality_exported = self.labels_joined
            self._quality_cache = self._quality()
        for version, quality in self._quality_cache.items():
            vtags = {**tags, "version": str(version)}
            self.g_labels.set(quality["labels"], vtags)
            names = ("accuracy", "f1_macro") if self.classification else ("mae", "rmse")
            for metric in names:
                self.g_quality.set(quality.get(metric, math.nan), {**vtags, "metric": metric})
            matrix = quality.get("confusion_matrix")
            if matrix is not None:
                for i, actual in enumerate(self.classes):
                    for j, predicted in enumerate(self.classes):
                        self.g_confusion.set(
                            matrix[i][j], {**vtags, "actual": actual, "predicted": predicted}
                        )

    async def status(self) -> dict[str, Any]:
        """Everything the monitor knows, for ``GET /v1/admin/monitor``."""
        self._ensure_loop()
        from framework.monitoring.report import finite

        champion = self._champion()
        challenger = self.rollout.get("challenger")
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
        return finite(
            {
                "model": self.name,
                "aliases": self.aliases,
                "routing": self.current_routing(),
                "rollout": {
                    **self.rollout,
                    "steps": self.config.rollout.steps,
                    "step_stats": steps,
                },
                "quality": {str(k): v for k, v in self._quality().items()},
                "drift": None if self.drift is None else self.drift.to_dict(),
                "window_rows": self.window_rows,
                "traffic": {str(k): v for k, v in self.traffic.items()},
                "shadow": self.shadow,
                "labels": {
                    "pending": len(self.pending),
                    "unmatched": self.unmatched_labels,
                    "tracked_predictions": len(self.tracked),
                },
                "seconds_since_last_request": now - self.last_request
                if self.last_request
                else None,
                "seconds_since_last_label": now - self.last_label if self.last_label else None,
                "retraining": self.retrain_process is not None,
            }
        )


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.nan
