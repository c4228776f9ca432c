"""``Attributions``: per row and output, each source column's share of the model output."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: The spaces an explainer's output (and so its attributions) can be in.
OUTPUT_SPACES = ("probability", "log_odds", "logit", "value")


@dataclass
class Attributions:
    """What an explainer found for a batch of rows.

    ``values[r, o, c]`` is column ``c``'s attribution to output ``o`` of row ``r``;
    ``base[r, o]`` the output expected before any column is known and ``output[r, o]`` the
    model's output. For an additive explainer ``base + values.sum(-1) == output``.
    """

    method: str
    output_space: str
    outputs: list[str]
    columns: list[str]
    values: np.ndarray
    base: np.ndarray
    output: np.ndarray
    additive: bool = True
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        rows = self.values.shape[0]
        if self.base.ndim == 1:
            self.base = np.broadcast_to(self.base, (rows, len(self.outputs))).copy()

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])

    def additivity_gap(self) -> float:
        """Largest |base + sum(attributions) - output| over rows and outputs."""
        if not self.rows:
            return 0.0
        return float(np.max(np.abs(self.base + self.values.sum(-1) - self.output)))

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready object per row: per output, base value, output and attributions."""
        out = []
        for r in range(self.rows):
            per_output = {}
            for o, name in enumerate(self.outputs):
                per_output[name] = {
                    "base_value": float(self.base[r, o]),
                    "output": float(self.output[r, o]),
                    "attributions": {
                        c: float(v) for c, v in zip(self.columns, self.values[r, o], strict=True)
                    },
                }
            out.append(per_output)
        return out

    @staticmethod
    def concat(parts: list[Attributions]) -> Attributions:
        """One batch of several (explained by the same explainer), copied once."""
        first = parts[0]
        return Attributions(
            first.method,
            first.output_space,
            first.outputs,
            first.columns,
            np.concatenate([p.values for p in parts]),
            np.concatenate([p.base for p in parts]),
            np.concatenate([p.output for p in parts]),
            first.additive,
            first.notes,
        )

    def importance(self) -> dict[str, float]:
        """Global importance: mean |attribution| per column, over rows and outputs."""
        if not self.rows:
            return dict.fromkeys(self.columns, 0.0)
        mean = np.abs(self.values).mean(axis=(0, 1))
        return {c: float(v) for c, v in zip(self.columns, mean, strict=True)}


def sum_to_columns(values: np.ndarray, source: np.ndarray, columns: int) -> np.ndarray:
    """Sum attributions of encoded features (last axis) back onto their source columns.

    ``source[j]`` is the index of the source column that encoded feature ``j`` came from.
    """
    out = np.zeros((*values.shape[:-1], columns), dtype=np.float64)
    for j, c in enumerate(source.tolist()):
        out[..., c] += values[..., j]
    return out
