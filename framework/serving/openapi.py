"""The OpenAPI document, built from the route table and the request rules.

Every operation declares each status it can answer, all with the one error schema; request
bodies are the rules' own JSON Schema, so the document and the checks cannot disagree.
"""

from __future__ import annotations

from typing import Any

import orjson

from framework.export.signature import Signature
from framework.serving.auth import PUBLIC
from framework.serving.problems import ERROR_SCHEMA
from framework.serving.routes import (
    COMMON,
    EXPLAIN,
    GUARDED,
    LABELS,
    MOVE,
    RECORDS,
    ROUTES,
    TENSORS,
)
from framework.serving.rules import RequestRules
from framework.serving.tensors import DATATYPES, output_names

_REASONS = {
    400: "The body is not JSON, or a binary header does not fit it.",
    401: "No API key, or not a valid one.",
    403: "The key lacks the role this route needs.",
    404: "No such model, version or route.",
    405: "The route does not take this method (see Allow).",
    409: "Monitoring or asynchronous inference is off, the registry refused the move, or the "
    "version has no explainer.",
    413: "The body is over serve.max_body_bytes.",
    422: "The request breaks the request rules; every problem is named by its field.",
    429: "The key passed its rate limit (see Retry-After).",
    500: "The model version failed to predict (a server error, counted against it).",
    503: "The replicas are full, the monitor or the message broker is away, or the task queue "
    "is full (see Retry-After).",
}
_OBJECT = {"type": "object"}


def _tensor_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string", "enum": sorted(DATATYPES)},
            "shape": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0},
                "minItems": 1,
                "maxItems": 2,
            },
            "data": {"type": "array", "description": "Row-major values, flat or nested by row."},
            "parameters": {
                "type": "object",
                "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
            },
        },
    }


def _records(max_rows: int) -> dict[str, Any]:
    return {
        "oneOf": [
            {"$ref": "#/components/schemas/Row"},
            {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Row"},
                "minItems": 1,
                "maxItems": max_rows,
            },
        ]
    }


def _bodies(
    rules: RequestRules, max_rows: int, max_labels: int, max_explain: int
) -> dict[str, dict[str, Any]]:
    signature: Signature = rules.signature
    label: dict[str, Any] = (
        {"type": "string", "enum": list(signature.classes)}
        if signature.classification
        else {"type": "number"}
    )
    item = {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "label"],
        "properties": {"id": {"type": "string", "minLength": 1, "maxLength": 128}, "label": label},
    }
    outputs = {"type": "string", "enum": output_names(signature)}
    return {
        RECORDS: _records(max_rows),
        EXPLAIN: _records(max_explain),
        TENSORS: {
            "type": "object",
            "additionalProperties": False,
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string", "maxLength": 128},
                "parameters": {
                    "type": "object",
                    "properties": {"binary_data_output": {"type": "boolean"}},
                },
                "inputs": {"type": "array", "minItems": 1, "items": _tensor_schema()},
                "outputs": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name"],
                        "properties": {
                            "name": outputs,
                            "parameters": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {"binary_data": {"type": "boolean"}},
                            },
                        },
                    },
                },
            },
        },
        LABELS: {
            "oneOf": [
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["labels"],
                    "properties": {
                        "labels": {
                            "type": "array",
                            "items": item,
                            "minItems": 1,
                            "maxItems": max_labels,
                        }
                    },
                },
                item,
            ]
        },
        MOVE: {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "version": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
                "reason": {"type": "string", "maxLength": 1000},
            },
        },
    }


def document(
    title: str,
    version: str,
    rules: RequestRules,
    header: str,
    max_rows: int,
    max_labels: int,
    max_explain: int = 32,
) -> bytes:
    """The whole OpenAPI 3.1 document, serialized once at startup."""
    bodies = _bodies(rules, max_rows, max_labels, max_explain)
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        statuses = {*route.statuses, *COMMON, *(GUARDED if route.role != PUBLIC else ())}
        if route.body != "none":
            statuses |= {400, 422}
        responses: dict[str, Any] = {
            str(route.ok): {
                "description": "Accepted: queued" if route.ok == 202 else "OK",
                "content": _ok(route.path, route.body),
            }
        }
        if route.ok == 202:
            responses["202"]["headers"] = {"Location": {"schema": {"type": "string"}}}
        for status in sorted(statuses):
            responses[str(status)] = {"description": _REASONS[status], "content": error}
            if status in (429, 503):
                responses[str(status)]["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
            if status == 405:
                responses[str(status)]["headers"] = {"Allow": {"schema": {"type": "string"}}}
        operation: dict[str, Any] = {
            "operationId": route.name,
            "summary": route.summary,
            "tags": [route.tag],
            "responses": responses,
            "description": "Public: no API key needed."
            if route.role == PUBLIC
            else f"Needs an API key with the role `{route.role}`.",
        }
        params = [p.strip("{}") for p in route.path.split("/") if p.startswith("{")]
        if params:
            operation["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
        if route.role != PUBLIC:
            operation["security"] = [{"ApiKey": []}, {"Bearer": []}]
        if route.body != "none":
            content: dict[str, Any] = {"application/json": {"schema": bodies[route.body]}}
            if route.body == TENSORS:
                # the binary data extension: a JSON header, then the tensors' bytes
                content["application/octet-stream"] = {
                    "schema": {"type": "string", "format": "binary"}
                }
            operation["requestBody"] = {"required": route.body != MOVE, "content": content}
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "Requests are checked against the data schema. Send the API key in "
            f"the `{header}` header.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Row": rules.row_schema(), "Error": ERROR_SCHEMA},
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": header},
                "Bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }
    return orjson.dumps(doc)


def _ok(path: str, body: str) -> dict[str, Any]:
    if body == TENSORS:
        return {
            "application/json": {"schema": _OBJECT},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        }
    if path == "/docs":
        return {"text/html": {"schema": {"type": "string"}}}
    return {"application/json": {"schema": _OBJECT}}
