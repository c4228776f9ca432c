"""Serving requests checked against the data schema of the served model version.

``RequestSchema`` builds a pydantic row model from the schema recorded in the version's
manifest (strict types, finite numbers, declared ranges, allowed categories, extra fields
refused, nullable columns optional). It is the contract: the OpenAPI document shows it, and
every error message comes from it.

Validating hundreds of rows one Python object at a time costs milliseconds, so well-formed
batches take a vectorized path that applies the same rules to whole numpy columns. Whenever
that path finds anything it is not sure of, the rows go through the pydantic model, which
either accepts them or reports every problem with its row index and field.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from framework.config.data import ColumnSpec
from framework.export.onnx import CATEGORICAL_INPUT, NUMERIC_INPUT, Signature
from framework.training.pipeline import MISSING_CATEGORY

Feeds = dict[str, np.ndarray]
#: Up to this many rows, numeric checks run value by value instead of through numpy.
SMALL_BATCH = 4


@dataclass(frozen=True)
class Problem:
    """One reason a request was refused: where (row, field) and why."""

    loc: tuple[str | int, ...]
    msg: str
    type: str
    row: int | None = None
    field: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"loc": list(self.loc), "msg": self.msg, "type": self.type}
        row, field = self.row, self.field
        if row is None and len(self.loc) >= 2 and self.loc[0] == "body":
            row = self.loc[1] if isinstance(self.loc[1], int) else None
            if row is not None and len(self.loc) >= 3 and isinstance(self.loc[2], str):
                field = self.loc[2]
        if row is not None:
            out["row"] = row
        if field is not None:
            out["field"] = field
        return out


class RequestInvalid(Exception):
    """The request broke the schema; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem]):
        super().__init__(f"{len(problems)} problem(s) in the request")
        self.problems = problems


def _same_rows(index: int, n: int, rows: int | None, problems: list[Problem]) -> bool:
    """Whether tensor ``index`` has as many rows as those before it; if not, say so."""
    if rows is None or n == rows:
        return True
    problems.append(
        Problem(
            ("body", "inputs", index, "shape"),
            f"has {n} rows but another input has {rows}",
            "value_error",
        )
    )
    return False


def _field_type(spec: ColumnSpec) -> Any:
    if spec.dtype in ("float", "int"):
        kwargs: dict[str, Any] = {"strict": True, "ge": spec.min, "le": spec.max}
        if spec.dtype == "float":
            return Annotated[float, Field(allow_inf_nan=False, **kwargs)]
        return Annotated[int, Field(**kwargs)]
    if spec.dtype == "bool":
        return Annotated[bool, Field(strict=True)]
    if spec.categories:
        return Literal[tuple(spec.categories)]
    return Annotated[str, Field(strict=True)]


def build_row_model(name: str, features: Mapping[str, ColumnSpec]) -> type[BaseModel]:
    """A pydantic model of one request row: one field per feature column of the schema."""
    fields: dict[str, Any] = {}
    for column, spec in features.items():
        kind = _field_type(spec)
        description = spec.description or f"{spec.dtype} feature"
        if spec.nullable:
            fields[column] = (
                kind | None,
                Field(None, description=f"{description} (may be missing: imputed)"),
            )
        else:
            fields[column] = (kind, Field(..., description=description))
    return create_model(  # type: ignore[call-overload,no-any-return]
        f"{name.title().replace('_', '')}Row",
        __config__=ConfigDict(extra="forbid", strict=True),
        **fields,
    )


def _bounds(specs: Sequence[ColumnSpec]) -> tuple[np.ndarray, np.ndarray]:
    low = np.array([-np.inf if s.min is None else s.min for s in specs], dtype=np.float64)
    high = np.array([np.inf if s.max is None else s.max for s in specs], dtype=np.float64)
    return low, high


