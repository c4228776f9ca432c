"""Promotion, rollback and the rollout policy that ramps a challenger up or rolls it back.

``promote`` and ``rollback`` move registry aliases in one atomic, audited write; the CLI
(``task=promote``/``task=rollback``), the admin HTTP routes and the policy all call them. The
running application follows the aliases: its monitor reads them (``RolloutController``) and
the replicas swap ONNX sessions in place, so no request is dropped. ``decide`` is the pure
policy: a function of typed inputs, unit-tested per margin.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from framework.config.monitor import MonitorConfig, RolloutConfig
from framework.errors import FrameworkError, RegistryError
from framework.monitoring.protocol import AliasMove, Decision, RolloutState, Routing
from framework.store.registry import ModelRegistry

logger = logging.getLogger("ray.serve")
ACTOR = "rollout-policy"
VERIFY_ACTOR = "serving-verification"


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


class RolloutController:
    """Follows the registry aliases and runs the policy for one served model.

    It owns the ``RolloutState`` and the routing ``generation``; the monitor hands it the
    per-step counts to judge. Alias moves made here, by the CLI or the admin API land in the
    registry (atomic and audited), and the next ``refresh`` picks them up.
    """

    def __init__(self, store: ModelRegistry, name: str, served_alias: str, config: MonitorConfig):
        self.store = store
        self.name = name
        self.served_alias = served_alias
        self.config = config
        self.aliases: dict[str, int] = {}
        self.state = RolloutState()
        # Replicas reload when the generation changes; starting from the clock keeps a
        # restarted monitor from repeating a number a replica already holds.
        self.generation = int(time.time() * 1000)
        self.verified: set[int] = set()  # versions verified since they were aliased
        self.refused: dict[int, str] = {}  # versions refused, with the reason
        self.problems: tuple[str, ...] = ()
        self.refusals: dict[int, int] = {}  # failed verifications by version, for the metric

    @property
    def champion(self) -> int | None:
        alias = self.served_alias
        return int(alias) if alias.isdigit() else self.aliases.get(alias)

    def routing(self) -> Routing:
        shadow = self.aliases.get(self.config.rollout.shadow_alias)
        champion, challenger = self.champion, self.state.challenger
        return Routing(
            champion=champion,
            challenger=challenger,
            weight=float(self.state.weight),
            shadow=shadow if shadow not in (champion, challenger) else None,
            generation=self.generation,
            problems=self.problems,
            refused=tuple(sorted(self.refused.items())),
        )

    def _refuse_failing(self, aliases: dict[str, int], before: dict[str, int]) -> dict[str, int]:
        """Verify each version an alias of this app moved to; move a failing one's alias back.

        The served alias goes back to the version served before, a challenger or shadow alias
        is dropped, each as an audited move, so the aliases never name a version this app
        does not serve. Returns the aliases as they are afterwards."""
        watched = (self.served_alias, "challenger", self.config.rollout.shadow_alias)
        changes: dict[str, int | None] = {}
        for alias in watched:
            number = aliases.get(alias)
            if number is None or number in self.verified:
                continue
            try:
                self.store.get(self.name, number).verify()
                self.verified.add(number)
                self.refused.pop(number, None)
            except FrameworkError as exc:
                self.refused[number] = exc.message
                self.refusals[number] = self.refusals.get(number, 0) + 1
                logger.error("refusing to serve %s v%s: %s", self.name, number, exc.message)
                back = before.get(alias) if alias == self.served_alias else None
                if alias != self.served_alias or back is not None:
                    changes[alias] = back
        if not changes:
            return aliases
        try:
            for alias in changes:
                self.store.record(
                    self.name,
                    "verification_refused",
                    VERIFY_ACTOR,
                    version=aliases[alias],
                    named_by=alias,
                    reason=self.refused[aliases[alias]],
                )
            self.store.move_aliases(
                self.name,
                changes,
                VERIFY_ACTOR,
                "verification_refused",
                reason="; ".join(f"v{aliases[a]}: {self.refused[aliases[a]]}" for a in changes),
                verify=False,
            )
        except FrameworkError as exc:  # a log that cannot be written: say so, serve as before
            logger.error("cannot move the aliases of %s back: %s", self.name, exc.message)
            self.problems = (*self.problems, f"aliases not moved back: {exc.message}")
        return self.store.aliases(self.name)

    def reverify(self) -> bool:
        """Verify the served versions again; return whether ``problems`` changed."""
        problems = []
        for number in {v for v in (self.champion, self.state.challenger) if v is not None}:
            try:
                self.store.get(self.name, number).verify()
            except FrameworkError as exc:
                problems.append(f"v{number} (served from memory): {exc.message}")
                if not any(p.startswith(f"v{number} ") for p in self.problems):
                    self.refusals[number] = self.refusals.get(number, 0) + 1
        for number, reason in self.refused.items():
            if number in (self.aliases.get(self.served_alias), self.aliases.get("challenger")):
                problems.append(f"v{number} is aliased but refused: {reason}")
        changed = tuple(problems) != self.problems
        if changed:
            self.problems = tuple(problems)
            self.generation += 1
        return changed

    def refresh(self, initial: bool = False) -> tuple[bool, bool]:
        """Read the aliases; return (anything changed, champion or challenger changed)."""
        aliases = self.store.aliases(self.name)
        if aliases == self.aliases and not initial:
            return False, False
        before = self.aliases
        aliases = self._refuse_failing(aliases, before)
        if aliases == before and not initial:
            self.generation += 1  # the refusal is news to the replicas
            return True, False
        self.aliases = aliases
        champion = self.champion
        challenger = aliases.get("challenger")
        if challenger is not None and challenger != champion:
            if self.state.challenger != challenger:
                first = self.config.rollout.steps[0]
                self.state = RolloutState(challenger=challenger, weight=first, step=0)
                if not initial or before.get("challenger") != challenger:
                    self.store.record(
                        self.name,
                        "rollout_start",
                        ACTOR,
                        version=challenger,
                        champion=champion,
                        **{"from": 0.0, "to": first},
                    )
        elif self.state.challenger is not None:
            self.state = RolloutState()
        self.generation += 1
        logger.info("routing for %s: %s", self.name, self.routing())
        moved = any(before.get(a) != aliases.get(a) for a in (self.served_alias, "challenger"))
        return True, moved or initial

    def judge(
        self, champion: VersionStats, challenger: VersionStats, classification: bool
    ) -> Decision | None:
        """Run the policy on this step's counts and carry out what it decides."""
        policy = self.config.rollout
        if self.state.challenger is None or self.champion is None or not policy.enabled:
            return None
        step = int(self.state.step or 0)
        decision = decide(
            policy, step, champion, challenger, self.config.window.min_labels, classification
        )
        version, first_champion = self.state.challenger, self.champion
        if decision.action == "hold":
            self.state.reason = decision.reason
            return decision
        if decision.action == "step":
            self.store.record(
                self.name,
                "rollout_step",
                ACTOR,
                version=version,
                champion=first_champion,
                reason=decision.reason,
                **{"from": decision.weight_from, "to": decision.weight_to},
            )
            self.state = RolloutState(version, decision.weight_to, step + 1, decision.reason)
            self.generation += 1
        elif decision.action == "promote":
            promote(self.store, self.name, version, ACTOR, reason=decision.reason)
            self.refresh()
        else:
            rollback(self.store, self.name, None, ACTOR, reason=decision.reason)
            self.refresh()
        logger.info(
            "rollout of %s v%s: %s (%s)", self.name, version, decision.action, decision.reason
        )
        return decision

    def move(
        self,
        action: Callable[..., dict[str, int | None]],
        actor: str,
        version: int | None,
        reason: str,
    ) -> AliasMove:
        """A promote or rollback asked for by a person; a refusal comes back as its reason."""
        try:
            changes = action(self.store, self.name, version, actor, reason)
        except FrameworkError as exc:
            return AliasMove(error=exc.message, hint=exc.hint)
        self.refresh()
        return AliasMove(changes=changes, aliases=dict(self.aliases))
