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


class StreamingProfile:
    """The reference profile of training rows that arrive chunk by chunk.

    Exact, in one pass: rows, counts, missing rates, means, standard deviations, minima,
    maxima and category frequencies. Quantiles and histogram bins need every value at once;
    they come from the uniform training sample and are listed as approximate.
    """

    def __init__(self, data: DataConfig, task: str):
        self.data = data
        self.task = task
        self.rows = 0
        self.names = [*data.features, data.target]
        self.numeric = {
            n
            for n in self.names
            if data.columns[n].numeric and not (n == data.target and task == "classification")
        }
        zero = {"count": 0, "sum": 0.0, "sumsq": 0.0, "min": np.inf, "max": -np.inf}
        self.moments: dict[str, dict[str, float]] = {n: dict(zero) for n in self.numeric}
        self.counts: dict[str, dict[str, int]] = {
            n: {} for n in self.names if n not in self.numeric
        }
        self.present: dict[str, int] = dict.fromkeys(self.names, 0)

    def add(self, frame: pd.DataFrame) -> None:
        self.rows += len(frame)
        for name in self.names:
            column = frame[name]
            self.present[name] += int(column.notna().sum())
            if name in self.numeric:
                values = pd.to_numeric(column, errors="coerce").dropna().to_numpy(dtype=float)
                if values.size:
                    m = self.moments[name]
                    m["count"] += values.size
                    m["sum"] += float(values.sum())
                    m["sumsq"] += float(np.square(values).sum())
                    m["min"] = min(m["min"], float(values.min()))
                    m["max"] = max(m["max"], float(values.max()))
            else:
                counts = self.counts[name]
                for value, n in column.astype(str).value_counts().items():
                    counts[str(value)] = counts.get(str(value), 0) + int(n)

    def finish(self, sample: pd.DataFrame, bins: int = 10) -> dict[str, Any]:
        """The profile: exact figures from the stream, quantiles and bins from ``sample``."""
        profile = reference_profile(sample, self.data, self.task, bins)
        for name, entry in profile["features"].items():
            entry["count"] = self.present[name]
            entry["missing_rate"] = 1.0 - self.present[name] / self.rows if self.rows else 0.0
            if name in self.numeric and self.moments[name]["count"]:
                m = self.moments[name]
                mean = m["sum"] / m["count"]
                entry.update(
                    mean=mean,
                    std=float(np.sqrt(max(m["sumsq"] / m["count"] - mean * mean, 0.0))),
                    min=m["min"],
                    max=m["max"],
                )
            elif name not in self.numeric:
                total = sum(self.counts[name].values()) or 1
                ordered = sorted(self.counts[name].items(), key=lambda kv: -kv[1])
                entry["frequencies"] = {k: v / total for k, v in ordered}
        profile["rows"] = self.rows
        profile["exact"] = ["rows", "count", "missing_rate", "mean", "std", "min", "max",
                            "frequencies"]  # fmt: skip
        profile["approximate"] = {
            "fields": ["quantiles", "bin_edges", "bin_counts"],
            "from": f"a uniform sample of {len(sample)} of {self.rows} training rows",
        }
        return profile
