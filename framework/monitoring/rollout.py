"""Promotion, rollback and the rollout policy that ramps a challenger up or rolls it back.

``promote`` and ``rollback`` move registry aliases in one atomic, audited write; the CLI
(``task=promote``/``task=rollback``), the admin HTTP routes and the policy all call them. The
running application follows the aliases: its monitor reads them and the replicas swap ONNX
sessions in place, so no request is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from framework.config.monitor import RolloutConfig
from framework.errors import RegistryError
from framework.store.registry import ModelRegistry


def promote(
    store: ModelRegistry,
    name: str,
    version: int | None = None,
    actor: str | None = None,
    reason: str = "manual promotion",
) -> dict[str, int | None]:
    """Make the challenger (or ``version``) champion; the old champion becomes ``previous``."""
    aliases = store.aliases(name)
    target = version if version is not None else aliases.get("challenger")
    if target is None:
        raise RegistryError(
            f"model {name!r} has no challenger to promote",
            hint=f"aliases: {aliases or 'none'}; or name one with version=N",
        )
    champion = aliases.get("champion")
    if target == champion:
        raise RegistryError(f"{name} v{target} is already the champion")
    changes: dict[str, int | None] = {"champion": target}
    if champion is not None:
        changes["previous"] = champion
    if aliases.get("challenger") == target:
        changes["challenger"] = None
    store.move_aliases(name, changes, actor, "promote", reason)
    return changes


def rollback(
    store: ModelRegistry,
    name: str,
    version: int | None = None,
    actor: str | None = None,
    reason: str = "manual rollback",
) -> dict[str, int | None]:
    """Drop the challenger; with none, restore the previous champion (or make ``version`` it)."""
    aliases = store.aliases(name)
    changes: dict[str, int | None]
    if version is not None:
        if aliases.get("champion") == version:
            raise RegistryError(f"{name} v{version} is already the champion")
        changes = {"champion": version, "previous": aliases.get("champion")}
    elif "challenger" in aliases:
        changes = {"challenger": None}
    elif "previous" in aliases:
        changes = {"champion": aliases["previous"], "previous": None}
    else:
        raise RegistryError(
            f"model {name!r} has nothing to roll back: no challenger and no previous champion",
            hint=f"aliases: {aliases or 'none'}; or name a version with version=N",
        )
    store.move_aliases(name, changes, actor, "rollback", reason)
    return changes


@dataclass
class VersionStats:
    """What one version did since the current rollout step began."""

    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] | None = None
    labels: int = 0
    quality: float | None = None  # accuracy (classification) or MAE (regression)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p99_ms(self) -> float | None:
        if not self.latencies_ms:
            return None
        return float(np.percentile(self.latencies_ms, 99))


@dataclass
class Decision:
    """``hold``, ``step`` (to the next weight), ``promote`` or ``rollback``, and why."""

    action: str
    reason: str
    weight_from: float
    weight_to: float


#: Fewest challenger requests before the error-rate and latency margins are judged.
MIN_REQUESTS_FOR_MARGINS = 50


def breaches(
    policy: RolloutConfig,
    champion: VersionStats,
    challenger: VersionStats,
    min_labels: int,
    classification: bool,
) -> list[str]:
    """Every margin the challenger breaks against the champion (empty: within margins)."""
    margins = policy.margins
    out = []
    if challenger.requests >= MIN_REQUESTS_FOR_MARGINS:
        extra = challenger.error_rate - champion.error_rate
        if extra > margins.error_rate:
            out.append(
                f"error rate {challenger.error_rate:.3f} vs champion {champion.error_rate:.3f} "
                f"(margin {margins.error_rate})"
            )
        p_c, p_ch = challenger.p99_ms, champion.p99_ms
        if (
            p_c is not None
            and p_ch is not None
            and champion.requests >= MIN_REQUESTS_FOR_MARGINS
            and p_c > p_ch * margins.p99_latency_ratio
            and p_c - p_ch > margins.p99_latency_floor_ms
        ):
            out.append(
                f"p99 latency {p_c:.1f} ms vs champion {p_ch:.1f} ms "
                f"(at most {margins.p99_latency_ratio}x)"
            )
    if (
        challenger.quality is not None
        and champion.quality is not None
        and challenger.labels >= min_labels
        and champion.labels >= min_labels
    ):
        if classification and challenger.quality < champion.quality - margins.quality:
            out.append(
                f"live accuracy {challenger.quality:.3f} vs champion {champion.quality:.3f} "
                f"on {challenger.labels}/{champion.labels} labels (margin {margins.quality})"
            )
        if not classification and challenger.quality > champion.quality * (1 + margins.quality):
            out.append(
                f"live MAE {challenger.quality:.4g} vs champion {champion.quality:.4g} "
                f"on {challenger.labels}/{champion.labels} labels (margin {margins.quality:.0%})"
            )
    return out


def decide(
    policy: RolloutConfig,
    step: int,
    champion: VersionStats,
    challenger: VersionStats,
    min_labels: int,
    classification: bool,
) -> Decision:
    """The policy's next move for a challenger at ``policy.steps[step]``."""
    weight = policy.steps[step]
    broken = breaches(policy, champion, challenger, min_labels, classification)
    if broken:
        action = "rollback" if policy.auto_rollback else "hold"
        return Decision(action, "; ".join(broken), weight, 0.0 if action == "rollback" else weight)
    if challenger.requests < policy.min_requests_per_step:
        return Decision(
            "hold",
            f"{challenger.requests}/{policy.min_requests_per_step} challenger requests",
            weight,
            weight,
        )
    if policy.require_labels and min(challenger.labels, champion.labels) < min_labels:
        return Decision(
            "hold",
            f"labels {challenger.labels} (challenger) and {champion.labels} (champion); "
            f"{min_labels} needed",
            weight,
            weight,
        )
    summary = f"within margins after {challenger.requests} requests and {challenger.labels} labels"
    following = policy.steps[step + 1] if step + 1 < len(policy.steps) else 1.0
    if following < 1.0:
        return Decision("step", summary, weight, following)
    # A share of 1.0 leaves the champion nothing to be compared on: reaching it is promotion.
    if policy.auto_promote:
        return Decision("promote", summary, weight, 1.0)
    return Decision("hold", summary + "; waiting for a manual promote", weight, weight)
