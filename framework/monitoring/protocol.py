"""The typed objects model replicas and the monitor hand each other, defined once.

Replicas send a ``RecordBatch`` every flush and get the current ``Routing`` back; feedback
comes in as ``LabelBatch`` and is answered with ``FeedbackResult``; the rollout policy keeps a
``RolloutState`` and returns a ``Decision``. Nothing here imports serving or training code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

#: What the rollout policy may do next.
Action = Literal["hold", "step", "promote", "rollback"]


@dataclass(frozen=True)
class Routing:
    """Which versions answer, and the challenger's share of callers.

    ``generation`` changes whenever the routing does; a replica reloads only then.
    """

    champion: int | None
    challenger: int | None = None
    weight: float = 0.0
    shadow: int | None = None
    generation: int = -1
    #: What fails verification now (the audit log, a served version's files): not ready.
    problems: tuple[str, ...] = ()
    #: Versions the aliases named that this app refused to serve, with the reason.
    refused: tuple[tuple[int, str], ...] = ()

    def versions(self) -> list[int]:
        """Every version a replica must hold: champion, challenger, shadow."""
        return [v for v in (self.champion, self.challenger, self.shadow) if v is not None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "champion": self.champion,
            "challenger": self.challenger,
            "weight": self.weight,
            "shadow": self.shadow,
            "problems": list(self.problems),
            "refused": {str(v): reason for v, reason in self.refused},
        }


@dataclass
class RecordBatch:
    """What one replica saw since its last flush.

    Per prediction request that reached a version: ``versions``, ``server_errors`` (the
    version itself failed: only these count against it) and ``latency_ms``. Per answered
    request: ``predictions`` (its server-made id, the version, the predicted labels; row
    ``i`` has the prediction id ``<id>-<i>``). The newest rows for the drift window, at most
    ``monitor.window.rows`` a flush: ``numeric``/``categorical`` and ``sampled_predictions``.
    ``shadow``: agreement counts of the mirrored version.
    """

    versions: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    server_errors: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    latency_ms: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    predictions: list[tuple[str, int, np.ndarray]] = field(default_factory=list)
    numeric: np.ndarray | None = None
    categorical: np.ndarray | None = None
    sampled_predictions: np.ndarray | None = None
    shadow: dict[str, int] = field(default_factory=dict)

    def empty(self) -> bool:
        return not len(self.versions) and not self.predictions


@dataclass(frozen=True)
class Label:
    """One ground-truth label for an earlier prediction id."""

    prediction_id: str
    value: str | float


@dataclass(frozen=True)
class FeedbackResult:
    """How the monitor took a batch of labels.

    ``matched``: joined to a known prediction now; ``pending``: kept until the prediction
    arrives; ``duplicates``: ids that already had a label (the first label wins);
    ``dropped``: pending labels pushed out by the cap.
    """

    accepted: int
    matched: int
    pending: int
    duplicates: int
    dropped: int

    def as_dict(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "matched": self.matched,
            "pending": self.pending,
            "duplicates": self.duplicates,
            "dropped": self.dropped,
        }


@dataclass
class RolloutState:
    """Where a challenger stands: its version, traffic share, step index and last reason."""

    challenger: int | None = None
    weight: float = 0.0
    step: int | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "challenger": self.challenger,
            "weight": self.weight,
            "step": self.step,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Decision:
    """``hold``, ``step`` (to the next weight), ``promote`` or ``rollback``, and why."""

    action: Action
    reason: str
    weight_from: float
    weight_to: float


@dataclass(frozen=True)
class AliasMove:
    """The outcome of a promote or rollback asked for through the admin API."""

    changes: dict[str, int | None] | None = None
    aliases: dict[str, int] | None = None
    error: str | None = None
    hint: str | None = None
