"""Production-noise simulator: corrupts a clean data set the way real feeds are corrupted.

It injects missing values, ``'NaN'`` strings, outliers, lost, flipped or biased labels,
duplicated rows and label imbalance, so
that every data path (checks, repairs, imputation, clipping, balancing) can be exercised on
demand.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from framework.config.data import DataConfig


@dataclass
class NoiseReport:
    """What the simulator did."""

    rows_before: int
    rows_after: int
    injected: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def inject_noise(frame: pd.DataFrame, data: DataConfig) -> tuple[pd.DataFrame, NoiseReport]:
    """Return a corrupted copy of ``frame`` as declared in ``data.noise``, and a report."""
    noise = data.noise
    report = NoiseReport(len(frame), len(frame))
    if not noise.enabled:
        return frame, report
    rng = np.random.default_rng(noise.seed)
    frame = frame.copy()
    target = data.target
    counts = {"missing": 0, "nan_string": 0, "outlier": 0, "missing_label": 0, "shifted": 0}
    for column in noise.shift_columns:  # drift, before any other corruption
        numeric = pd.to_numeric(frame[column], errors="coerce")
        moved = numeric + noise.shift_std * (numeric.std() or 1.0)
        spec = data.columns[column]
        if spec.dtype == "int":
            moved = moved.round()
        frame[column] = moved
        counts["shifted"] += int(numeric.notna().sum())
    if noise.label_shuffle and target in frame.columns:
        frame[target] = rng.permutation(frame[target].to_numpy())
        counts["shuffled_label"] = len(frame)
    bias = noise.label_bias
    if bias is not None and target in frame.columns and bias.column in frame.columns:
        group = frame[bias.column].astype(str).to_numpy() == bias.group
        changed = group & (rng.random(len(frame)) < bias.rate)
        changed &= frame[target].astype(str).to_numpy() != bias.label
        frame.loc[changed, target] = bias.label
        counts["biased_label"] = int(changed.sum())
    if noise.label_flip_rate and target in frame.columns:
        labels = frame[target]
        classes = labels.dropna().unique()
        if 1 < len(classes) <= 50:  # a class label, not a continuous target
            flip = (rng.random(len(frame)) < noise.label_flip_rate) & labels.notna().to_numpy()
            current = labels.to_numpy(dtype=object)
            for i in np.flatnonzero(flip):
                others = [c for c in classes if c != current[i]]
                current[i] = others[int(rng.integers(len(others)))]
            frame[target] = pd.Series(current, index=frame.index).astype(labels.dtype)
            counts["flipped_label"] = int(flip.sum())
    if noise.imbalance_ratio is not None and target in frame.columns:
        frame = _imbalance(frame, target, noise.imbalance_ratio, noise.minority_class, rng)
    n = len(frame)
    columns = noise.columns or [c for c in data.features if c in frame.columns]
    for column in columns:
        spec = data.columns[column]
        values = frame[column].astype(object)
        if noise.outlier_rate and spec.numeric:
            numeric = pd.to_numeric(frame[column], errors="coerce")
            mask = rng.random(n) < noise.outlier_rate
            nonnegative = spec.min is not None and spec.min >= 0
            sign = np.ones(n) if nonnegative else rng.choice([-1.0, 1.0], size=n)
            spread = numeric.std() or 1.0
            shifted = pd.Series(
                numeric.mean() + sign * noise.outlier_scale * spread, index=values.index
            )
            if spec.dtype == "int":
                shifted = shifted.round()
            values = values.mask(mask, shifted)
            counts["outlier"] += int(mask.sum())
        if noise.missing_rate:
            mask = rng.random(n) < noise.missing_rate
            values = values.mask(mask, None)
            counts["missing"] += int(mask.sum())
        if noise.nan_string_rate:
            mask = rng.random(n) < noise.nan_string_rate
            values = values.mask(mask, "NaN")
            counts["nan_string"] += int(mask.sum())
        frame[column] = values
    if noise.label_missing_rate and target in frame.columns:
        mask = rng.random(n) < noise.label_missing_rate
        frame[target] = frame[target].astype(object).mask(mask, None)
        counts["missing_label"] = int(mask.sum())
    if noise.duplicate_rate:
        copies = rng.choice(len(frame), size=round(noise.duplicate_rate * len(frame)))
        frame = pd.concat([frame, frame.iloc[copies]])
        counts["duplicated_row"] = len(copies)
    frame = frame.reset_index(drop=True)
    report.rows_after = len(frame)
    report.injected = {k: v for k, v in counts.items() if v}
    return frame, report


def _imbalance(
    frame: pd.DataFrame, target: str, ratio: float, minority: str | None, rng: np.random.Generator
) -> pd.DataFrame:
    labels = frame[target].astype(str)
    counts = labels.value_counts()
    minority = minority if minority is not None else str(counts.idxmin())
    keep_minority = round(ratio * int(counts.max()))
    minority_rows = np.flatnonzero(labels.to_numpy() == minority)
    if keep_minority >= len(minority_rows):
        return frame
    chosen = rng.choice(minority_rows, size=keep_minority, replace=False)
    keep = np.ones(len(frame), dtype=bool)
    keep[minority_rows] = False
    keep[chosen] = True
    return frame.loc[keep]
