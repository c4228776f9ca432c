"""One feature column's rule: what a single value may be, and the message when it is not.

``ColumnRule.check`` is the source of every verdict and message of the request rules; the
compiled (numpy) paths in ``rules`` only ever accept what it accepts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from framework.config.data import ColumnSpec
from framework.export.signature import MISSING_CATEGORY

#: Largest finite float32: a bigger number would reach the model as infinity.
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: (row, message, kind) of one bad value in a column.
Verdict = tuple[int, str, str]
_NUMBER = (int, float)


@dataclass(frozen=True)
class ColumnRule:
    """What one feature column accepts."""

    name: str
    kind: str  # float | int | bool | category | string
    nullable: bool
    low: float
    high: float
    categories: frozenset[str] | None
    ordered_categories: tuple[str, ...] | None
    description: str
    numeric: bool  # fed through the numeric input (float, int, bool)
    number: bool  # float or int

    @classmethod
    def of(cls, name: str, spec: ColumnSpec) -> ColumnRule:
        low = -FLOAT32_MAX if spec.min is None else max(spec.min, -FLOAT32_MAX)
        high = FLOAT32_MAX if spec.max is None else min(spec.max, FLOAT32_MAX)
        categories = tuple(spec.categories) if spec.categories is not None else None
        return cls(
            name=name,
            kind=spec.dtype,
            nullable=spec.nullable,
            low=float(low),
            high=float(high),
            categories=frozenset(categories) if categories is not None else None,
            ordered_categories=categories,
            description=spec.description,
            numeric=spec.dtype in ("float", "int", "bool"),
            number=spec.dtype in ("float", "int"),
        )

    def check(self, value: Any, tensor: bool = False) -> tuple[Any, str | None, str]:
        """``(feed value, None, "")`` when ``value`` is acceptable, else ``(None, message,
        kind)``. ``tensor``: the value came from a numeric Open Inference Protocol tensor,
        where a boolean column is sent as 0 or 1."""
        t = type(value)
        # The common case first: a number within range (the bounds lie within float32).
        if (
            (t is float or t is int)
            and self.number
            and self.low <= value <= self.high
            and (t is int or self.kind == "float" or value.is_integer())
        ):
            return float(value), None, ""
        if value is None or (t is float and math.isnan(value)):
            if not self.nullable:
                return None, "Field required (it may not be null or NaN)", "missing"
            return (math.nan if self.numeric else MISSING_CATEGORY), None, ""
        if self.kind == "bool":
            if t is bool:
                return float(value), None, ""
            if tensor and t in _NUMBER and value in (0, 1):
                return float(value), None, ""
            return None, "Input should be a valid boolean", "bool_type"
        if self.numeric:
            if t not in _NUMBER:
                kind = "int_type" if self.kind == "int" else "float_type"
                return (
                    None,
                    f"Input should be a valid {'integer' if self.kind == 'int' else 'number'}",
                    kind,
                )
            if t is float and math.isinf(value):
                return None, "Input should be a finite number", "finite_number"
            if abs(value) > FLOAT32_MAX:
                return (
                    None,
                    f"Input should fit in float32 (|x| <= {FLOAT32_MAX:.6g})",
                    "float32_overflow",
                )
            if self.kind == "int" and t is float and not value.is_integer():
                return None, "Input should be a valid integer", "int_type"
            if value < self.low:
                return (
                    None,
                    f"Input should be greater than or equal to {self.low:g}",
                    "greater_than_equal",
                )
            if value > self.high:
                return (
                    None,
                    f"Input should be less than or equal to {self.high:g}",
                    "less_than_equal",
                )
            return float(value), None, ""
        if t is not str:
            return None, "Input should be a valid string", "string_type"
        if self.categories is not None and value not in self.categories:
            allowed = ", ".join(repr(c) for c in self.ordered_categories or ())
            return None, f"Input should be one of {allowed}", "literal_error"
        if value == MISSING_CATEGORY and not self.nullable:
            return None, "Field required (it may not be empty)", "missing"
        return value, None, ""

    def json_schema(self) -> dict[str, Any]:
        """The rule as JSON Schema, for the OpenAPI document."""
        schema: dict[str, Any]
        if self.kind in ("float", "int"):
            schema = {
                "type": "number" if self.kind == "float" else "integer",
                "minimum": self.low,
                "maximum": self.high,
            }
        elif self.kind == "bool":
            schema = {"type": "boolean"}
        elif self.ordered_categories is not None:
            schema = {"type": "string", "enum": list(self.ordered_categories)}
        else:
            schema = {"type": "string", "minLength": 0 if self.nullable else 1}
        schema["description"] = self.description or f"{self.kind} feature"
        if self.nullable:
            return {"anyOf": [schema, {"type": "null"}], "description": schema["description"]}
        return schema


def check_values(
    rule: ColumnRule, values: Sequence[Any], tensor: bool
) -> tuple[list[Any], list[Verdict]]:
    """The scalar rule over a column: feed values and every bad value's verdict."""
    out: list[Any] = []
    bad: list[Verdict] = []
    for row, value in enumerate(values):
        converted, message, kind = rule.check(value, tensor)
        if message is not None:
            bad.append((row, message, kind))
        out.append(converted)
    return out, bad
