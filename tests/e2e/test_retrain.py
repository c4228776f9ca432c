"""The retraining loop: drift past threshold starts a training run (a real CLI run), and its
version enters as challenger under the rollout policy."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from framework.config.app import AppConfig
from framework.config.monitor import MonitorConfig
from framework.data.source import snake_case
from framework.monitoring.protocol import RecordBatch
from framework.monitoring.service import Monitor
from framework.store.registry import ModelRegistry
from tests.e2e.conftest import run_cli

pytestmark = pytest.mark.e2e

TRAIN = [
    "model=logistic_regression",
    "data.noise.enabled=false",
    "ray.include_dashboard=false",
    "train.latency_runs=5",
]


def test_drift_starts_a_training_run_whose_version_enters_as_challenger(tmp_path: Path) -> None:
    first = run_cli(tmp_path, *TRAIN)
    assert first.returncode == 0, first.stdout + first.stderr
    store = ModelRegistry(tmp_path / "model_registry")
    config = MonitorConfig.model_validate(
        {
            "retrain": {"enabled": True, "overrides": TRAIN, "cooldown_s": 3600},
            "window": {"rows": 300, "min_rows": 100},
        }
    )
    args = AppConfig(
        model_name="breast_cancer",
        store_path=str(store.root),
        keys_base=str(tmp_path),
        monitor=config,
    )
    monitor = Monitor(args)
    assert monitor.rollout.routing().champion == 1

    data = load_breast_cancer()
    names = [snake_case(n) for n in data.feature_names]
    columns = json.loads((store.root / "breast_cancer/versions/1/manifest.json").read_text())[
        "signature"
    ]["numeric"]
    rows = data.data[:, [names.index(c) for c in columns]].astype(np.float32)[:300].copy()
    for shifted in ("mean_radius", "worst_texture"):
        j = columns.index(shifted)
        rows[:, j] += 1.5 * data.data[:, names.index(shifted)].std()

    async def feed() -> None:  # the monitor's own loop tests the window
        await monitor.record(RecordBatch(numeric=rows))
        for _ in range(300):
            if monitor.drift is not None:
                return
            await asyncio.sleep(0.1)

    asyncio.run(feed())
    assert monitor.drift is not None
    assert sorted(monitor.drift.drifted) == ["mean_radius", "worst_texture"]

    def tick() -> None:
        rolling_out = monitor.rollout.state.challenger is not None
        monitor.retrain.tick(monitor.drift, None, rolling_out)

    tick()
    assert monitor.retrain.process is not None
    (start,) = [e for e in store.audit("breast_cancer") if e["action"] == "retrain_start"]
    assert start["reason"] == "drift in mean_radius, worst_texture"
    assert start["actor"] == "retraining-loop" and "train.alias=challenger" in start["overrides"]
    deadline = time.monotonic() + 300
    while monitor.retrain.process is not None:
        assert time.monotonic() < deadline, "the retraining run did not finish"
        time.sleep(1)
        tick()
    (done,) = [e for e in store.audit("breast_cancer") if e["action"] == "retrain_done"]
    assert done["exit_status"] == 0, Path(done["log"]).read_text()[-3000:]
    assert store.aliases("breast_cancer") == {"champion": 1, "challenger": 2}

    monitor._follow_aliases()
    routing = monitor.rollout.routing()
    assert (routing.challenger, routing.weight) == (2, config.rollout.steps[0])
    tick()  # one candidate at a time: no second run during its rollout
    assert monitor.retrain.process is None
    assert [e["action"] for e in store.audit("breast_cancer")][-5:] == [
        "retrain_start",
        "register",
        "alias",
        "retrain_done",
        "rollout_start",
    ]
    assert store.verify_audit("breast_cancer") == []
