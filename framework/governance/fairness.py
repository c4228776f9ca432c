"""The fairness gate: per-group metrics for every sensitive column, with Fairlearn.

For each ``sensitive`` column, on the test split: per-group metrics (``MetricFrame``), with
bootstrap intervals for groups under ``min_group_rows``; demographic parity difference and
ratio and equalized odds difference over the groups large enough to judge (regression: the
gap in mean absolute error between groups, as a share of the overall MAE).

A figure breaches its limit only when the gap is also statistically real (a chi-square test
of equal rates across groups, or Kruskal-Wallis on absolute errors, at ``alpha``): on a few
hundred test rows, chance alone moves a true-positive rate by 0.1-0.2 per group.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from framework.config.gates import FairnessGate
from framework.errors import ModelRefusedError


def _rate_test(hit: np.ndarray, group: np.ndarray) -> float:
    """p-value of 'the rate of ``hit`` is the same in every group' (chi-square)."""
    from scipy.stats import chi2_contingency

    table = pd.crosstab(group, hit)
    if table.shape[0] < 2 or table.shape[1] < 2:
        return 1.0
    return float(chi2_contingency(table.to_numpy())[1])


def _bootstrap(values: dict[str, np.ndarray], metric: Any, draws: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    n = len(next(iter(values.values())))
    if n == 0:
        return [float("nan"), float("nan")]
    found = []
    for _ in range(draws):
        pick = rng.integers(0, n, n)
        found.append(metric(**{k: v[pick] for k, v in values.items()}))
    lo, hi = np.nanpercentile(np.array(found, dtype=float), [2.5, 97.5])
    return [float(lo), float(hi)]


def classification_fairness(
    column: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    group: np.ndarray,
    positive: str,
    gate: FairnessGate,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-group figures and the gated differences of one sensitive column."""
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score

    t, p = y_true == positive, y_pred == positive
    frame = MetricFrame(
        metrics={
            "accuracy": accuracy_score,
            "selection_rate": selection_rate,
            "true_positive_rate": true_positive_rate,
            "false_positive_rate": false_positive_rate,
        },
        y_true=t,
        y_pred=p,
        sensitive_features=pd.Series(group, name=column),
    )
    groups: dict[str, dict[str, Any]] = {}
    counts = pd.Series(group).value_counts()
    for name, row in frame.by_group.iterrows():
        key = str(name)
        figures: dict[str, Any] = {"rows": int(counts[name])}
        figures.update({k: float(v) for k, v in row.items()})
        if figures["rows"] < gate.min_group_rows:
            mask = group == name
            figures["interval_95"] = {
                "accuracy": _bootstrap(
                    {"a": t[mask], "b": p[mask]},
                    lambda a, b: float((a == b).mean()),
                    gate.bootstrap,
                    seed,
                ),
                "selection_rate": _bootstrap(
                    {"b": p[mask]}, lambda b: float(b.mean()), gate.bootstrap, seed
                ),
            }
            figures["gated"] = False
        else:
            figures["gated"] = True
        groups[key] = figures
    judged = np.isin(group, [g for g, f in groups.items() if f["gated"]])
    out: dict[str, Any] = {"column": column, "positive_label": positive, "groups": groups}
    breaches: list[str] = []
    if len({*group[judged]}) >= 2:
        tj, pj, gj = t[judged], p[judged], group[judged]
        dpd = float(demographic_parity_difference(tj, pj, sensitive_features=gj))
        dpr = float(demographic_parity_ratio(tj, pj, sensitive_features=gj))
        eod = float(equalized_odds_difference(tj, pj, sensitive_features=gj))
        p_sel = _rate_test(pj, gj)
        p_tpr = _rate_test(pj[tj], gj[tj])
        p_fpr = _rate_test(pj[~tj], gj[~tj])
        out.update(
            demographic_parity_difference=dpd,
            demographic_parity_ratio=dpr,
            equalized_odds_difference=eod,
            p_values={
                "selection_rate": p_sel,
                "true_positive_rate": p_tpr,
                "false_positive_rate": p_fpr,
            },
        )
        rates = {g: f["selection_rate"] for g, f in groups.items() if f["gated"]}
        tprs = {g: f["true_positive_rate"] for g, f in groups.items() if f["gated"]}
        fprs = {g: f["false_positive_rate"] for g, f in groups.items() if f["gated"]}
        real_sel = p_sel < gate.alpha
        limit = gate.max_demographic_parity_difference
        if limit is not None and dpd > limit and real_sel:
            breaches.append(
                f"demographic parity difference {dpd:.3f} > {limit} "
                f"(selection rate {_span(rates)}; p={p_sel:.3g})"
            )
        limit = gate.min_demographic_parity_ratio
        if limit is not None and dpr < limit and real_sel:
            breaches.append(
                f"demographic parity ratio {dpr:.3f} < {limit} "
                f"(selection rate {_span(rates)}; p={p_sel:.3g})"
            )
        limit = gate.max_equalized_odds_difference
        if limit is not None and eod > limit and min(p_tpr, p_fpr) < gate.alpha:
            breaches.append(
                f"equalized odds difference {eod:.3f} > {limit} (true-positive rate "
                f"{_span(tprs)}, p={p_tpr:.3g}; false-positive rate {_span(fprs)}, "
                f"p={p_fpr:.3g})"
            )
    out["breaches"] = breaches
    return out


