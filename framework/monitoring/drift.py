"""Drift detection against the reference stored with a model version.

Per numeric feature: a two-sample test (a ``drift_tests`` plugin; by default scipy's
Kolmogorov-Smirnov) and the population stability index (PSI) over the reference's quantile
bins. Per categorical feature: a test of the two frequency tables (by default scipy's
chi-square) and PSI over the categories. The p-values are corrected for
the number of features tested together, and a feature counts as drifted only when the
corrected p-value is under ``alpha`` AND its PSI reaches ``min_psi``: the first keeps chance
out, the second keeps shifts too small to matter out (on a million rows everything is
"significant").

The same detector runs in the batch job (``task=monitor``) and on the serving monitor's
sliding windows.
"""

from __future__ import annotations

import io
import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from framework.config.monitor import DriftConfig

#: Key prefixes inside ``reference.npz``.
FEATURE = "feature:"
TARGET = "target:"
_EPS = 1e-4  # proportions are floored at this before the PSI's logarithm


@dataclass
class FeatureDrift:
    """The verdict on one feature (or on the predictions)."""

    name: str
    kind: str  # numeric | categorical
    test: str  # ks | chi2
    statistic: float
    p_value: float
    p_adjusted: float
    psi: float
    drifted: bool
    rows: int
    missing_rate: float
    reference_missing_rate: float
    bins: list[str] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)
    current: list[float] = field(default_factory=list)
    #: The missing-share test: p-value (corrected) and whether the share moved.
    missing_p_value: float = float("nan")
    missing_drifted: bool = False
    #: ok | drifted | untestable (a statistic could not be computed; never read as ok)
    status: str = "ok"
    reason: str | None = None

    def flag(self, reason: str) -> None:
        """Mark the feature drifted for ``reason`` (kept with any reason found before)."""
        self.drifted = True
        self.status = "drifted"
        self.reason = reason if not self.reason else f"{reason}; {self.reason}"