class RequestSchema:
    """Turns JSON records or Open Inference Protocol tensors into ONNX feeds, or refuses them."""

    def __init__(self, model_name: str, columns: Mapping[str, ColumnSpec], signature: Signature):
        self.signature = signature
        self.numeric = list(signature.numeric)
        self.categorical = list(signature.categorical)
        self.features = {c: columns[c] for c in self.numeric + self.categorical}
        self.row_model = build_row_model(model_name, self.features)
        self._rows = TypeAdapter(list[self.row_model])  # type: ignore[name-defined]
        self._allowed = frozenset(self.features)
        self._required = frozenset(c for c, s in self.features.items() if not s.nullable)
        numeric_specs = [columns[c] for c in self.numeric]
        self._low, self._high = _bounds(numeric_specs)
        self._numeric_nullable = np.array([s.nullable for s in numeric_specs], dtype=bool)
        self._int_columns = [i for i, s in enumerate(numeric_specs) if s.dtype == "int"]
        self._column_checks = [
            (float(low), float(high), spec.nullable, spec.dtype)
            for low, high, spec in zip(self._low, self._high, numeric_specs, strict=True)
        ]
        self._bool_columns = [i for i, s in enumerate(numeric_specs) if s.dtype == "bool"]
        self._numeric_get = operator.itemgetter(*self.numeric) if self.numeric else None
        self._categorical_get = operator.itemgetter(*self.categorical) if self.categorical else None
        self._categories = [
            None if columns[c].categories is None else frozenset(columns[c].categories or [])
            for c in self.categorical
        ]
        self._categorical_nullable = [columns[c].nullable for c in self.categorical]
        self._defaults = dict.fromkeys(self.features)

    # -- JSON records -----------------------------------------------------------------
    def records_to_feeds(self, records: Any, raw: bytes) -> Feeds:
        """Feeds for a list of JSON objects (one per row); raise RequestInvalid if any is bad.

        ``raw`` is the request body the records were parsed from: JSON ``true``/``false``
        anywhere in it sends the rows through the pydantic model (numpy would read a boolean
        as a number).
        """
        if not isinstance(records, list) or not all(type(r) is dict for r in records):
            return self._careful(records)
        if self._bool_columns or b"true" in raw or b"false" in raw:
            return self._careful(records)
        keys = set().union(*records) if records else set()
        if not keys <= self._allowed:
            return self._careful(records)
        if self._required and not all(map(self._required.issubset, records)):
            return self._careful(records)
        if keys != self._allowed or not all(len(r) == len(self._allowed) for r in records):
            rows: list[dict[str, Any]] = [{**self._defaults, **r} for r in records]
        else:
            rows = records
        feeds = self._fast_feeds(rows)
        if feeds is None:
            return self._careful(records)
        return feeds

    def _fast_feeds(self, rows: list[dict[str, Any]]) -> Feeds | None:
        """Vectorized checks and conversion; None when the rows need the careful path."""
        feeds: Feeds = {}
        n = len(rows)
        if self._numeric_get is not None:
            values = list(map(self._numeric_get, rows))
            if len(self.numeric) == 1:
                values = [(v,) for v in values]
            if n <= SMALL_BATCH:
                numeric = self._small_numeric(values)
            else:
                numeric = self._vector_numeric(values, n)
            if numeric is None:
                return None
            feeds[NUMERIC_INPUT] = numeric
        if self._categorical_get is not None:
            values = list(map(self._categorical_get, rows))
            if len(self.categorical) == 1:
                values = [(v,) for v in values]
            for i, (allowed, nullable) in enumerate(
                zip(self._categories, self._categorical_nullable, strict=True)
            ):
                column = {row[i] for row in values}
                if None in column:
                    if not nullable:
                        return None
                    column.discard(None)
                if allowed is not None:
                    if not column <= allowed:
                        return None
                elif not all(type(v) is str for v in column):
                    return None
            array = np.array(values, dtype=object).reshape(n, len(self.categorical))
            array[array == None] = MISSING_CATEGORY  # noqa: E711 - elementwise comparison
            feeds[CATEGORICAL_INPUT] = array.astype(str).astype(object)
        return feeds

    def _vector_numeric(self, values: list[tuple[Any, ...]], n: int) -> np.ndarray | None:
        """Type, null, range and integer checks on the whole numeric block at once."""
        array = np.array(values)
        if array.dtype.kind == "O":  # None (missing) among the numbers
            if not all(type(v) in (float, int) or v is None for v in chain(*values)):
                return None
            array = np.array(values, dtype=np.float64)
        elif array.dtype.kind not in "fi":
            return None
        array = array.reshape(n, len(self.numeric)).astype(np.float64, copy=False)
        missing = np.isnan(array)
        if missing.any() and (missing & ~self._numeric_nullable).any():
            return None
        if not self._in_bounds(array):
            return None
        for i in self._int_columns:
            if not all(type(row[i]) is int or row[i] is None for row in values):
                return None
        return array.astype(np.float32)

    def _small_numeric(self, values: list[tuple[Any, ...]]) -> np.ndarray | None:
        """The same checks one value at a time: cheaper than numpy calls for a few rows."""
        checks = self._column_checks
        for row in values:
            for value, (low, high, nullable, kind) in zip(row, checks, strict=True):
                if value is None:
                    if not nullable:
                        return None
                    continue
                t = type(value)
                if t is not float and t is not int:
                    return None
                if kind == "int" and t is not int:
                    return None
                if value - value != 0 or not low <= value <= high:  # nan, inf, out of range
                    return None
        return np.array(values, dtype=np.float32)

    def _careful(self, records: Any) -> Feeds:
        """Validate through the pydantic model: every problem, with row index and field."""
        try:
            rows = self._rows.validate_python(records)
        except ValidationError as exc:
            raise RequestInvalid(
                [Problem(("body", *e["loc"]), e["msg"], e["type"]) for e in exc.errors()]
            ) from None
        dumped = [row.model_dump() for row in rows]
        feeds = self._fast_feeds(dumped) if dumped else None
        if feeds is None:
            feeds = self._loop_feeds(dumped)
        return feeds

    def _loop_feeds(self, rows: list[dict[str, Any]]) -> Feeds:
        feeds: Feeds = {}
        n = len(rows)
        if self.numeric:
            values = [
                [math.nan if r[c] is None else float(r[c]) for c in self.numeric] for r in rows
            ]
            feeds[NUMERIC_INPUT] = np.array(values, dtype=np.float32).reshape(n, -1)
        if self.categorical:
            cats = [
                [MISSING_CATEGORY if r[c] is None else str(r[c]) for c in self.categorical]
                for r in rows
            ]
            feeds[CATEGORICAL_INPUT] = np.array(cats, dtype=object).reshape(n, -1)
        return feeds

    # -- Open Inference Protocol tensors ---------------------------------------------
    def tensors_to_feeds(
        self, inputs: Any, max_rows: int, strict: bool = True
    ) -> tuple[Feeds, int]:
        """Feeds from v2 ``inputs``: either the model's own tensors (``numeric`` FP32 [N, k],
        ``categorical`` BYTES [N, m]) or one tensor per feature column, named after it.

        ``strict`` checks the type of every number one by one; without it, a column numpy
        reads as all numbers is taken as a whole (pass False only when the body holds no JSON
        booleans, which numpy would read as numbers).
        """
        if not isinstance(inputs, list) or not inputs:
            raise RequestInvalid(
                [Problem(("body", "inputs"), "expected a non-empty list of tensors", "type")]
            )
        problems: list[Problem] = []
        named: dict[str, tuple[int, dict[str, Any]]] = {}
        for i, tensor in enumerate(inputs):
            if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
                problems.append(
                    Problem(("body", "inputs", i), "expected an object with a name", "type")
                )
                continue
            named[tensor["name"]] = (i, tensor)
        if problems:
            raise RequestInvalid(problems)
        grouped = set(named) & {NUMERIC_INPUT, CATEGORICAL_INPUT}
        if grouped:
            return self._grouped_tensors(named, max_rows, strict)
        return self._column_tensors(named, max_rows, strict)

    def _grouped_tensors(
        self, named: dict[str, tuple[int, dict[str, Any]]], max_rows: int, strict: bool
    ) -> tuple[Feeds, int]:
        problems: list[Problem] = []
        expected = {NUMERIC_INPUT: self.numeric, CATEGORICAL_INPUT: self.categorical}
        wanted = [k for k, cols in expected.items() if cols]
        for name in named:
            if name not in wanted:
                problems.append(
                    Problem(
                        ("body", "inputs", named[name][0], "name"),
                        f"unknown input {name!r}; this model takes {wanted}",
                        "value_error",
                    )
                )
        for name in wanted:
            if name not in named:
                problems.append(
                    Problem(("body", "inputs"), f"input {name!r} is missing", "missing")
                )
        columns: dict[str, list[Any]] = {}
        numeric: np.ndarray | None = None
        rows = None
        for name in (n for n in wanted if n in named):
            index, tensor = named[name]
            width = len(expected[name])
            data, n = self._tensor_data(index, tensor, width, max_rows, problems)
            if data is None:
                continue
            if not _same_rows(index, n, rows, problems):
                continue
            rows = n
            if name == NUMERIC_INPUT and not strict:
                numeric = self._fast_matrix(data, n)
                if numeric is not None:
                    continue
            for j, column in enumerate(expected[name]):
                columns[column] = data[j::width]
        if problems:
            raise RequestInvalid(problems)
        assert rows is not None
        locate = {
            c: (named[g][0], j, len(cols))
            for g, cols in expected.items()
            if cols
            for j, c in enumerate(cols)
        }
        return self._columns_to_feeds(columns, rows, locate, strict, numeric), rows

    def _fast_matrix(self, data: list[Any], rows: int) -> np.ndarray | None:
        """The numeric tensor as one array when every value is a number within its bounds."""
        if self._int_columns or self._bool_columns:
            return None
        array = np.array(data)
        if array.dtype.kind not in "fi":
            return None
        array = array.reshape(rows, len(self.numeric)).astype(np.float64, copy=False)
        return array.astype(np.float32) if self._in_bounds(array) else None

    def _in_bounds(self, array: np.ndarray) -> bool:
        """Every value finite (or missing, nan) and within its column's declared range."""
        with np.errstate(invalid="ignore"):
            return not (
                np.isinf(array).any() or (array < self._low).any() or (array > self._high).any()
            )

    def _column_tensors(
        self, named: dict[str, tuple[int, dict[str, Any]]], max_rows: int, strict: bool
    ) -> tuple[Feeds, int]:
        problems: list[Problem] = []
        for name, (index, _) in named.items():
            if name not in self.features:
                problems.append(
                    Problem(
                        ("body", "inputs", index, "name"),
                        f"unknown input {name!r}: not a feature of the schema, nor "
                        f"{NUMERIC_INPUT!r}/{CATEGORICAL_INPUT!r}",
                        "extra_forbidden",
                    )
                )
        for column in self._required:
            if column not in named:
                problems.append(Problem(("body", "inputs", column), "Field required", "missing"))
        columns: dict[str, list[Any]] = {}
        rows = None
        for name, (index, tensor) in named.items():
            if name not in self.features:
                continue
            data, n = self._tensor_data(index, tensor, 1, max_rows, problems)
            if data is None:
                continue
            if not _same_rows(index, n, rows, problems):
                continue
            rows = n
            columns[name] = data
        if problems:
            raise RequestInvalid(problems)
        assert rows is not None
        for column in self.features:
            columns.setdefault(column, [None] * rows)
        locate = {c: (named[c][0], 0, 1) for c in named if c in self.features}
        return self._columns_to_feeds(columns, rows, locate, strict, None), rows

    @staticmethod
    def _tensor_data(
        index: int, tensor: dict[str, Any], width: int, max_rows: int, problems: list[Problem]
    ) -> tuple[list[Any] | None, int]:
        shape = tensor.get("shape")
        data = tensor.get("data")
        loc = ("body", "inputs", index)
        if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
            problems.append(Problem((*loc, "shape"), "expected a list of sizes", "type"))
            return None, 0
        if not isinstance(data, list):
            problems.append(Problem((*loc, "data"), "expected a list", "type"))
            return None, 0
        if data and isinstance(data[0], list):
            data = list(chain.from_iterable(data))
        rows = shape[0] if shape else 0
        size = math.prod(shape)
        if len(shape) > 2 or size != rows * width:
            problems.append(
                Problem((*loc, "shape"), f"expected [rows, {width}] or [rows]", "value_error")
            )
            return None, 0
        if len(data) != size:
            problems.append(
                Problem((*loc, "data"), f"has {len(data)} values; shape says {size}", "value_error")
            )
            return None, 0
        if rows < 1 or rows > max_rows:
            problems.append(
                Problem((*loc, "shape"), f"rows must be 1..{max_rows}; got {rows}", "value_error")
            )
            return None, 0
        return data, rows

    def _columns_to_feeds(
        self,
        columns: dict[str, list[Any]],
        rows: int,
        locate: dict[str, tuple[int, int, int]],
        strict: bool,
        numeric: np.ndarray | None,
    ) -> Feeds:
        """Check whole columns against the schema; report each bad value as inputs[i].data[j]."""
        problems: list[Problem] = []

        def bad(column: str, row: int, msg: str, kind: str) -> None:
            index, offset, width = locate.get(column, (0, 0, 1))
            loc = ("body", "inputs", index, "data", row * width + offset)
            problems.append(Problem(loc, msg, kind, row=row, field=column))

        feeds: Feeds = {}
        if numeric is not None:
            feeds[NUMERIC_INPUT] = numeric
        elif self.numeric:
            array = np.empty((rows, len(self.numeric)), dtype=np.float64)
            for j, column in enumerate(self.numeric):
                spec = self.features[column]
                values = columns[column]
                parsed = np.array(values)
                if (
                    strict
                    or parsed.dtype.kind not in "fi"
                    or (spec.dtype in ("int", "bool") and parsed.dtype.kind != "i")
                ):
                    for r, v in enumerate(values):
                        ok_type = (
                            type(v) is int
                            if spec.dtype == "int"
                            else type(v) is bool
                            if spec.dtype == "bool"
                            else type(v) in (float, int)
                        )
                        if v is None:
                            if not spec.nullable:
                                bad(column, r, "Field required (null)", "missing")
                        elif not ok_type:
                            bad(column, r, f"Input should be a valid {spec.dtype}", "type")
                    parsed = np.array(
                        [v if type(v) in (float, int, bool) else None for v in values],
                        dtype=np.float64,
                    )
                array[:, j] = parsed
                with np.errstate(invalid="ignore"):
                    out = np.isinf(parsed) | (parsed < self._low[j]) | (parsed > self._high[j])
                for r in np.flatnonzero(out):
                    bad(
                        column,
                        int(r),
                        f"Input should be a finite number in [{self._low[j]}, {self._high[j]}]",
                        "range",
                    )
            feeds[NUMERIC_INPUT] = array.astype(np.float32)
        if self.categorical:
            cats = np.empty((rows, len(self.categorical)), dtype=object)
            for j, column in enumerate(self.categorical):
                spec = self.features[column]
                values = columns[column]
                for r, v in enumerate(values):
                    if v is None:
                        if not spec.nullable:
                            bad(column, r, "Field required (null)", "missing")
                    elif type(v) is not str:
                        bad(column, r, "Input should be a valid string", "type")
                    elif spec.categories is not None and v not in spec.categories:
                        bad(column, r, f"Input should be one of {spec.categories}", "literal_error")
                cats[:, j] = [MISSING_CATEGORY if v is None else str(v) for v in values]
            feeds[CATEGORICAL_INPUT] = cats
        if problems:
            raise RequestInvalid(problems)
        return feeds
