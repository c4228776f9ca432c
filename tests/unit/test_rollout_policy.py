"""The rollout policy's decisions, and promote/rollback as audited alias moves."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.config.monitor import RolloutConfig
from framework.errors import RegistryError
from framework.monitoring.rollout import VersionStats, decide, promote, rollback
from framework.monitoring.windows import live_quality
from framework.store.registry import ModelRegistry

POLICY = RolloutConfig(steps=[0.1, 0.5, 1.0], min_requests_per_step=100)


def _stats(
    requests: int = 200,
    errors: int = 0,
    p99: float = 5.0,
    labels: int = 50,
    quality: float | None = 0.95,
) -> VersionStats:
    return VersionStats(requests, errors, [p99] * 100, labels, quality)


def test_holds_until_requests_and_labels_then_steps_then_promotes() -> None:
    champion = _stats(requests=2000)
    assert decide(POLICY, 0, champion, _stats(requests=40), 30, True).action == "hold"
    held = decide(POLICY, 0, champion, _stats(labels=3), 30, True)
    assert held.action == "hold" and "labels" in held.reason
    step = decide(POLICY, 0, champion, _stats(), 30, True)
    assert (step.action, step.weight_from, step.weight_to) == ("step", 0.1, 0.5)
    # the next share is 1.0: the champion would get no traffic to compare, so that is promotion
    assert decide(POLICY, 1, champion, _stats(), 30, True).action == "promote"
    manual = RolloutConfig(steps=[0.1, 0.5], auto_promote=False, min_requests_per_step=100)
    assert decide(manual, 1, champion, _stats(), 30, True).action == "hold"


@pytest.mark.parametrize(
    ("challenger", "why"),
    [
        (_stats(errors=10), "error rate"),
        (_stats(p99=80.0), "p99 latency"),
        (_stats(quality=0.80), "live accuracy"),
    ],
)
def test_a_broken_margin_rolls_back(challenger: VersionStats, why: str) -> None:
    decision = decide(POLICY, 0, _stats(requests=2000), challenger, 30, True)
    assert decision.action == "rollback" and why in decision.reason
    keep = RolloutConfig(steps=[0.1, 1.0], auto_rollback=False)
    assert decide(keep, 0, _stats(requests=2000), challenger, 30, True).action == "hold"


def test_small_samples_never_break_a_margin() -> None:
    few = _stats(requests=10, errors=5, p99=500.0, labels=5, quality=0.1)
    assert decide(POLICY, 0, _stats(), few, 30, True).action == "hold"


def test_regression_margin_is_relative_mae() -> None:
    worse = decide(POLICY, 0, _stats(quality=10.0), _stats(quality=11.0), 30, False)
    assert worse.action == "rollback" and "MAE" in worse.reason
    assert decide(POLICY, 0, _stats(quality=10.0), _stats(quality=10.2), 30, False).action == "step"


def test_live_quality_says_when_labels_are_too_few() -> None:
    assert live_quality([("a", "a")] * 5, ["a", "b"], 10) == {
        "status": "insufficient_labels",
        "labels": 5,
        "min_labels": 10,
    }
    quality = live_quality([("a", "a")] * 8 + [("a", "b")] * 2, ["a", "b"], 10)
    assert quality["accuracy"] == 0.8 and quality["confusion_matrix"] == [[8, 0], [2, 0]]
    regression = live_quality([(1.0, 2.0), (3.0, 3.0)], [], 2)
    assert regression["mae"] == 0.5 and regression["rmse"] == pytest.approx(0.5**0.5)


def test_promote_and_rollback_move_aliases_atomically(tmp_path: Path) -> None:
    store = ModelRegistry(tmp_path)
    for alias in ("champion", "challenger"):
        store.register("m", {"model.onnx": b"x"}, {}, alias=alias)
    assert rollback(store, "m", actor="ops") == {"challenger": None}
    with pytest.raises(RegistryError, match="no challenger"):
        promote(store, "m")
    promote(store, "m", version=2, actor="ops", reason="canary passed")
    assert store.aliases("m") == {"champion": 2, "previous": 1}
    rollback(store, "m", actor="ops")
    assert store.aliases("m") == {"champion": 1}
    with pytest.raises(RegistryError, match="nothing to roll back"):
        rollback(store, "m")
    actions = [(e["action"], e.get("alias"), e.get("from"), e.get("to")) for e in store.audit("m")]
    assert ("promote", "champion", 1, 2) in actions and ("rollback", "champion", 2, 1) in actions
    assert store.verify_audit("m") == []


def test_retraining_loop_updates_the_champion_when_told_to(tmp_path: Path) -> None:
    from framework.config.monitor import RetrainConfig
    from framework.monitoring.retrain import RetrainLoop

    store = ModelRegistry(tmp_path)
    loop = RetrainLoop(store, "m", RetrainConfig(enabled=True, mode="update"), lambda: "x")
    assert loop.overrides()[0] == "task=train"  # no champion yet: a first version is trained
    store.register("m", {"model.onnx": b"1"}, {"task": "classification"}, alias="champion")
    store.register("m", {"model.onnx": b"2"}, {"task": "classification"}, alias="champion")
    assert loop.overrides()[:3] == ["task=update", "version=2", "train.alias=challenger"]
    plain = RetrainLoop(store, "m", RetrainConfig(enabled=True), lambda: "x")
    assert plain.overrides()[:2] == ["task=train", "train.alias=challenger"]
