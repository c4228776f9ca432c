"""``ModelServer``: one replica, the whole request path, wired from small parts.

Ray Serve hands every HTTP request to ``__call__`` (its plain HTTP path, no ASGI framework in
between). In order: the route table finds the route (404, 405); the gatekeeper checks the key,
its role and its rate (401, 403, 429); the body is read within ``serve.max_body_bytes`` (413);
the route's handler decodes it by the request rules (400, 422), predicts through the router
and encodes the answer. Any refusal is a JSON error naming the field. The recorder notes the
request; only a version's own failure counts against it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from framework.config.app import AppConfig
from framework.serving.auth import Gatekeeper
from framework.serving.handlers import Call, Handlers, PredictionFailed, Reply
from framework.serving.openapi import document
from framework.serving.problems import HttpError, RequestInvalid, dumps, error_body
from framework.serving.routes import RouteTable
from framework.serving.served import load_served

logger = logging.getLogger("ray.serve")
DEPLOYMENT = "ModelServer"


class ModelServer:
    """One replica: route, key, limits, request rules, batching and ONNX Runtime."""

    def __init__(self, settings: AppConfig, monitor: Any = None, consumers: Any = None):
        if not isinstance(settings, AppConfig):  # a config file passes plain data
            settings = AppConfig.model_validate(settings)
        serve = settings.serve
        self.limit = serve.max_body_bytes
        served = load_served(settings, monitor, batching=serve.batching.enabled)
        registry, rules = served.registry, served.rules
        self.router, self.recorder = served.router, served.recorder
        first, name = self.router.first, self.router.model_name
        self.gate = Gatekeeper(settings.security, Path(settings.keys_base))
        openapi = document(
            f"{name} model server",
            str(first.number),
            rules,
            settings.security.header,
            serve.max_rows_per_request,
            serve.max_labels_per_request,
            serve.max_rows_per_explain,
        )
        self.handlers = Handlers(
            settings,
            registry,
            self.router,
            rules,
            self.gate,
            self.recorder,
            monitor,
            openapi,
            _docs(name),
        )
        self.table = RouteTable()
        logger.info("serving %s v%s with %d API key(s)", name, first.number, len(self.gate.keys))

    async def __call__(self, request: Request) -> Response:
        scope = request.scope
        call = Call({}, dict(scope["headers"]), b"", None)
        route_name, failed = "unmatched", False
        try:
            match = self.table.match(scope["method"], route_path(scope))
            route_name = match.route.name
            call.key = self.gate.admit(call.headers, match.route.role)
            call.params = match.params
            call.body = await self._read(call.headers, request)
            reply = await match.route.handler(self.handlers, call)
        except HttpError as exc:
            reply = Reply(dumps(exc.body()), exc.status, exc.headers)
        except RequestInvalid as exc:
            reply = Reply(error_body(self._schema_message(), exc.problems), 422)
        except PredictionFailed as exc:  # the version failed: a server error, counted against it
            logger.error("prediction by v%s failed", exc.version, exc_info=exc.cause)
            reply = Reply(
                orjson.dumps({"error": f"the prediction failed: {exc}"}), 500, version=exc.version
            )
            failed = True
        except Exception:  # a bug; never the caller's fault, never counted against a version
            logger.exception("request failed")
            reply = Reply(orjson.dumps({"error": "internal error"}), 500)
        self.recorder.note(route_name, reply.version, reply.status, call.started, failed)
        body = b"" if scope["method"] == "HEAD" else reply.body
        return Response(body, reply.status, reply.headers, media_type=reply.media_type)

    async def _read(self, headers: dict[bytes, bytes], request: Request) -> bytes:
        """The body, refused with 413 as soon as it passes the limit."""
        limit = self.limit
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise HttpError(413, f"the body is {int(length)} bytes; the limit is {limit}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HttpError(413, f"the body is over the limit of {limit} bytes")
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _schema_message(self) -> str:
        router = self.router
        return (
            f"the request does not match the schema of {router.model_name} v{router.first.number}"
        )


def route_path(scope: dict[str, Any]) -> str:
    """The path below the application's route prefix (ASGI: ``path`` includes ``root_path``).

    Ray Serve sets ``root_path`` to the route prefix, so an application served under
    ``/staging/x`` matches ``/staging/x/readyz`` as ``/readyz``."""
    path: str = scope["path"]
    root: str = scope.get("root_path") or ""
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path


def _docs(name: str) -> bytes:
    from fastapi.openapi.docs import get_swagger_ui_html

    return bytes(get_swagger_ui_html(openapi_url="openapi.json", title=f"{name} model server").body)
