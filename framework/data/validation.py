"""Check raw rows against the declared schema and apply the declared policy per check.

The result is a ``ValidationReport`` (per column: failure kind, count, action, example rows)
and the typed, repaired frame. Every check runs before a ``fail`` policy stops the run, so the
report names every problem at once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from framework.config.data import ChecksConfig, ColumnSpec
from framework.data.files import ERROR, FILE, META, ROW
from framework.errors import DataValidationError

#: The column ``validate_frame(..., reasons=True)`` gives every rejected row its reason in.
REJECT = "__reject"

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


@dataclass
class Failure:
    """Rows of one column that failed one check, and what was done about them."""

    column: str
    kind: str
    count: int
    action: str
    examples: list[dict[str, Any]]


@dataclass
class ValidationReport:
    """Outcome of the schema checks on one frame."""

    rows_in: int
    rows_out: int = 0
    failures: list[Failure] = field(default_factory=list)
    dropped_rows: dict[str, int] = field(default_factory=dict)
    missing_after: dict[str, int] = field(default_factory=dict)
    undeclared_columns: list[str] = field(default_factory=list)
    #: What the poisoning and leakage guards saw (``framework.data.guards``).
    guards: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[Failure]:
        return [f for f in self.failures if f.action == "fail"]

    @property
    def repaired(self) -> int:
        return sum(f.count for f in self.failures if f.action.startswith("repair"))

    def raise_if_failed(self) -> None:
        """The error ``validate_frame`` raises for a whole frame, for merged chunk reports."""
        if self.failed:
            lines = [f"{f.column}: {f.count} row(s) failed '{f.kind}'" for f in self.failed]
            error = DataValidationError(
                "data checks with policy 'fail' found problems:\n"
                + "\n".join(f"  - {x}" for x in lines),
                path="data.checks",
                hint="fix the data, or declare policy 'drop' or 'repair' for these checks",
            )
            error.report = self  # type: ignore[attr-defined]
            raise error
        if self.rows_out == 0:
            raise DataValidationError("no rows left after the data checks", path="data.checks")

    def failures_of(self, column: str, kind: str | None = None) -> list[Failure]:
        return [f for f in self.failures if f.column == column and kind in (None, f.kind)]

    def merge(self, other: ValidationReport, max_examples: int) -> None:
        """Add the report of another chunk of the same data (streaming checks)."""
        self.rows_in += other.rows_in
        self.rows_out += other.rows_out
        known = {(f.column, f.kind, f.action): f for f in self.failures}
        for failure in other.failures:
            mine = known.get((failure.column, failure.kind, failure.action))
            if mine is None:
                mine = Failure(failure.column, failure.kind, 0, failure.action, [])
                self.failures.append(mine)
                known[(failure.column, failure.kind, failure.action)] = mine
            mine.count += failure.count
            room = max_examples - len(mine.examples)
            mine.examples.extend(failure.examples[: max(room, 0)])
        for key, count in other.dropped_rows.items():
            self.dropped_rows[key] = self.dropped_rows.get(key, 0) + count
        for key, count in other.missing_after.items():
            self.missing_after[key] = self.missing_after.get(key, 0) + count
        for column in other.undeclared_columns:
            if column not in self.undeclared_columns:
                self.undeclared_columns.append(column)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows_dropped"] = self.rows_in - self.rows_out
        data["values_repaired"] = self.repaired
        return data

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str))


class _Checker:
    def __init__(self, frame: pd.DataFrame, checks: ChecksConfig, id_column: str | None):
        self.frame = frame
        self.rows = frame[ROW] if ROW in frame.columns else None
        self.files = frame[FILE] if FILE in frame.columns else None
        self.checks = checks
        self.id_column = id_column
        self.report = ValidationReport(rows_in=len(frame))
        self.drop = pd.Series(False, index=frame.index)
        self.drop_reason: dict[str, pd.Series] = {}
        self.drop_raw: dict[str, pd.Series] = {}

    def record(self, column: str, kind: str, mask: pd.Series, action: str, raw: pd.Series) -> None:
        count = int(mask.sum())
        if not count:
            return
        examples = []
        for idx in mask[mask].index[: self.checks.max_examples]:
            row = int(self.rows.loc[idx]) if self.rows is not None else int(idx)
            example: dict[str, Any] = {"row": row, "value": _plain(raw.loc[idx])}
            if self.files is not None:
                example["file"] = self.files.loc[idx]
            if self.id_column is not None and self.id_column != column:
                example["id"] = _plain(self.frame.loc[idx, self.id_column])
            examples.append(example)
        self.report.failures.append(Failure(column, kind, count, action, examples))
        if action == "drop":
            self.drop |= mask
            key = f"{kind}:{column}"
            self.drop_reason[key] = mask
            self.drop_raw[key] = raw


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def _is_missing_token(raw: pd.Series, tokens: set[str]) -> pd.Series:
    if raw.dtype != object and not pd.api.types.is_string_dtype(raw.dtype):
        return pd.Series(False, index=raw.index)  # typed values (Parquet): no text tokens
    try:
        return raw.str.strip().isin(tokens)
    except AttributeError:  # an object column holding no text at all
        return pd.Series(False, index=raw.index)


def _coerce(raw: pd.Series, spec: ColumnSpec) -> pd.Series:
    """Parse a column to its declared dtype; values that do not parse become NaN."""
    if spec.dtype in ("float", "int"):
        values = pd.to_numeric(raw, errors="coerce").astype("float64")
        if spec.dtype == "int":
            values = values.where(values.isna() | (values == np.round(values)), np.nan)
        return values
    if spec.dtype == "bool":

        def parse(v: Any) -> float:
            if isinstance(v, bool | np.bool_):
                return float(v)
            text = str(v).strip().lower()
            return 1.0 if text in _TRUE else 0.0 if text in _FALSE else np.nan

        return raw.map(parse).astype("float64")

    if pd.api.types.infer_dtype(raw, skipna=True) in ("string", "empty"):
        # text already (CSV, string columns): no value-by-value conversion
        return raw.astype(object).where(raw.notna(), np.nan)

    def text(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v)

    return raw.map(lambda v: text(v) if not _null(v) else np.nan).astype(object)


def _null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA


def outlier_fences(values: pd.Series, method: str, k: float, z: float) -> tuple[float, float]:
    """Lower and upper outlier fences of a numeric column, ignoring missing values."""
    clean = values.dropna()
    if clean.empty or method == "none":
        return -np.inf, np.inf
    if method == "iqr":
        q1, q3 = np.percentile(clean, [25, 75])
        return q1 - k * (q3 - q1), q3 + k * (q3 - q1)
    mean, std = clean.mean(), clean.std(ddof=0)
    return mean - z * std, mean + z * std


def validate_frame(
    frame: pd.DataFrame,
    columns: dict[str, ColumnSpec],
    checks: ChecksConfig,
    *,
    whole: bool = True,
    keep: list[str] | None = None,
    reasons: bool = False,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Check ``frame`` against the declared ``columns``; return the repaired frame and report.

    Raises DataValidationError (after the whole report is built) when a check whose policy
    is ``fail`` found rows; the report travels with the error as ``error.report``. With
    ``whole=False`` (one chunk of a larger source) neither a ``fail`` finding nor an empty
    result raises: the caller merges the chunk reports and decides at the end. A frame read
    by ``framework.data.files`` names file and row in every example, and its unreadable rows
    (a line with the wrong number of fields, text not in the declared encoding) fail the
    ``type`` check as a whole row. ``keep`` names extra columns carried through unchanged.
    With ``reasons=True`` no row is dropped: a row a ``drop`` policy would remove keeps its
    place with the first reason in the ``__reject`` column (None for rows that passed).
    """
    frame = frame.reset_index(drop=True)
    id_column = next((n for n, c in columns.items() if c.role == "id"), None)
    if id_column is not None and id_column not in frame.columns:
        id_column = None
    checker = _Checker(frame, checks, id_column)
    report = checker.report
    report.undeclared_columns = [c for c in frame.columns if c not in columns and c not in META]
    if ERROR in frame.columns:
        unreadable = frame[ERROR].notna()
        checker.record(
            "(row)", "unreadable", unreadable, _action(checks.type, "drop"), frame[ERROR]
        )
    tokens = set(checks.missing_tokens)
    out = pd.DataFrame(index=frame.index)
    absent_required = []

    for name, spec in columns.items():
        if name not in frame.columns:
            if spec.nullable and spec.role != "target":
                out[name] = np.nan
                everywhere = pd.Series(True, index=frame.index)
                checker.record(name, "absent_column", everywhere, "repair:missing", everywhere)
                continue
            absent_required.append(name)
            continue
        raw = frame[name]
        token = _is_missing_token(raw, tokens)
        checker.record(name, "missing_token", token, "repair:missing", raw)
        raw_clean = raw.mask(token, np.nan)
        values = _coerce(raw_clean, spec)
        bad_type = values.isna() & ~raw_clean.isna()
        checker.record(name, "type", bad_type, _action(checks.type, "repair:missing"), raw)
        if spec.dtype == "category" and spec.categories is not None:
            allowed = set(spec.categories)
            unknown = values.notna() & ~values.isin(allowed)
            checker.record(
                name, "category", unknown, _action(checks.category, "repair:missing"), raw
            )
            if checks.category == "repair":
                values = values.mask(unknown, np.nan)
        if spec.dtype in ("float", "int"):
            low = (
                values < spec.min if spec.min is not None else pd.Series(False, index=values.index)
            )
            high = (
                values > spec.max if spec.max is not None else pd.Series(False, index=values.index)
            )
            out_of_range = low | high
            repair = f"repair:{checks.range_repair}"
            checker.record(name, "range", out_of_range, _action(checks.range, repair), raw)
            if checks.range == "repair" and out_of_range.any():
                if checks.range_repair == "clip":
                    values = values.clip(lower=spec.min, upper=spec.max)
                else:
                    values = values.mask(out_of_range, np.nan)
        missing = values.isna()
        if spec.role == "target":
            action = "fail" if checks.missing == "fail" else "drop"
            checker.record(name, "missing_target", missing, action, raw)
        elif not spec.nullable:
            checker.record(name, "missing", missing, _action(checks.missing, "repair:impute"), raw)
        if spec.role == "feature" and spec.dtype in ("float", "int"):
            rule = checks.outliers
            low_f, high_f = outlier_fences(values, rule.method, rule.iqr_k, rule.zscore_threshold)
            outlier = (values < low_f) | (values > high_f)
            action = {"flag": "flag", "fail": "fail", "drop": "drop", "repair": "repair:clip"}
            checker.record(name, f"outlier_{rule.method}", outlier, action[rule.action], raw)
            if rule.action == "repair":
                values = values.clip(lower=low_f, upper=high_f)
        out[name] = values
    for name in keep or []:
        if name in frame.columns:
            out[name] = frame[name]

    if absent_required:
        raise DataValidationError(
            f"declared column(s) missing from the data: {', '.join(absent_required)}",
            path="data.columns",
            hint="declare them nullable, fix the source, or remove them from the schema",
        )
    for key, mask in checker.drop_reason.items():
        report.dropped_rows[key] = int(mask.sum())
    if reasons:
        why = pd.Series(None, index=frame.index, dtype=object)
        for key, mask in checker.drop_reason.items():
            kind, _, column = key.partition(":")
            new = mask & why.isna()
            if new.any():
                values = checker.drop_raw[key][new].astype(str)
                if kind == "unreadable":
                    why[new] = values
                else:
                    why[new] = f"{kind} check failed in column {column!r}: value " + values
        out[REJECT] = why.astype(object).where(why.notna(), None)
        report.rows_out = int(why.isna().sum())
        report.missing_after = {
            c: int(n) for c, n in out[why.isna()].isna().sum().items() if n and c in columns
        }
        return out, report
    kept = out.loc[~checker.drop].reset_index(drop=True)
    report.rows_out = len(kept)
    report.missing_after = {c: int(n) for c, n in kept.isna().sum().items() if n and c in columns}
    if whole:
        report.raise_if_failed()
    return kept, report


def _action(policy: str, repair: str) -> str:
    return repair if policy == "repair" else str(policy)
