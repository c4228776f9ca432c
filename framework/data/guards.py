"""Poisoning and leakage guards on the checked training data (``data.guards``).

Before the split: exact duplicates, near duplicates, suspected label errors (confident
learning with ``cleanlab`` on out-of-fold predicted probabilities) and a shift of the label
distribution against the previous version's. After the split: validation or test rows that
duplicate a training row (leakage). Each guard has a policy (``off``, ``flag``, ``drop``,
``fail``); what each saw goes into the validation report (``guards``) and the model card.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from framework.config.data import DataConfig
from framework.errors import DataValidationError

#: Temporary column that carries suspected label errors through the split.
SUSPECT = "__suspect_label"
EXAMPLES = 10


def _fail(name: str, message: str, hint: str) -> DataValidationError:
    return DataValidationError(message, path=f"data.guards.{name}", hint=hint)


def _decide(
    report: dict[str, Any], name: str, entry: dict[str, Any], message: str, fix: str
) -> bool:
    """Record a guard's entry; under ``fail`` raise when it found rows; True: drop them."""
    report[name] = entry
    if entry["rows"] and entry["policy"] == "fail":
        raise _fail(name, message, f"{fix}, or set data.guards.{name} to drop or flag")
    return entry["policy"] == "drop"


def row_hashes(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """A 64-bit hash of each row's values in ``columns`` (missing values hash alike)."""
    if not columns:
        return np.zeros(len(frame), dtype=np.uint64)
    return pd.util.hash_pandas_object(frame[columns].astype(object), index=False).to_numpy()


def _text(column: pd.Series) -> np.ndarray:
    """Category values as text, a missing value as the empty string."""
    return column.astype("string").fillna("").to_numpy(dtype=str)


def _matrix(frame: pd.DataFrame, data: DataConfig, reference: pd.DataFrame) -> np.ndarray:
    """Numeric features standardized on ``reference`` (missing: 0), categories one-hot and
    set far apart, so a small distance means near-equal numbers and equal categories."""
    parts = []
    numeric = [c for c in data.numeric_features if c in frame.columns]
    if numeric:
        ref = reference[numeric].apply(pd.to_numeric, errors="coerce").astype(float)
        values = frame[numeric].apply(pd.to_numeric, errors="coerce").astype(float)
        std = ref.std().replace(0, 1.0).fillna(1.0)
        scaled = ((values - ref.mean()) / std).fillna(0.0).to_numpy()
        parts.append(scaled / np.sqrt(len(numeric)))  # distance = RMS difference
    for column in (c for c in data.categorical_features if c in frame.columns):
        codes = _text(frame[column])
        for category in np.unique(_text(reference[column])):
            parts.append((codes == category).astype(float)[:, None] * 1e3)
    if not parts:
        return np.zeros((len(frame), 1))
    return np.hstack(parts)


def _nearest(train: np.ndarray, query: np.ndarray, same: bool) -> np.ndarray:
    """Distance from each query row to its nearest row of ``train`` (not itself if same)."""
    from sklearn.neighbors import NearestNeighbors

    if len(train) <= (1 if same else 0):
        return np.full(len(query), np.inf)
    index = NearestNeighbors(n_neighbors=2 if same else 1).fit(train)
    distance, _ = index.kneighbors(query)
    return distance[:, 1] if same else distance[:, 0]


def _near_pairs(matrix: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """For each row: whether another row lies within ``tolerance``; whether an earlier one."""
    from sklearn.neighbors import NearestNeighbors

    near = np.zeros(len(matrix), dtype=bool)
    later = np.zeros(len(matrix), dtype=bool)
    if len(matrix) < 2:
        return near, later
    index = NearestNeighbors(radius=tolerance).fit(matrix)
    for i, neighbours in enumerate(index.radius_neighbors(matrix, return_distance=False)):
        others = neighbours[neighbours != i]
        near[i] = len(others) > 0
        later[i] = bool((others < i).any())
    return near, later


def label_summary(frame: pd.DataFrame, target: str, task: str) -> dict[str, Any]:
    """The label distribution a version was trained on, kept in its manifest."""
    labels = frame[target].dropna()
    if task == "classification":
        shares = labels.astype(str).value_counts(normalize=True).sort_index()
        return {"rows": len(labels), "shares": {k: round(float(v), 6) for k, v in shares.items()}}
    values = pd.to_numeric(labels, errors="coerce").dropna()
    return {"rows": len(values), "mean": float(values.mean()), "std": float(values.std())}


def label_shift(current: dict[str, Any], previous: dict[str, Any]) -> float:
    """Total variation distance of class shares, or the mean's move in previous stds."""
    if "shares" in current and "shares" in previous:
        classes = set(current["shares"]) | set(previous["shares"])
        return 0.5 * sum(
            abs(current["shares"].get(c, 0.0) - previous["shares"].get(c, 0.0)) for c in classes
        )
    if "mean" in current and "mean" in previous:
        return abs(current["mean"] - previous["mean"]) / (previous.get("std") or 1.0)
    return float("nan")


def _out_of_fold(frame: pd.DataFrame, data: DataConfig, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold class probabilities of a regularized logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    matrix = _matrix(frame, data, frame)
    matrix[np.abs(matrix) >= 1e3] = 1.0  # one-hot back to 0/1 for the model
    labels = frame[data.target].astype(str).to_numpy()
    model = LogisticRegression(C=0.1, max_iter=2000)
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return cross_val_predict(model, matrix, labels, cv=cv, method="predict_proba")


def guard_before_split(
    frame: pd.DataFrame,
    data: DataConfig,
    task: str,
    previous: tuple[int, dict[str, Any]] | None,
    into: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Duplicates, near duplicates, label errors and label shift on the whole checked frame.

    Returns the frame (rows dropped by a ``drop`` policy; suspected label errors marked in
    ``SUSPECT`` for :func:`guard_after_split`) and the report of each guard, also written
    into ``into`` as each guard finishes (so a failing guard leaves the others' reports)."""
    g, target = data.guards, data.target
    features = [c for c in data.features if c in frame.columns]
    report: dict[str, Any] = {} if into is None else into
    frame = frame.reset_index(drop=True)

    if g.duplicates != "off":
        whole = row_hashes(frame, [*features, target])
        repeated = pd.Series(whole).duplicated().to_numpy()
        by_features = pd.Series(row_hashes(frame, features))
        conflicting = by_features[~repeated].duplicated(keep=False)
        entry = {
            "policy": g.duplicates,
            "rows": int(repeated.sum()),
            "share": round(float(repeated.mean()), 6) if len(frame) else 0.0,
            "conflicting_labels": int(conflicting.sum()),
        }
        message = f"{entry['rows']} row(s) ({entry['share']:.1%}) repeat another row exactly"
        if _decide(report, "duplicates", entry, message, "remove the copies"):
            frame = frame.loc[~repeated].reset_index(drop=True)
            entry["dropped"] = int(repeated.sum())

    if g.near_duplicates != "off" and features:
        started = time.perf_counter()
        part = frame if len(frame) <= g.max_rows else frame.sample(g.max_rows, random_state=0)
        near, later = _near_pairs(_matrix(part, data, part), g.near_tolerance)
        entry = {
            "policy": g.near_duplicates,
            "tolerance": g.near_tolerance,
            "rows": int(near.sum()),
            "checked_rows": len(part),
            "seconds": round(time.perf_counter() - started, 3),
        }
        message = f"{entry['rows']} row(s) lie within {g.near_tolerance} of another row"
        if _decide(report, "near_duplicates", entry, message, "remove them"):
            frame = frame.drop(index=part.index[later]).reset_index(drop=True)
            entry["dropped"] = int(later.sum())

    frame[SUSPECT] = False
    if g.label_errors != "off":
        report["label_errors"] = {}
        _label_errors(frame, data, task, report["label_errors"])

    if g.label_shift != "off":
        current = label_summary(frame, target, task)
        entry = {"policy": g.label_shift, "limit": g.label_shift_max, "current": current}
        report["label_shift"] = entry
        if previous is None:
            entry["note"] = "no previous version to compare with"
        else:
            number, summary = previous
            distance = label_shift(current, summary)
            entry.update(against_version=number, previous=summary, distance=round(distance, 6))
            entry["shifted"] = bool(distance > g.label_shift_max)
            if entry["shifted"] and g.label_shift == "fail":
                raise _fail(
                    "label_shift",
                    f"the label distribution moved by {distance:.3f} against version {number}'s "
                    f"(limit {g.label_shift_max}): now {current}, then {summary}",
                    "check the labels for poisoning or a changed labelling process; or raise "
                    "data.guards.label_shift_max",
                )
    return frame, report


def _label_errors(
    frame: pd.DataFrame, data: DataConfig, task: str, entry: dict[str, Any]
) -> dict[str, Any]:
    g, target = data.guards, data.target
    entry.update(
        policy=g.label_errors,
        method="confident learning (cleanlab, prune_by_noise_rate) on "
        f"{g.label_error_folds}-fold out-of-fold probabilities of a logistic regression",
    )
    if task != "classification":
        entry["note"] = "not run: confident learning needs class labels"
        return entry
    labelled = frame[frame[target].notna()]
    if len(labelled) > g.max_rows:
        labelled = labelled.sample(g.max_rows, random_state=data.split.seed)
    counts = labelled[target].astype(str).value_counts()
    if len(counts) < 2 or counts.min() < g.label_error_folds:
        entry["note"] = f"not run: a class has fewer than {g.label_error_folds} rows"
        return entry
    from cleanlab.filter import find_label_issues

    started = time.perf_counter()
    probabilities = _out_of_fold(labelled, data, g.label_error_folds, data.split.seed)
    classes = np.array(sorted(counts.index))
    given = np.searchsorted(classes, labelled[target].astype(str).to_numpy())
    # n_jobs=1: cleanlab would otherwise fork a process pool, which can deadlock in a
    # process that runs Ray's threads (the driver)
    suspect = find_label_issues(given, probabilities, filter_by="prune_by_noise_rate", n_jobs=1)
    share = float(suspect.mean())
    rows = labelled.index[suspect]
    order = np.argsort(probabilities[suspect, given[suspect]])[:EXAMPLES]
    entry.update(
        suspected=int(suspect.sum()),
        share=round(share, 6),
        checked_rows=len(labelled),
        limit=g.label_error_max_share,
        seconds=round(time.perf_counter() - started, 3),
        by_given_label={
            str(k): int(v) for k, v in pd.Series(classes[given[suspect]]).value_counts().items()
        },
        examples=[
            {
                "row": int(rows[i]),
                "given": str(classes[given[suspect][i]]),
                "suggested": str(classes[int(np.argmax(probabilities[suspect][i]))]),
                "given_probability": round(float(probabilities[suspect][i, given[suspect][i]]), 4),
            }
            for i in order
        ],
    )
    if g.label_errors == "fail" and share > g.label_error_max_share:
        raise _fail(
            "label_errors",
            f"{entry['suspected']} of {len(labelled)} labels ({share:.1%}) look wrong by "
            f"confident learning, more than {g.label_error_max_share:.1%}",
            "check the labelling (poisoned or careless labels); or set data.guards.label_errors "
            "to drop (train without them) or flag",
        )
    frame.loc[rows, SUSPECT] = True
    return entry


def guard_after_split(
    train: pd.DataFrame,
    held_out: dict[str, pd.DataFrame],
    data: DataConfig,
    report: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Leakage across the splits, and the label-error policy on the training split."""
    g = data.guards
    features = [c for c in data.features if c in train.columns]
    if g.leakage != "off" and features:
        seen = set(row_hashes(train, features).tolist())
        matrix = _matrix(train, data, train)
        entry: dict[str, Any] = {"policy": g.leakage, "tolerance": g.near_tolerance}
        kept = {}
        for name, part in held_out.items():
            exact = np.array([h in seen for h in row_hashes(part, features).tolist()], dtype=bool)
            near = np.zeros(len(part), dtype=bool)
            if len(part) and len(train) <= g.max_rows:
                near = _nearest(matrix, _matrix(part, data, train), same=False) <= g.near_tolerance
            leaked = exact | near
            entry[name] = {"exact": int(exact.sum()), "near": int((near & ~exact).sum())}
            if leaked.any() and g.leakage == "fail":
                raise _fail(
                    "leakage",
                    f"{int(leaked.sum())} {name} row(s) duplicate a training row",
                    "deduplicate the data, or set data.guards.leakage to drop or flag",
                )
            if g.leakage == "drop":
                part = part.loc[~leaked].reset_index(drop=True)
                entry[name]["dropped"] = int(leaked.sum())
            kept[name] = part
        held_out = kept
        report["leakage"] = entry
    if SUSPECT in train.columns:
        if g.label_errors == "drop":
            suspect = train[SUSPECT].to_numpy(dtype=bool)
            train = train.loc[~suspect].reset_index(drop=True)
            report.setdefault("label_errors", {})["dropped_from_train"] = int(suspect.sum())
        train = train.drop(columns=SUSPECT)
        held_out = {k: v.drop(columns=SUSPECT, errors="ignore") for k, v in held_out.items()}
    return train, held_out