def regression_fairness(
    column: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    group: np.ndarray,
    gate: FairnessGate,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-group error figures and the gap in mean absolute error between groups."""
    from fairlearn.metrics import MetricFrame
    from scipy.stats import kruskal
    from sklearn.metrics import mean_absolute_error

    errors = np.abs(y_true - y_pred)
    frame = MetricFrame(
        metrics={"mae": mean_absolute_error},
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=pd.Series(group, name=column),
    )
    counts = pd.Series(group).value_counts()
    groups: dict[str, dict[str, Any]] = {}
    for name, row in frame.by_group.iterrows():
        figures: dict[str, Any] = {"rows": int(counts[name]), "mae": float(row["mae"])}
        figures["gated"] = figures["rows"] >= gate.min_group_rows
        if not figures["gated"]:
            figures["interval_95"] = {
                "mae": _bootstrap(
                    {"e": errors[group == name]}, lambda e: float(e.mean()), gate.bootstrap, seed
                )
            }
        groups[str(name)] = figures
    out: dict[str, Any] = {"column": column, "groups": groups}
    judged = {g: f["mae"] for g, f in groups.items() if f["gated"]}
    breaches: list[str] = []
    if len(judged) >= 2:
        overall = float(errors.mean()) or 1.0
        gap = (max(judged.values()) - min(judged.values())) / overall
        samples = [errors[group == g] for g in judged]
        p_value = float(kruskal(*samples).pvalue)
        out.update(error_gap=gap, p_values={"absolute_error": p_value})
        limit = gate.max_error_gap
        if limit is not None and gap > limit and p_value < gate.alpha:
            breaches.append(
                f"mean absolute error gap {gap:.3f} of the overall MAE > {limit} "
                f"(MAE {_span(judged)}; p={p_value:.3g})"
            )
    out["breaches"] = breaches
    return out


def _span(values: dict[str, float]) -> str:
    ordered = sorted(values.items(), key=lambda kv: kv[1])
    return ", ".join(f"{g} {v:.3f}" for g, v in ordered)


def fairness_report(
    task: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    sensitive: dict[str, pd.Series],
    classes: list[str],
    gate: FairnessGate,
    seed: int = 0,
) -> dict[str, Any]:
    """Every sensitive column's figures; ``breaches`` lists what refuses the model."""
    columns = []
    for column, values in sensitive.items():
        group = values.astype(object).where(values.notna(), "(missing)").astype(str).to_numpy()
        if task == "classification":
            positive = gate.positive_label or sorted(classes)[-1]
            columns.append(
                classification_fairness(
                    column,
                    np.asarray(y_true).astype(str),
                    np.asarray(y_pred).astype(str),
                    group,
                    positive,
                    gate,
                    seed,
                )
            )
        else:
            columns.append(
                regression_fairness(
                    column,
                    np.asarray(y_true, dtype=float),
                    np.asarray(y_pred, dtype=float),
                    group,
                    gate,
                    seed,
                )
            )
    return {
        "enabled": gate.enabled,
        "alpha": gate.alpha,
        "columns": columns,
        "breaches": [f"{c['column']}: {b}" for c in columns for b in c["breaches"]],
    }


def refusal(report: dict[str, Any]) -> ModelRefusedError | None:
    """The gate's verdict: an error naming the column, the groups and the figures, or None."""
    if not report["enabled"] or not report["breaches"]:
        return None
    return ModelRefusedError(
        "the fairness gate refused the model: " + "; ".join(report["breaches"]),
        hint="see gates.fairness for the limits; the per-group figures are in fairness.json "
        "in the run folder",
    )
