"""The retraining loop: drift or falling live quality submits a training run as a Ray Job.

The job runs ``python -m framework task=train train.alias=challenger`` with the declared
overrides on the cluster the monitor runs on (Ray's Job Submission API, the project attached
as its runtime_env), so Ray schedules it, the dashboard and ``ray job list`` show it, and its
version enters as challenger only through the same gates as any other. One run at a time,
none while a challenger is rolling out, and a cooldown between runs; every start and end is
in the audit log with the job id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from framework.config.monitor import RetrainConfig
from framework.jobs import SubmittedJob, submit
from framework.monitoring.drift import DriftReport
from framework.store.registry import ModelRegistry

ACTOR = "retraining-loop"
logger = logging.getLogger("ray.serve")
ENDED = ("SUCCEEDED", "FAILED", "STOPPED")


def cluster_jobs_address() -> str:
    """The Job API of the cluster this process runs in (the monitor's own)."""
    import ray

    from framework.cluster import dashboard_of

    return dashboard_of(ray.get_runtime_context().gcs_address)


class RetrainLoop:
    """Submits, follows and times out retraining jobs."""

    def __init__(
        self,
        store: ModelRegistry,
        name: str,
        config: RetrainConfig,
        address: Callable[[], str] = cluster_jobs_address,
    ):
        self.store = store
        self.name = name
        self.config = config
        self.address = address
        self.job: SubmittedJob | None = None
        self.started = 0.0
        self.last_job_id: str | None = None

    @property
    def running(self) -> bool:
        return self.job is not None

    def tick(self, drift: DriftReport | None, accuracy: float | None, rolling_out: bool) -> None:
        """Follow a running job, or submit one when a trigger fired (blocking: run off-loop)."""
        if not self.config.enabled:
            return
        if self.job is not None:
            self._watch(self.job)
            return
        if rolling_out:
            return  # one candidate at a time
        if self.started and time.time() - self.started < self.config.cooldown_s:
            return
        reason = self.reason(drift, accuracy)
        if reason is not None:
            self._start(reason)

    def reason(self, drift: DriftReport | None, accuracy: float | None) -> str | None:
        """Why a run should start now, or None."""
        triggers = self.config.triggers
        if "drift" in triggers and drift is not None and drift.drift:
            return f"drift in {', '.join(drift.drifted)}"
        floor = self.config.min_accuracy
        if (
            "quality" in triggers
            and floor is not None
            and accuracy is not None
            and accuracy < floor
        ):
            return f"live accuracy {accuracy:.3f} < {floor}"
        return None

    def overrides(self) -> list[str]:
        task = ["task=train"]
        champion = self.store.aliases(self.name).get("champion")
        if self.config.mode == "update" and champion is not None:
            task = ["task=update", f"version={champion}"]
        return [
            *task,
            "train.alias=challenger",
            f"store.path={self.store.root}",
            f"store.model_name={self.name}",
            *self.config.overrides,
        ]

    def _watch(self, job: SubmittedJob) -> None:
        try:
            status = job.status()
        except Exception as exc:  # the Job API did not answer: ask again next tick
            logger.warning("retraining job %s: status unknown (%s)", job.job_id, exc)
            return
        if status not in ENDED and time.time() - self.started > self.config.timeout_s:
            job.stop()
            self.store.record(self.name, "retrain_timeout", ACTOR, job_id=job.job_id)
            return  # the next tick sees it STOPPED
        if status in ENDED:
            # audited before the loop says it is done: whoever sees `retraining: false`
            # finds the entry
            self.store.record(
                self.name,
                "retrain_done",
                ACTOR,
                job_id=job.job_id,
                status=status,
                exit_status=job.exit_status(),
            )
            job.cleanup()
            self.job = None

    def _start(self, reason: str) -> None:
        overrides = self.overrides()
        self.started = time.time()  # a failed submission also waits for the cooldown
        try:
            job = submit(
                self.address(),
                overrides,
                name=f"retrain-{self.name}",
                metadata={
                    "task": overrides[0].split("=")[1],
                    "model": self.name,
                    "reason": reason[:200],
                },
                outputs=str(Path(self.store.root) / self.name / "retrain"),
            )
        except Exception as exc:
            logger.warning("retraining job not submitted: %s", exc)
            self.store.record(self.name, "retrain_failed", ACTOR, reason=reason, error=str(exc))
            return
        self.job = job
        self.last_job_id = job.job_id
        self.store.record(
            self.name,
            "retrain_start",
            ACTOR,
            reason=reason,
            job_id=job.job_id,
            address=job.address,
            overrides=overrides,
        )

    # -- state across monitor restarts ---------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"job_id": self.job.job_id if self.job else None, "started": self.started}

    def restore(self, state: dict[str, Any]) -> None:
        """Follow again the job a previous monitor submitted (and keep its cooldown)."""
        self.started = float(state.get("started") or 0.0)
        job_id = state.get("job_id")
        if job_id and self.job is None:
            from ray.job_submission import JobSubmissionClient

            try:
                address = self.address()
                client = JobSubmissionClient(address)
                self.job = SubmittedJob(job_id, address, client)
            except Exception as exc:
                logger.warning("retraining job %s not followed again: %s", job_id, exc)
