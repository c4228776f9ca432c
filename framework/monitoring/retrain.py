"""The retraining loop: drift or falling live quality starts a training run.

The run is ``python -m framework task=train train.alias=challenger`` with the declared
overrides, so its version enters as challenger only through the same gates as any other.
One run at a time, none while a challenger is rolling out, and a cooldown between runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from framework.config.monitor import RetrainConfig
from framework.monitoring.drift import DriftReport
from framework.store.registry import ModelRegistry

ACTOR = "retraining-loop"


class RetrainLoop:
    """Starts, watches and times out retraining runs; every start and end is audited."""

    def __init__(self, store: ModelRegistry, name: str, workdir: str, config: RetrainConfig):
        self.store = store
        self.name = name
        self.workdir = workdir
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.log: Path | None = None

    @property
    def running(self) -> bool:
        return self.process is not None

    def tick(
        self,
        drift: DriftReport | None,
        accuracy: float | None,
        rolling_out: bool,
    ) -> None:
        """Watch a running run, or start one when a trigger fired."""
        if not self.config.enabled:
            return
        if self.process is not None:
            self._watch(self.process)
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

    def _watch(self, process: subprocess.Popen[bytes]) -> None:
        code = process.poll()
        if code is None and time.time() - self.started > self.config.timeout_s:
            process.kill()
            code = process.wait()
        if code is not None:
            self.process = None
            self.store.record(self.name, "retrain_done", ACTOR, exit_status=code, log=str(self.log))

    def _start(self, reason: str) -> None:
        overrides = [
            "task=train",
            "train.alias=challenger",
            f"store.path={self.store.root}",
            f"store.model_name={self.name}",
            *self.config.overrides,
        ]
        log_dir = Path(self.store.root) / self.name / "retrain"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log = log_dir / f"{time.strftime('%Y%m%d-%H%M%S')}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "framework", *overrides],
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.started = time.time()
        self.store.record(self.name, "retrain_start", ACTOR, reason=reason, overrides=overrides)
