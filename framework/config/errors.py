"""Turn pydantic validation errors into one plain line per problem, with its dotted path."""

from __future__ import annotations

import re
import types
import typing
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from framework.registry import closest

_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}
_BOUNDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated and Optional wrappers from an annotation."""
    while True:
        origin = get_origin(annotation)
        if origin is typing.Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) == 1:
                annotation = args[0]
            else:
                return annotation
        else:
            return annotation


def _tag_of(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    args = get_args(field.annotation) if field is not None else ()
    return args[0] if len(args) == 1 and isinstance(args[0], str) else None


def walk(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[str, Any]:
    """Map a pydantic ``loc`` to a dotted config path and the annotation found there.

    Discriminated unions put the chosen tag into ``loc``; it is not part of the user's path.
    """
    parts: list[str] = []
    annotation: Any = root
    for item in loc:
        annotation = _unwrap(annotation)
        origin = get_origin(annotation)
        if origin in (Union, types.UnionType):
            members = {
                _tag_of(m): m
                for m in get_args(annotation)
                if isinstance(m, type) and issubclass(m, BaseModel)
            }
            # the chosen member's name is in ``loc`` but not in the user's path
            annotation = members.get(item)
            continue
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(item))
            annotation = field.annotation if field is not None else None
        elif origin is dict:
            annotation = get_args(annotation)[1]
        elif origin is list:
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
            annotation = get_args(annotation)[0]
            continue
        else:
            annotation = None
        parts.append(str(item))
    return ".".join(parts) or "(root)", _unwrap(annotation)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _suggest(name: str, options: list[str]) -> str:
    suggestion = closest(name, options)
    return f"; did you mean {suggestion!r}?" if suggestion else ""


def _quoted(text: str) -> list[str]:
    return re.findall(r"'([^']*)'", text)


def describe(error: dict[str, Any], root: type[BaseModel]) -> str:
    """One line for one pydantic error: path, what was given, what was expected."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    loc = tuple(error["loc"])
    path, _ = walk(root, loc)
    given = error.get("input")
    if kind == "missing":
        return f"{path}: missing required value"
    if kind == "extra_forbidden":
        _parent_path, parent = walk(root, loc[:-1])
        key = str(loc[-1])
        line = f"{path}: unknown key"
        if isinstance(parent, type) and issubclass(parent, BaseModel):
            valid = sorted(parent.model_fields)
            line += f"; valid keys here: {', '.join(valid)}" + _suggest(key, valid)
        return line
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = _quoted(str(ctx.get("expected_tags", "")))
        tag = str(ctx.get("tag", ""))
        if kind == "union_tag_not_found":
            return f"{path}: missing `type`; expected one of: {', '.join(tags)}"
        return f"{path}.type: unknown plugin {tag!r}; valid: {', '.join(tags)}" + _suggest(
            tag, tags
        )
    if kind in ("literal_error", "enum"):
        options = _quoted(str(ctx.get("expected", "")))
        expected = f"expected one of: {', '.join(options)}"
        return f"{path}: got {_short(given)}; {expected}" + _suggest(str(given), options)
    if kind in _BOUNDS:
        key, op = _BOUNDS[kind]
        _, annotation = walk(root, loc)
        what = "an integer" if annotation is int else "a number"
        bound = ctx.get(key)
        shown = f"{bound:g}" if isinstance(bound, float) else bound
        return f"{path}: got {_short(given)}; expected {what} {op} {shown}"
    if kind in _EXPECTED:
        return f"{path}: got {_short(given)}; expected {_EXPECTED[kind]}"
    if kind in ("value_error", "assertion_error"):
        message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        # cross-field checks at the root name their own paths
        return message if path == "(root)" else f"{path}: {message}"
    return f"{path}: got {_short(given)}; {error['msg']}"


def problems_of(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """Every problem of a validation error, one line each, in a stable order."""
    lines = [describe(dict(e), root) for e in exc.errors(include_url=False)]
    return list(dict.fromkeys(lines))
