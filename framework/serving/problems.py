"""How a refused request is described: one JSON error shape for every route and status.

Every 4xx and 5xx body is ``{"error": "...", "detail": [...]}``; ``detail`` lists, for a
422, each problem with its location (``loc``), message, kind and, for rows, ``row`` and
``field``. The OpenAPI document declares this shape once (``ERROR_SCHEMA``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson


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
    """The request broke the request rules; ``problems`` lists every problem found (422)."""

    def __init__(self, problems: list[Problem]):
        super().__init__(f"{len(problems)} problem(s) in the request")
        self.problems = problems

    def summary(self, model: str, version: int) -> str:
        """One sentence: the first problem and how many more (a failed queued task's reason)."""
        first = self.problems[0]
        where = ".".join(str(p) for p in first.loc)
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return (
            f"the body does not match the schema of {model} v{version}: {where}: {first.msg}{more}"
        )

    def detail(self, most: int = 50) -> list[dict[str, Any]]:
        return [p.as_dict() for p in self.problems[:most]]


class HttpError(Exception):
    """A refusal with its status, message, optional field path and headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        loc: tuple[str | int, ...] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.loc = loc
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.loc is not None:
            out["detail"] = [{"loc": list(self.loc), "msg": self.message, "type": "value_error"}]
        return out


def dumps(body: Any) -> bytes:
    """JSON bytes of a response; text a client sent (a key, a path) may hold lone surrogates,
    which are written escaped instead of failing the response."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body, ensure_ascii=True, default=str).encode()


def error_body(message: str, problems: list[Problem] | None = None) -> bytes:
    body: dict[str, Any] = {"error": message}
    if problems:
        body["detail"] = [p.as_dict() for p in problems]
    return dumps(body)


def invalid(loc: tuple[str | int, ...], msg: str, kind: str = "value_error") -> RequestInvalid:
    """A 422 with one problem."""
    return RequestInvalid([Problem(loc, msg, kind)])


#: The JSON schema of every error body, declared once in the OpenAPI document.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What went wrong, in a sentence."},
        "detail": {
            "type": "array",
            "description": "Each problem, with where it is (422).",
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    },
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                    "row": {"type": "integer"},
                    "field": {"type": "string"},
                },
            },
        },
    },
}
