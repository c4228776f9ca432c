"""The route table: method, path, the role it needs, its handler, and what it may answer.

The replica matches a request against this table before anything else: a path in no route
gets 404, a known path with another method 405 (with ``Allow``). The OpenAPI document is
built from the same table (``openapi``), so it cannot miss a route or a status.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from framework.serving.auth import PUBLIC
from framework.serving.handlers import Call, Handlers, Reply
from framework.serving.problems import HttpError

Handler = Callable[[Handlers, Call], Awaitable[Reply]]

#: Body kinds: none, or what the route reads (the OpenAPI document names its schema).
NO_BODY, RECORDS, TENSORS, LABELS, MOVE = "none", "records", "tensors", "labels", "move"
EXPLAIN = "explain"  # records, at most serve.max_rows_per_explain of them


@dataclass(frozen=True)
class Route:
    """One HTTP route."""

    method: str
    path: str
    role: str
    handler: Handler
    tag: str
    summary: str
    body: str = NO_BODY
    #: Statuses this route may answer besides its success and those every route may answer.
    statuses: tuple[int, ...] = ()
    #: Its success status.
    ok: int = 200

    @property
    def name(self) -> str:
        return self.handler.__name__


H = Handlers
_PREDICT = (400, 404, 413, 422, 500)
_ADMIN = (409, 503)

ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", PUBLIC, H.healthz, "health", "Liveness of the replica."),
    Route(
        "GET",
        "/readyz",
        PUBLIC,
        H.readyz,
        "health",
        "Readiness: the model is loaded and its files, manifest and audit log verify (503: not).",
    ),
    Route("GET", "/v2/health/live", PUBLIC, H.v2_live, "v2", "Open Inference Protocol liveness."),
    Route(
        "GET", "/v2/health/ready", PUBLIC, H.v2_ready, "v2", "Open Inference Protocol readiness."
    ),
    Route(
        "GET",
        "/v2/models/{name}/ready",
        PUBLIC,
        H.v2_model_ready,
        "v2",
        "The model is ready.",
        statuses=(404,),
    ),
    Route(
        "GET",
        "/v2/models/{name}/versions/{version}/ready",
        PUBLIC,
        H.v2_version_ready,
        "v2",
        "A served version is ready.",
        statuses=(404,),
    ),
    Route("GET", "/openapi.json", PUBLIC, H.openapi, "docs", "This OpenAPI document."),
    Route("GET", "/docs", PUBLIC, H.docs, "docs", "Interactive documentation."),
    Route(
        "GET",
        "/v1/models",
        "predict",
        H.list_models,
        "models",
        "The version served, its aliases and routing.",
    ),
    Route("GET", "/v2", "predict", H.v2_server, "v2", "Server metadata and protocol extensions."),
    Route(
        "GET",
        "/v2/models/{name}",
        "predict",
        H.v2_model,
        "v2",
        "Model metadata: inputs and outputs.",
        statuses=(404,),
    ),
    Route(
        "GET",
        "/v2/models/{name}/versions/{version}",
        "predict",
        H.v2_model_version,
        "v2",
        "Metadata of a served version.",
        statuses=(404,),
    ),
    Route(
        "POST",
        "/v1/models/{name}/predict",
        "predict",
        H.predict,
        "models",
        "Predict JSON rows checked against the data schema.",
        RECORDS,
        _PREDICT,
    ),
    Route(
        "POST",
        "/v1/models/{name}/predict_async",
        "predict",
        H.predict_async,
        "async",
        "Queue JSON rows for prediction (checked like predict); 202 with the task id.",
        RECORDS,
        (400, 404, 409, 413, 422),
        ok=202,
    ),
    Route(
        "GET",
        "/v1/tasks/{id}",
        "predict",
        H.task_status,
        "async",
        "A queued task: pending, done (the predictions as predict gives them) or failed; "
        "404: unknown (never queued, or its result expired).",
        statuses=(404, 409),
    ),
    Route(
        "POST",
        "/v1/models/{name}/explain",
        "predict",
        H.explain,
        "models",
        "Explain JSON rows: per output, each column's attribution, the base value and the output.",
        EXPLAIN,
        (*_PREDICT, 409),
    ),
    Route(
        "POST",
        "/v2/models/{name}/infer",
        "predict",
        H.v2_infer,
        "v2",
        "Open Inference Protocol inference (JSON or binary tensors).",
        TENSORS,
        _PREDICT,
    ),
    Route(
        "POST",
        "/v2/models/{name}/versions/{version}/infer",
        "predict",
        H.v2_infer_version,
        "v2",
        "Inference by one served version.",
        TENSORS,
        _PREDICT,
    ),
    Route(
        "POST",
        "/v1/feedback",
        "feedback",
        H.feedback,
        "monitoring",
        "Ground-truth labels for earlier prediction ids (the first label per id wins).",
        LABELS,
        (400, 413, 422, *_ADMIN),
    ),
    Route(
        "GET", "/v1/admin/config", "admin", H.admin_config, "admin", "Serving and security config."
    ),
    Route(
        "GET",
        "/v1/admin/monitor",
        "admin",
        H.admin_monitor,
        "admin",
        "Drift, live quality, rollout.",
        statuses=_ADMIN,
    ),
    Route(
        "POST",
        "/v1/admin/promote",
        "admin",
        H.admin_promote,
        "admin",
        "Make the challenger (or a version) champion now.",
        MOVE,
        (400, 413, 422, *_ADMIN),
    ),
    Route(
        "POST",
        "/v1/admin/rollback",
        "admin",
        H.admin_rollback,
        "admin",
        "Drop the challenger, or restore the previous champion (or a version).",
        MOVE,
        (400, 413, 422, *_ADMIN),
    ),
)

#: Statuses every route may answer: wrong method, body over the limit, the replicas full.
COMMON = (405, 413, 503)
#: Statuses every route with a role may answer: no or a bad key, the wrong role, rate limit.
GUARDED = (401, 403, 429)


def _pattern(path: str) -> re.Pattern[str]:
    regex = re.sub(
        r"\{(\w+)\}", r"(?P<\1>[^/]+)", re.escape(path).replace(r"\{", "{").replace(r"\}", "}")
    )
    return re.compile(regex)


@dataclass(frozen=True)
class Match:
    route: Route
    params: dict[str, str]


class RouteTable:
    """Finds the route of a request, or says why there is none (404, 405)."""

    def __init__(self, routes: tuple[Route, ...] = ROUTES):
        self.routes = [(route, _pattern(route.path)) for route in routes]

    def match(self, method: str, path: str) -> Match:
        allowed: list[str] = []
        for route, pattern in self.routes:
            found = pattern.fullmatch(path)
            if found is None:
                continue
            if route.method == method or (method == "HEAD" and route.method == "GET"):
                return Match(route, found.groupdict())
            allowed.append(route.method)
        if allowed:
            methods = sorted({*allowed, *(["HEAD"] if "GET" in allowed else [])})
            raise HttpError(
                405,
                f"{method[:16]} is not allowed on {path[:200]}; use {', '.join(methods)}",
                headers={"Allow": ", ".join(methods)},
            )
        raise HttpError(404, f"no route {path[:200]}")
