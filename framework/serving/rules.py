"""The request rules, declared once from the served version's data schema.

Each feature column becomes a ``ColumnRule``: its kind, whether it may be missing, its range
(never wider than float32, the type the model is fed), its categories. ``ColumnRule.check``
is the rule for one value and the source of every verdict and message. Everything else is
derived from it:

- the vectorized path (``RequestRules.numeric_block``/``category_block``) is a compilation
  of the same rules over whole numpy columns: it either accepts with exactly the feeds the
  scalar rules would give, or gives up and lets the scalar rules find the problems;
- JSON records (v1), tensors (v2, JSON and binary) and the OpenAPI row schema all go through
  these rules.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from framework.config.data import ColumnSpec
from framework.export.signature import (
    CATEGORICAL_INPUT,
    MISSING_CATEGORY,
    NUMERIC_INPUT,
    Signature,
)
from framework.serving.column import FLOAT32_MAX, ColumnRule, check_values
from framework.serving.problems import Problem, RequestInvalid

__all__ = ["FLOAT32_MAX", "ColumnRule", "Feeds", "RequestRules", "check_values"]

Feeds = dict[str, np.ndarray]
#: Up to this many rows the scalar rules run directly (cheaper than numpy calls).
SMALL_BATCH = 4
Locate = Callable[[str, int], tuple[str | int, ...]]


class RequestRules:
    """The rules of every feature the served version takes, in its inputs' column order."""

    def __init__(self, columns: Mapping[str, ColumnSpec], signature: Signature):
        self.signature = signature
        self.numeric = [ColumnRule.of(c, columns[c]) for c in signature.numeric]
        self.categorical = [ColumnRule.of(c, columns[c]) for c in signature.categorical]
        self.by_name = {r.name: r for r in self.numeric + self.categorical}
        self.allowed = frozenset(self.by_name)
        self.required = frozenset(r.name for r in self.by_name.values() if not r.nullable)
        self._defaults = dict.fromkeys(self.by_name)
        self._low = np.array([r.low for r in self.numeric], dtype=np.float64)
        self._high = np.array([r.high for r in self.numeric], dtype=np.float64)
        self._nullable = np.array([r.nullable for r in self.numeric], dtype=bool)
        self._int = np.array([r.kind == "int" for r in self.numeric], dtype=bool)
        self._has_bool = any(r.kind == "bool" for r in self.numeric)
        self._get_numeric = _getter([r.name for r in self.numeric])
        groups = {
            NUMERIC_INPUT: [r.name for r in self.numeric],
            CATEGORICAL_INPUT: [r.name for r in self.categorical],
        }
        #: v2 input layouts: the model's own tensors, and one tensor per feature.
        self.layouts = (
            {k: v for k, v in groups.items() if v},
            {name: [name] for name in self.by_name},
        )
        self._kinds: dict[tuple[str, ...], frozenset[str]] = {}
        self._get_categorical = _getter([r.name for r in self.categorical])

    def kinds(self, columns: list[str]) -> frozenset[str]:
        """The kinds of some columns (remembered: the same groups come every request)."""
        key = tuple(columns)
        found = self._kinds.get(key)
        if found is None:
            found = self._kinds[key] = frozenset(self.by_name[c].kind for c in columns)
        return found

    # -- JSON records (v1) -----------------------------------------------------------------
    def records(self, records: list[Any], raw: bytes) -> Feeds:
        """Feeds for JSON rows; raise RequestInvalid naming every bad row and field.

        ``raw`` is the body the rows were parsed from: JSON ``true``/``false`` anywhere in it
        keeps the rows off the vectorized path (numpy would read a boolean as a number).
        """
        if len(records) > SMALL_BATCH and b"true" not in raw and b"false" not in raw:
            feeds = self._fast_records(records)
            if feeds is not None:
                return feeds
        return self._scalar_records(records)

    def _fast_records(self, records: list[Any]) -> Feeds | None:
        if self._has_bool or not all(type(r) is dict for r in records):
            return None
        keys: set[str] = set().union(*records)
        if not keys <= self.allowed or not all(map(self.required.issubset, records)):
            return None
        if keys != self.allowed or not all(len(r) == len(self.allowed) for r in records):
            records = [{**self._defaults, **r} for r in records]
        feeds: Feeds = {}
        n = len(records)
        if self.numeric:
            block = self.numeric_block(list(map(self._get_numeric, records)), n)
            if block is None:
                return None
            feeds[NUMERIC_INPUT] = block
        if self.categorical:
            columns = list(zip(*map(self._get_categorical, records), strict=True))
            block = self.category_block(columns, n)
            if block is None:
                return None
            feeds[CATEGORICAL_INPUT] = block
        return feeds

    def _scalar_records(self, records: list[Any]) -> Feeds:
        problems: list[Problem] = []
        n = len(records)
        numeric = np.empty((n, len(self.numeric)), dtype=np.float32)
        categorical = np.empty((n, len(self.categorical)), dtype=object)
        for i, record in enumerate(records):
            if type(record) is not dict:
                problems.append(
                    Problem(("body", i), "Input should be an object (one row)", "dict_type", row=i)
                )
                continue
            for key in record:
                if key not in self.by_name:
                    problems.append(
                        Problem(
                            ("body", i, key), "Extra inputs are not permitted", "extra_forbidden"
                        )
                    )
            for missing in self.required - record.keys():
                problems.append(Problem(("body", i, missing), "Field required", "missing"))
            for rules, block in ((self.numeric, numeric), (self.categorical, categorical)):
                for j, rule in enumerate(rules):
                    value, message, kind = rule.check(record.get(rule.name))
                    if message is None:
                        block[i, j] = value
                    elif rule.name in record:  # an absent required field is reported above
                        problems.append(Problem(("body", i, rule.name), message, kind))
        if problems:
            raise RequestInvalid(sorted(problems, key=_order))
        return self._feeds(numeric, categorical)

    # -- columns (v2 tensors) ----------------------------------------------------------------
    def columns(
        self,
        columns: Mapping[str, Sequence[Any] | np.ndarray],
        rows: int,
        where: Locate,
        numeric_tensor: frozenset[str] | set[str],
        fast: bool,
        numeric_block: np.ndarray | None = None,
    ) -> Feeds:
        """Feeds from whole columns (an absent column is all missing); every bad value is
        reported at ``where(column, row)``. ``numeric_tensor``: columns sent in a numeric
        tensor (a boolean column may hold 0/1 there). ``fast``: the values hold no JSON
        booleans, so the compiled rules may judge numeric columns. ``numeric_block``: every
        numeric column at once, already accepted by ``matrix``."""
        problems: list[Problem] = []
        checked: list[Any] = []  # each numeric column's feed values, joined once at the end
        categorical = np.empty((rows, len(self.categorical)), dtype=object)
        fast = fast and rows > SMALL_BATCH  # a few values are cheaper one by one
        for j, rule in enumerate(self.numeric if numeric_block is None else ()):
            values = columns.get(rule.name)
            if values is None:
                checked.append([math.nan] * rows)
                continue
            if fast and rule.kind != "bool":
                compiled = self._fast_column(j, values)
                if compiled is not None:
                    checked.append(compiled)
                    continue
            if isinstance(values, np.ndarray):
                values = values.tolist()
            out, bad = check_values(rule, values, rule.name in numeric_tensor)
            problems += [
                Problem(where(rule.name, r), m, k, row=r, field=rule.name) for r, m, k in bad
            ]
            checked.append(out)
        for j, rule in enumerate(self.categorical):
            values = columns.get(rule.name)
            if values is None:
                categorical[:, j] = MISSING_CATEGORY
                continue
            if isinstance(values, np.ndarray):
                values = values.tolist()
            out, bad = check_values(rule, values, False)
            problems += [
                Problem(where(rule.name, r), m, k, row=r, field=rule.name) for r, m, k in bad
            ]
            categorical[:, j] = out
        if problems:
            raise RequestInvalid(problems)
        if numeric_block is None:
            numeric_block = np.array(checked, dtype=np.float64).reshape(len(checked), rows).T
        return self._feeds(numeric_block, categorical)

    def matrix(
        self, values: Sequence[Any] | np.ndarray, rows: int, fast: bool
    ) -> np.ndarray | None:
        """The whole numeric block from a row-major [rows, k] tensor when every value passes
        (a few values by the scalar rules, more by the compiled ones if ``fast``), or None to
        judge it column by column and name each problem."""
        width = len(self.numeric)
        if self._has_bool or len(values) != rows * width:
            return None
        if rows <= SMALL_BATCH and not isinstance(values, np.ndarray):
            out = []
            for i, value in enumerate(values):
                converted, message, _ = self.numeric[i % width].check(value)
                if message is not None:
                    return None
                out.append(converted)
            return np.array(out, dtype=np.float32).reshape(rows, width)
        if not fast:
            return None
        try:
            array = np.asarray(values)
        except (ValueError, OverflowError):
            return None
        if array.dtype.kind not in "fiu" or array.size != rows * len(self.numeric):
            return None
        array = array.reshape(rows, len(self.numeric)).astype(np.float64, copy=False)
        return array.astype(np.float32) if self._block_ok(array, slice(None)) else None

    def _fast_column(self, j: int, values: Sequence[Any]) -> np.ndarray | None:
        """One numeric column by the compiled rules, or None to let the scalar rules judge."""
        if isinstance(values, np.ndarray):
            array = values.astype(np.float64, copy=False)
        else:
            try:
                array = np.array(values)
            except (ValueError, OverflowError):
                return None
            if array.ndim != 1 or array.dtype.kind not in "fi":
                return None
            array = array.astype(np.float64, copy=False)
        ok = self._block_ok(array.reshape(-1, 1), slice(j, j + 1))
        return array if ok else None

    # -- the compiled rules ------------------------------------------------------------------
    def numeric_block(self, values: list[Any], n: int) -> np.ndarray | None:
        """The numeric block of ``n`` rows (a tuple per row) by the compiled rules, or None."""
        if self._has_bool:
            return None
        try:
            array = np.array(values)
        except (ValueError, OverflowError):  # ragged rows
            return None
        if array.dtype.kind == "O":  # None (missing) among the numbers, or huge integers
            flat = [v for row in values for v in row]
            if not all(v is None or type(v) in (int, float) for v in flat):
                return None
            try:
                array = np.array(values, dtype=np.float64)
            except (ValueError, OverflowError, TypeError):
                return None
        elif array.dtype.kind not in "fi":
            return None
        if array.shape != (n, len(self.numeric)):  # a value that is itself a list
            return None
        array = array.astype(np.float64, copy=False)
        if not self._block_ok(array, slice(None)):
            return None
        return array.astype(np.float32)

    def _block_ok(self, array: np.ndarray, columns: slice) -> bool:
        """The numeric rules over a whole block: missing only where nullable, finite, within
        float32 and the declared range, integral in integer columns."""
        missing = np.isnan(array)
        if missing.any() and (missing & ~self._nullable[columns]).any():
            return False
        with np.errstate(invalid="ignore"):
            if (array < self._low[columns]).any() or (array > self._high[columns]).any():
                return False
            if np.isinf(array).any():
                return False
            ints = self._int[columns]
            if ints.any():
                block = array[:, ints]
                if (np.floor(block) != block)[~np.isnan(block)].any():
                    return False
        return True

    def category_block(self, columns: list[tuple[Any, ...]], n: int) -> np.ndarray | None:
        """The categorical block from per-column value tuples by the compiled rules, or None."""
        for rule, column in zip(self.categorical, columns, strict=True):
            if not all(v is None or type(v) is str for v in column):
                return None  # a list or object among them: the scalar rules name it
            seen = set(column)
            if None in seen:
                if not rule.nullable:
                    return None
                seen.discard(None)
            if MISSING_CATEGORY in seen and not rule.nullable:
                return None
            if rule.categories is not None and not seen <= rule.categories:
                return None
        array = np.array(columns, dtype=object).T.reshape(n, len(self.categorical))
        array[array == None] = MISSING_CATEGORY  # noqa: E711 - elementwise comparison
        return array

    def _feeds(self, numeric: np.ndarray, categorical: np.ndarray) -> Feeds:
        feeds: Feeds = {}
        if self.numeric:
            feeds[NUMERIC_INPUT] = numeric.astype(np.float32, copy=False)
        if self.categorical:
            feeds[CATEGORICAL_INPUT] = categorical
        return feeds

    # -- documentation -------------------------------------------------------------------------
    def row_schema(self) -> dict[str, Any]:
        """JSON Schema of one request row."""
        return {
            "type": "object",
            "additionalProperties": False,
            "required": sorted(self.required),
            "properties": {name: rule.json_schema() for name, rule in self.by_name.items()},
        }


def _getter(names: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if not names:
        return lambda row: ()
    if len(names) == 1:
        get = operator.itemgetter(names[0])
        return lambda row: (get(row),)
    return operator.itemgetter(*names)


def _order(problem: Problem) -> tuple[Any, ...]:
    return tuple((0, x) if isinstance(x, int) else (1, str(x)) for x in problem.loc)