@dataclass
class DriftReport:
    """Every feature's verdict, the drifted ones, and whether the batch counts as drifted."""

    rows: int
    reference_rows: int
    alpha: float
    correction: str
    min_psi: float
    features: list[FeatureDrift]
    prediction: FeatureDrift | None
    drift: bool
    status: str = "ok"  # ok | insufficient_data

    @property
    def drifted(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    @property
    def untestable(self) -> list[str]:
        return [f.name for f in self.features if f.status == "untestable"]

    def recount(self, max_drifted_share: float) -> None:
        """Set ``drift`` again after features were flagged from outside the detector."""
        share = len(self.drifted) / len(self.features) if self.features else 0.0
        self.drift = bool(self.drifted) and share > max_drifted_share

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["drifted"] = self.drifted
        out["untestable"] = self.untestable
        return out


def reference_sample(
    features: dict[str, np.ndarray], target: tuple[str, np.ndarray] | None
) -> bytes:
    """The ``reference.npz`` file: one array per column, no pickled objects."""
    arrays: dict[str, np.ndarray] = {}
    for name, values in features.items():
        arrays[FEATURE + name] = _plain(values)
    if target is not None:
        arrays[TARGET + target[0]] = _plain(target[1])
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _plain(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "fiub":
        return values.astype(np.float64)
    as_text = np.array(["" if v is None else str(v) for v in values.tolist()], dtype=str)
    return as_text


def load_reference(data: bytes) -> tuple[dict[str, np.ndarray], tuple[str, np.ndarray] | None]:
    """Read ``reference.npz`` back (``allow_pickle=False``)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        features = {k[len(FEATURE) :]: npz[k] for k in npz.files if k.startswith(FEATURE)}
        targets = [(k[len(TARGET) :], npz[k]) for k in npz.files if k.startswith(TARGET)]
    return features, (targets[0] if targets else None)


def _missing(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind in "iub":
        return np.zeros(len(values), dtype=bool)
    return np.array([v is None or v == "" for v in values.tolist()], dtype=bool)


class _NumericReference:
    def __init__(self, values: np.ndarray, bins: int):
        values = values.astype(np.float64)
        self.missing_rate = float(np.isnan(values).mean()) if values.size else 0.0
        self.sorted = np.sort(values[~np.isnan(values)])
        if self.sorted.size:
            quantiles = np.quantile(self.sorted, np.linspace(0, 1, bins + 1)[1:-1])
            self.edges = np.unique(quantiles)
        else:  # no value in the reference: nothing to bin (its tests are untestable)
            self.edges = np.zeros(0)
        self.proportions = self._proportions(self.sorted)

    def _proportions(self, values: np.ndarray) -> np.ndarray:
        index = np.searchsorted(self.edges, values, side="right")
        counts = np.bincount(index, minlength=len(self.edges) + 1)
        return counts / max(1, counts.sum())

    def labels(self) -> list[str]:
        bounds = ["-inf", *(f"{e:.4g}" for e in self.edges), "inf"]
        return [f"{a}..{b}" for a, b in itertools.pairwise(bounds)]


class _CategoricalReference:
    def __init__(self, values: np.ndarray):
        missing = _missing(values)
        self.missing_rate = float(missing.mean()) if values.size else 0.0
        cats, counts = np.unique(values[~missing].astype(str), return_counts=True)
        self.categories = [str(c) for c in cats]
        self.counts = counts.astype(np.float64)


def _psi(reference: np.ndarray, current: np.ndarray) -> float:
    ref = np.maximum(reference, _EPS)
    cur = np.maximum(current, _EPS)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def adjust(p_values: list[float], method: str) -> list[float]:
    """p-values corrected for testing several features together."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0 or method == "none":
        return p.tolist()
    if method == "bonferroni":
        return np.minimum(1.0, p * m).tolist()
    if method == "fdr_bh":
        return stats.false_discovery_control(p, method="bh").tolist()
    # Holm's step-down: the i-th smallest p-value is multiplied by (m - i), kept monotone.
    order = np.argsort(p)
    scaled = np.minimum(1.0, p[order] * (m - np.arange(m)))
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.tolist()


class DriftDetector:
    """Tests current data against one model version's reference sample."""

    def __init__(
        self,
        features: dict[str, np.ndarray],
        target: tuple[str, np.ndarray] | None,
        config: DriftConfig,
        categorical: set[str] | None = None,
    ):
        from framework import registry

        self.config = config
        self.numeric_test = registry.drift_tests.get(config.numeric_test).impl
        self.categorical_test = registry.drift_tests.get(config.categorical_test).impl
        categorical = categorical or set()
        self.numeric: dict[str, _NumericReference] = {}
        self.categorical: dict[str, _CategoricalReference] = {}
        self.order = list(features)
        for name, values in features.items():
            if name in categorical or values.dtype.kind not in "fiub":
                self.categorical[name] = _CategoricalReference(values)
            else:
                self.numeric[name] = _NumericReference(values, config.psi_bins)
        self.reference_rows = max((len(v) for v in features.values()), default=0)
        self.reference_counts = {name: len(values) for name, values in features.items()}
        self.target: _NumericReference | _CategoricalReference | None = None
        if target is not None:
            values = target[1]
            self.target = (
                _NumericReference(values, config.psi_bins)
                if values.dtype.kind in "fiub"
                else _CategoricalReference(values)
            )

    @classmethod
    def from_bytes(
        cls, data: bytes, config: DriftConfig, categorical: set[str] | None = None
    ) -> DriftDetector:
        features, target = load_reference(data)
        return cls(features, target, config, categorical)

    def _numeric(self, name: str, ref: _NumericReference, values: np.ndarray) -> FeatureDrift:
        values = np.asarray(values, dtype=np.float64)
        missing = np.isnan(values)
        present = values[~missing] if missing.any() else values
        test = self.config.numeric_test
        if present.size == 0 or ref.sorted.size == 0:
            rate = float(missing.mean()) if len(values) else 0.0
            return _untested(name, "numeric", test, len(values), ref.missing_rate, rate)
        statistic, p_value = self.numeric_test.test(ref.sorted, present)
        current = ref._proportions(present)
        return FeatureDrift(
            name=name,
            kind="numeric",
            test=test,
            statistic=statistic,
            p_value=p_value,
            p_adjusted=p_value,
            psi=_psi(ref.proportions, current),
            drifted=False,
            rows=len(values),
            missing_rate=float(missing.mean()),
            reference_missing_rate=ref.missing_rate,
            bins=ref.labels(),
            reference=[round(float(x), 6) for x in ref.proportions],
            current=[round(float(x), 6) for x in current],
        )

    def _categorical(
        self, name: str, ref: _CategoricalReference, values: np.ndarray
    ) -> FeatureDrift:
        missing = _missing(values)
        present = values[~missing].astype(str)
        test = self.config.categorical_test
        if present.size == 0 or not ref.categories:
            rate = float(missing.mean()) if len(values) else 0.0
            return _untested(name, "categorical", test, len(values), ref.missing_rate, rate)
        cats, counts = np.unique(present, return_counts=True)
        seen = dict(zip(cats.tolist(), counts.tolist(), strict=True))
        names = list(ref.categories) + sorted(set(seen) - set(ref.categories))
        ref_counts = np.array(
            [*ref.counts, *([0.0] * (len(names) - len(ref.categories)))], dtype=np.float64
        )
        cur_counts = np.array([seen.get(c, 0) for c in names], dtype=np.float64)
        if len(names) < 2:
            statistic, p_value = 0.0, 1.0
        else:
            statistic, p_value = self.categorical_test.test(ref_counts, cur_counts)
        ref_p = ref_counts / ref_counts.sum()
        cur_p = cur_counts / cur_counts.sum()
        return FeatureDrift(
            name=name,
            kind="categorical",
            test=test,
            statistic=statistic,
            p_value=p_value,
            p_adjusted=p_value,
            psi=_psi(ref_p, cur_p),
            drifted=False,
            rows=len(values),
            missing_rate=float(missing.mean()),
            reference_missing_rate=ref.missing_rate,
            bins=names,
            reference=[round(float(x), 6) for x in ref_p],
            current=[round(float(x), 6) for x in cur_p],
        )

    def _one(self, name: str, values: np.ndarray) -> FeatureDrift:
        if name in self.numeric:
            return self._numeric(name, self.numeric[name], values)
        return self._categorical(name, self.categorical[name], values)

    def _missing_shares(self, results: list[FeatureDrift]) -> None:
        """The missing share of each feature against the reference's: a drift test of its
        own (a chi-square test of the two shares, corrected like the others, and a change of
        at least ``min_missing_change``). A feature with nothing to test is ``untestable``."""
        from scipy.stats import chi2_contingency

        config = self.config
        p_values = []
        for r in results:
            ref_rows = self.reference_counts.get(r.name, 0)
            ref_missing = round(r.reference_missing_rate * ref_rows)
            cur_missing = round(r.missing_rate * r.rows)
            table = np.array(
                [[ref_missing, ref_rows - ref_missing], [cur_missing, r.rows - cur_missing]],
                dtype=np.float64,
            )
            if r.rows == 0 or ref_rows == 0 or (table.sum(axis=0) == 0).any():
                p_values.append(1.0)  # the same share (all present or all missing) in both
            else:
                p_values.append(float(chi2_contingency(table)[1]))
        for r, adjusted in zip(results, adjust(p_values, config.correction), strict=True):
            r.missing_p_value = float(adjusted)
            change = r.missing_rate - r.reference_missing_rate
            if adjusted < config.alpha and abs(change) >= config.min_missing_change:
                r.missing_drifted = True
                r.flag(
                    f"missing share {r.missing_rate:.2f} against {r.reference_missing_rate:.2f} "
                    "in the reference"
                )
            if math.isnan(r.p_value) and not r.drifted:
                r.status = "untestable"
                r.reason = (
                    "no value present to test" if r.rows else "no rows"
                ) + " (the distribution test cannot be computed)"

    def check(
        self, current: dict[str, np.ndarray], prediction: np.ndarray | None = None
    ) -> DriftReport:
        """Test every reference feature present in ``current``; flag the drifted ones."""
        config = self.config
        results = [
            self._one(name, np.asarray(current[name])) for name in self.order if name in current
        ]
        tested = [r for r in results if not math.isnan(r.p_value)]
        for result, adjusted in zip(
            tested, adjust([r.p_value for r in tested], config.correction), strict=True
        ):
            result.p_adjusted = float(adjusted)
            result.drifted = adjusted < config.alpha and result.psi >= config.min_psi
            if result.drifted:
                result.status = "drifted"
        self._missing_shares(results)
        pred = None
        if prediction is not None and self.target is not None and config.include_prediction:
            name = "prediction"
            if isinstance(self.target, _NumericReference):
                pred = self._numeric(name, self.target, np.asarray(prediction, dtype=np.float64))
            else:
                pred = self._categorical(name, self.target, np.asarray(prediction).astype(str))
            pred.drifted = pred.p_value < config.alpha and pred.psi >= config.min_psi
        drifted = sum(r.drifted for r in results)
        share = drifted / len(results) if results else 0.0
        rows = max((r.rows for r in results), default=0)
        return DriftReport(
            rows=rows,
            reference_rows=self.reference_rows,
            alpha=config.alpha,
            correction=config.correction,
            min_psi=config.min_psi,
            features=results,
            prediction=pred,
            drift=drifted > 0 and share > config.max_drifted_share,
        )


def _untested(
    name: str, kind: str, test: str, rows: int, ref_missing: float, missing: float
) -> FeatureDrift:
    return FeatureDrift(
        name=name,
        kind=kind,
        test=test,
        statistic=float("nan"),
        p_value=float("nan"),
        p_adjusted=float("nan"),
        psi=float("nan"),
        drifted=False,
        rows=rows,
        missing_rate=missing,
        reference_missing_rate=ref_missing,
        status="untestable",
    )
