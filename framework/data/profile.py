"""Reference profile of the training data: per-feature distribution summaries for drift checks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from framework.config.data import DataConfig


def reference_profile(
    train: pd.DataFrame, data: DataConfig, task: str, bins: int = 10
) -> dict[str, Any]:
    """Summaries of every feature and the target on the training split."""
    features: dict[str, Any] = {}
    for name in [*data.features, data.target]:
        spec = data.columns[name]
        column = train[name]
        entry: dict[str, Any] = {
            "dtype": spec.dtype,
            "count": int(column.notna().sum()),
            "missing_rate": float(column.isna().mean()) if len(column) else 0.0,
        }
        if spec.numeric and not (name == data.target and task == "classification"):
            values = pd.to_numeric(column, errors="coerce").dropna().to_numpy(dtype=float)
            if values.size:
                edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)))
                counts, _ = (
                    np.histogram(values, bins=edges) if edges.size > 1 else ([values.size], None)
                )
                entry.update(
                    mean=float(values.mean()),
                    std=float(values.std()),
                    min=float(values.min()),
                    max=float(values.max()),
                    quantiles={
                        str(q): float(np.quantile(values, q))
                        for q in (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
                    },
                    bin_edges=[float(e) for e in edges],
                    bin_counts=[int(c) for c in counts],
                )
        else:
            freq = column.astype(str).value_counts(normalize=True)
            entry["frequencies"] = {str(k): float(v) for k, v in freq.items()}
        features[name] = entry
    return {"rows": len(train), "features": features}


def reference_rows(
    train: pd.DataFrame, data: DataConfig, task: str, rows: int, seed: int = 0
) -> bytes:
    """A sample of at most ``rows`` training rows, the drift reference (``reference.npz``)."""
    from framework.monitoring.drift import reference_sample

    sample = train.sample(n=rows, random_state=seed) if len(train) > rows else train
    features: dict[str, np.ndarray] = {}
    for name in data.features:
        spec = data.columns[name]
        column = sample[name]
        if spec.numeric:
            features[name] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        else:
            features[name] = column.astype(object).where(column.notna(), None).to_numpy()
    target = sample[data.target].dropna()
    if task == "classification":
        values = target.astype(str).to_numpy()
    else:
        values = pd.to_numeric(target, errors="coerce").to_numpy(dtype=np.float64)
    return reference_sample(features, (data.target, values))
