"""Request bodies in and responses out: v1 records, feedback labels and admin moves.

Open Inference Protocol tensors (v2) have their own module (``tensors``); every value in any
body is judged by the same ``RequestRules``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from framework.export.signature import Signature
from framework.monitoring.protocol import Label
from framework.serving.problems import HttpError, Problem, RequestInvalid, invalid
from framework.serving.rules import Feeds, RequestRules


def parse_json(raw: bytes, required: bool = True) -> Any:
    """The JSON body; 400 when it is absent (and required) or not JSON.

    What orjson refuses but Python's json reads -- ``NaN`` (a missing value, as Python's json
    and tritonclient write it), ``Infinity``, integers past float64 -- is read by the latter,
    so that the request rules answer it by field instead of refusing the whole body.
    """
    if not raw.strip():
        if required:
            raise HttpError(400, "the body is empty; expected JSON")
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        error = exc
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise HttpError(400, f"the body is not valid JSON: {error}") from None


def records_of(body: Any, max_rows: int) -> list[Any]:
    """The rows of a v1 body: one JSON object, or a list of 1 to ``max_rows`` of them."""
    if isinstance(body, dict):
        return [body]
    if not isinstance(body, list):
        raise invalid(("body",), "expected a JSON object (one row) or a list of them", "type")
    if not 1 <= len(body) <= max_rows:
        kind = "too_long" if body else "too_short"
        raise invalid(("body",), f"expected 1 to {max_rows} rows; got {len(body)}", kind)
    return body


def decode_records(rules: RequestRules, raw: bytes, max_rows: int) -> tuple[Feeds, int]:
    """Feeds and row count of a v1 predict body."""
    records = records_of(parse_json(raw), max_rows)
    return rules.records(records, raw), len(records)


@dataclass(frozen=True)
class Answer:
    """What a version predicted for one request."""

    version: int
    request_id: str
    labels: np.ndarray
    scores: np.ndarray | None
    #: Per row: the in-distribution score and whether the detector flags it (None: no check).
    in_distribution: np.ndarray | None = None
    out_of_distribution: np.ndarray | None = None


def encode_predictions(
    model: str, answer: Answer, signature: Signature, correlation_id: str | None
) -> bytes:
    """The v1 predict response: one prediction per row, each with its own id."""
    rid = answer.request_id
    labels = answer.labels.tolist()
    if signature.classification:
        assert answer.scores is not None
        probabilities = np.round(answer.scores.astype(np.float64), 6).tolist()
        classes = list(signature.classes)
        predictions = [
            {
                "id": f"{rid}-{i}",
                "label": label,
                "probabilities": dict(zip(classes, p, strict=True)),
            }
            for i, (label, p) in enumerate(zip(labels, probabilities, strict=True))
        ]
    else:
        predictions = [{"id": f"{rid}-{i}", "value": v} for i, v in enumerate(labels)]
    if answer.in_distribution is not None and answer.out_of_distribution is not None:
        scores = np.round(answer.in_distribution.astype(np.float64), 4).tolist()
        for prediction, score, out in zip(
            predictions, scores, answer.out_of_distribution.tolist(), strict=True
        ):
            prediction["in_distribution"] = score
            prediction["out_of_distribution"] = out
    body: dict[str, Any] = {
        "model": model,
        "version": answer.version,
        "request_id": rid,
        "predictions": predictions,
    }
    if correlation_id is not None:
        body["correlation_id"] = correlation_id
    return orjson.dumps(body)


def decode_labels(raw: bytes, signature: Signature, max_labels: int) -> list[Label]:
    """``/v1/feedback`` body: ``{"labels": [{"id", "label"}, ...]}`` or one such object."""
    body = parse_json(raw)
    if isinstance(body, dict) and "labels" in body:
        if set(body) != {"labels"}:
            extra = sorted(set(body) - {"labels"})[0]
            raise invalid(("body", extra), "Extra inputs are not permitted", "extra_forbidden")
        items, base = body["labels"], ("body", "labels")
    elif isinstance(body, dict):
        items, base = [body], ("body",)
    else:
        raise invalid(("body",), 'expected {"labels": [{"id", "label"}, ...]}', "type")
    if not isinstance(items, list) or not 1 <= len(items) <= max_labels:
        raise invalid(base, f"expected 1 to {max_labels} {{id, label}} objects", "type")
    problems: list[Problem] = []
    labels: list[Label] = []
    allowed = set(signature.classes)
    for i, item in enumerate(items):
        where = (*base, i) if base[-1] == "labels" else base
        if not isinstance(item, dict) or set(item) != {"id", "label"}:
            problems.append(Problem(where, "expected an object with `id` and `label` only", "type"))
            continue
        rid, value = item["id"], item["label"]
        if not isinstance(rid, str) or not 1 <= len(rid) <= 128:
            problems.append(Problem((*where, "id"), "expected a prediction id", "string_type"))
        elif signature.classification:
            if not isinstance(value, str) or value not in allowed:
                message = f"expected one of {sorted(allowed)}"
                problems.append(Problem((*where, "label"), message, "literal_error"))
            else:
                labels.append(Label(rid, value))
        elif isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(Problem((*where, "label"), "expected a finite number", "float_type"))
        elif not math.isfinite(value) or abs(value) > 1e300:
            problems.append(Problem((*where, "label"), "expected a finite number", "finite_number"))
        else:
            labels.append(Label(rid, float(value)))
    if problems:
        raise RequestInvalid(problems)
    return labels


@dataclass(frozen=True)
class MoveRequest:
    """An admin promote/rollback body: ``{version?: int, reason?: str}`` (may be empty)."""

    version: int | None
    reason: str | None


def decode_move(raw: bytes) -> MoveRequest:
    body = parse_json(raw, required=False)
    if body is None:
        return MoveRequest(None, None)
    if not isinstance(body, dict):
        raise invalid(("body",), "expected {version?: int, reason?: str}", "type")
    problems = [
        Problem(("body", k), "Extra inputs are not permitted", "extra_forbidden")
        for k in body
        if k not in ("version", "reason")
    ]
    version, reason = body.get("version"), body.get("reason")
    if version is not None and (type(version) is not int or not 1 <= version < 2**31):
        problems.append(Problem(("body", "version"), "expected a version number", "int_type"))
    if reason is not None and (not isinstance(reason, str) or len(reason) > 1000):
        problems.append(
            Problem(("body", "reason"), "expected text of at most 1000 characters", "string_type")
        )
    if problems:
        raise RequestInvalid(problems)
    return MoveRequest(version, reason)
