"""The Ray Serve application: one deployment that authenticates, validates and predicts.

Layout: HAProxy (Ray Serve's HAProxy ingress) balances the HTTP port over the replicas'
own ports; each replica of ``ModelServer`` is the whole request path - API key check,
schema validation, ``@serve.batch`` batching and one ONNX Runtime session. There is no
second deployment on the request path: on this kind of machine every hop between
deployments costs milliseconds (a two-deployment graph served 3-5x fewer requests per second
than one deployment, see the closing figures in README), so the path stays one replica deep
and scaling happens by adding replicas.

``build_app(args)`` is an application builder: ``python -m framework task=serve`` calls it,
and so does Ray's own CLI from a config file written by ``task=build_serve_config``.
"""

import importlib
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import Field
from ray import serve
from ray.serve import Application

from framework.config.base import StrictModel
from framework.config.data import ColumnSpec
from framework.config.security import SecurityConfig
from framework.config.serve import ServeConfig
from framework.export.onnx import CATEGORICAL_INPUT, NUMERIC_INPUT, Signature
from framework.export.predictor import OnnxPredictor, Prediction
from framework.security.keys import ApiKey, hash_key, load_keys
from framework.serving.schema import Feeds, Problem, RequestInvalid, RequestSchema
from framework.store.registry import ModelRegistry

logger = logging.getLogger("ray.serve")

DEPLOYMENT = "ModelServer"
PUBLIC = "public"


class AppArgs(StrictModel):
    """Everything a replica needs, as plain data (it travels to Ray and into YAML)."""

    model_name: str = Field(description="Registered model name.")
    store_path: str = Field(description="Absolute path of the model registry.")
    keys_base: str = Field(description="Folder a relative security.keys_file is resolved in.")
    serve: ServeConfig = Field(default_factory=ServeConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)


app = FastAPI(
    title="framework model server",
    description="Predictions from a registered model; requests are checked against its data "
    "schema. Send the API key in the `x-api-key` header.",
    version="1",
)

#: Role each route needs, filled by ``@requires``; tests check every route declares one.
ROUTE_ROLES: dict[str, str] = {}


class HttpError(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        self.status = status
        self.body = body
        self.headers = headers


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _rows(feeds: Feeds) -> int:
    return len(next(iter(feeds.values())))


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


#: The replica's server: the fast path below answers prediction requests with it.
_SERVER: list["ModelServer"] = []

_HOT_ROUTE = re.compile(
    r"/v1/models/(?P<name>[^/]+)/predict$|/v2/models/(?P<v2name>[^/]+)"
    r"(?:/versions/(?P<version>[^/]+))?/infer$"
)


Handler = Callable[..., Awaitable[Response]]


def requires(role: str) -> Callable[[Handler], Handler]:
    """Declare the role a route needs; ``FastPath`` checks the key before the route runs."""

    def decorate(handler: Handler) -> Handler:
        ROUTE_ROLES[handler.__name__] = role
        return handler

    return decorate


#: FastAPI's own documentation routes: public.
DOC_ROUTES = frozenset({"openapi", "swagger_ui_html", "swagger_ui_redirect", "redoc_html"})


def iter_routes(routes: list[Any]) -> Iterator[Any]:
    """Every route, also those inside included routers (Ray's ingress includes one)."""
    for route in routes:
        inner = getattr(route, "original_router", None) or route
        if hasattr(inner, "path_regex"):
            yield inner
        elif hasattr(inner, "routes"):
            yield from iter_routes(inner.routes)


def route_role(scope: dict[str, Any]) -> str | None:
    """The role the route matching ``scope`` needs; None when no route matches."""
    path, method = scope["path"], scope["method"]
    for route in iter_routes(app.routes):  # this module's app: routes keep paths and names
        regex = getattr(route, "path_regex", None)
        if regex is None or not regex.match(path):
            continue
        methods = getattr(route, "methods", None) or set()
        if method not in methods and not (method == "HEAD" and "GET" in methods):
            continue
        name = getattr(route, "name", "")
        if name in DOC_ROUTES:
            return PUBLIC
        return ROUTE_ROLES.get(name, "admin")  # a route without a declared role: admin
    return None


async def send_json(
    send: Any, status: int, body: Any, headers: dict[str, str] | None = None
) -> None:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
    ]
    if headers:
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": data})


class FastPath:
    """ASGI middleware in front of FastAPI: access control for every route, and prediction
    requests answered without FastAPI's routing and dependency layers.

    On a 2-core box those layers cost about a sixth of a replica's time per request. The
    prediction routes are still declared on the FastAPI app: they appear in the OpenAPI
    document and answer the same way when a request reaches them.
    """

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and _SERVER:
            server = _SERVER[0]
            if scope["method"] == "POST":
                match = _HOT_ROUTE.search(scope["path"])
                if match is not None:
                    await server.answer(match, scope, receive, send)
                    return
            role = route_role(scope)
            if role is None:  # fail closed: nothing unmatched reaches FastAPI
                await send_json(send, 404, {"error": f"no route {scope['method']} {scope['path']}"})
                return
            if role != PUBLIC:
                try:
                    server.authorize(scope["headers"], role)
                except HttpError as exc:
                    await send_json(send, exc.status, exc.body, exc.headers)
                    return
        await self.app(scope, receive, send)


app.add_middleware(FastPath)


@app.exception_handler(HttpError)
async def _http_error(request: Request, exc: HttpError) -> Response:
    return _json(exc.body, exc.status, exc.headers)


@app.exception_handler(RequestInvalid)
async def _request_invalid(request: Request, exc: RequestInvalid) -> Response:
    assert _SERVER
    return _json(_SERVER[0]._invalid(exc), 422)


# Ray Serve pickles the decorated class by value, with the globals it uses at this point:
# everything it needs is defined above, and it reaches this module's shared state through
# the real module (see ``__init__``).
@serve.deployment(name=DEPLOYMENT)
@serve.ingress(app)
class ModelServer:
    """One replica: API key check, schema validation, batching and ONNX Runtime."""

    def __init__(self, args: dict[str, Any]):
        settings = AppArgs.model_validate(args)
        self.config = settings.serve
        self.security = settings.security
        registry = ModelRegistry(settings.store_path)
        version = registry.resolve(settings.model_name, self.config.alias)
        version.verify()  # sha256 of model.onnx (and every other file) against the manifest
        manifest = version.manifest
        self.model_name = version.name
        self.version = version.version
        self.aliases = version.aliases
        self.manifest = manifest
        self.registry = registry
        self.signature = Signature.from_dict(manifest["signature"])
        self.classification = self.signature.task == "classification"
        self.classes = list(self.signature.classes)
        self.predictor = OnnxPredictor(
            version.file("model.onnx").read_bytes(), self.signature, self.config.onnx_threads
        )
        columns = {c: ColumnSpec.model_validate(s) for c, s in manifest["schema"].items()}
        self.schema = RequestSchema(self.model_name, columns, self.signature)
        self.keys: dict[str, ApiKey] = {}
        if self.security.auth == "off":
            logger.warning(
                "AUTH IS OFF (security.auth=off): every route of %s answers without an API key",
                self.model_name,
            )
        else:
            self.keys = load_keys(self.security, Path(settings.keys_base))
        self.header = self.security.header.lower().encode()
        self.max_rows = self.config.max_rows_per_request
        batching = self.config.batching
        self.batch_rows = batching.max_batch_rows if batching.enabled else 0
        self._batched.set_max_batch_size(batching.max_batch_rows)
        self._batched.set_batch_wait_timeout_s(batching.max_batch_wait_ms / 1000.0)
        self.predictor.run(self._warmup_feeds())
        self._started = time.time()
        self._active = 0  # prediction requests in this replica right now
        importlib.import_module(__name__)._SERVER[:] = [self]
        self._openapi = self._openapi_document()
        app.openapi = lambda: self._openapi  # type: ignore[method-assign]
        logger.info(
            "serving %s v%s (%s) with %d API key(s)",
            self.model_name,
            self.version,
            ",".join(self.aliases) or self.config.alias,
            len(self.keys),
        )

    # -- access control ----------------------------------------------------------------
    def authorize(self, headers: list[tuple[bytes, bytes]], role: str) -> ApiKey | None:
        if self.security.auth == "off":
            return None
        key = _header(headers, self.header)
        if key is None:
            auth = _header(headers, b"authorization")
            if auth and auth[:7].lower() == "bearer ":
                key = auth[7:].strip()
        if not key:
            raise HttpError(
                401,
                {"error": f"an API key is required (header {self.security.header})"},
                {"WWW-Authenticate": "ApiKey"},
            )
        entry = self.keys.get(hash_key(key))
        if entry is None:
            raise HttpError(
                401, {"error": "the API key is not valid"}, {"WWW-Authenticate": "ApiKey"}
            )
        if not entry.grants(role):
            raise HttpError(
                403, {"error": f"key {entry.name!r} lacks the role {role!r} this route needs"}
            )
        return entry

    # -- request bodies ----------------------------------------------------------------
    async def _read(self, scope: dict[str, Any], receive: Any) -> bytes:
        """The request body, refused with 413 as soon as it passes the limit."""
        limit = self.config.max_body_bytes
        length = _header(scope["headers"], b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise HttpError(413, {"error": f"the body is {length} bytes; the limit is {limit}"})
        chunks = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise HttpError(413, {"error": f"the body is over the limit of {limit} bytes"})
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    @staticmethod
    def _parse(raw: bytes) -> Any:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise HttpError(400, {"error": f"the body is not valid JSON: {exc}"}) from None

    async def answer(
        self, match: re.Match[str], scope: dict[str, Any], receive: Any, send: Any
    ) -> None:
        """Answer a prediction request straight from ASGI (see ``FastPath``)."""
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        extra: dict[str, str] | None = None
        self._active += 1
        try:
            self.authorize(headers, "predict")
            raw = await self._read(scope, receive)
            if match.group("name") is not None:
                status, body = 200, await self.predict_body(headers, match.group("name"), raw)
            else:
                status, body = (
                    200,
                    await self.infer_body(match.group("v2name"), match.group("version"), raw),
                )
        except HttpError as exc:
            status, extra = exc.status, exc.headers
            body = orjson.dumps(exc.body)
        except RequestInvalid as exc:
            status, body = 422, orjson.dumps(self._invalid(exc))
        finally:
            self._active -= 1
        await send_json(send, status, body, extra)

    def _invalid(self, exc: RequestInvalid) -> dict[str, Any]:
        return {
            "error": f"the request does not match the schema of {self.model_name} v{self.version}",
            "detail": [p.as_dict() for p in exc.problems],
        }

    def _check_name(self, name: str, version: str | None = None) -> None:
        if name != self.model_name:
            raise HttpError(
                404, {"error": f"model {name!r} is not served here; this is {self.model_name!r}"}
            )
        if version is not None and version != str(self.version):
            raise HttpError(
                404,
                {"error": f"{self.model_name} v{version} is not served; v{self.version} is"},
            )

    # -- prediction ----------------------------------------------------------------------
    async def _predict(self, feeds: Feeds, rows: int) -> Prediction:
        # A request that is alone in the replica runs at once: the batch queue would only add
        # latency. With others in flight, it joins them in one ONNX Runtime call.
        if 0 < rows < self.batch_rows and self._active > 1:
            return await self._batched(feeds)
        return self.predictor.run(feeds)

    @serve.batch(max_batch_size=512, batch_size_fn=lambda items: sum(_rows(f) for f in items))
    async def _batched(self, items: list[Feeds]) -> list[Prediction]:
        if len(items) == 1:
            return [self.predictor.run(items[0])]
        feeds = {k: np.concatenate([f[k] for f in items]) for k in items[0]}
        result = self.predictor.run(feeds)
        out = []
        start = 0
        for f in items:
            stop = start + _rows(f)
            scores = None if result.scores is None else result.scores[start:stop]
            out.append(Prediction(labels=result.labels[start:stop], scores=scores))
            start = stop
        return out

    def _warmup_feeds(self) -> Feeds:
        feeds: Feeds = {}
        if self.signature.numeric:
            feeds[NUMERIC_INPUT] = np.zeros((1, len(self.signature.numeric)), dtype=np.float32)
        if self.signature.categorical:
            feeds[CATEGORICAL_INPUT] = np.full(
                (1, len(self.signature.categorical)), "", dtype=object
            )
        return feeds

    # -- routes: health ------------------------------------------------------------------
    @app.get("/healthz", tags=["health"])
    @requires(PUBLIC)
    async def healthz(self, request: Request) -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz", tags=["health"])
    @requires(PUBLIC)
    async def readyz(self, request: Request) -> Response:
        return _json({"ready": True, "model": self.model_name, "version": self.version})

    @app.get("/v2/health/live", tags=["open inference protocol"])
    @requires(PUBLIC)
    async def v2_live(self, request: Request) -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready", tags=["open inference protocol"])
    @requires(PUBLIC)
    async def v2_ready(self, request: Request) -> Response:
        return _json({"ready": True})

    @app.get("/v2/models/{name}/ready", tags=["open inference protocol"])
    @requires(PUBLIC)
    async def v2_model_ready(self, request: Request, name: str) -> Response:
        self._check_name(name)
        return _json({"name": name, "ready": True})

    # -- routes: metadata ----------------------------------------------------------------
    @app.get("/v1/models", tags=["models"])
    @requires("predict")
    async def list_models(self, request: Request) -> Response:
        served = {
            "name": self.model_name,
            "version": self.version,
            "aliases": self.aliases,
            "served_alias": self.config.alias,
            "task": self.signature.task,
            "model_type": self.manifest.get("model_type"),
            "created_at": self.manifest.get("created_at"),
            "metrics": self.manifest.get("metrics", {}).get("test"),
        }
        return _json({"models": [served], "aliases": self.registry.aliases(self.model_name)})

    @app.get("/v2", tags=["open inference protocol"])
    @requires("predict")
    async def v2_server(self, request: Request) -> Response:
        return _json({"name": "framework", "version": "1", "extensions": []})

    @app.get("/v2/models/{name}", tags=["open inference protocol"])
    @requires("predict")
    async def v2_model(self, request: Request, name: str) -> Response:
        self._check_name(name)
        return _json(self._v2_metadata())

    @app.get("/v2/models/{name}/versions/{version}", tags=["open inference protocol"])
    @requires("predict")
    async def v2_model_version(self, request: Request, name: str, version: str) -> Response:
        self._check_name(name, version)
        return _json(self._v2_metadata())

    def _v2_metadata(self) -> dict[str, Any]:
        inputs = []
        if self.signature.numeric:
            inputs.append(
                {"name": NUMERIC_INPUT, "datatype": "FP32", "shape": [-1, len(self.schema.numeric)]}
            )
        if self.signature.categorical:
            inputs.append(
                {
                    "name": CATEGORICAL_INPUT,
                    "datatype": "BYTES",
                    "shape": [-1, len(self.schema.categorical)],
                }
            )
        outputs = [{"name": "label", "datatype": self._label_datatype(), "shape": [-1]}]
        if self.classification:
            outputs.append(
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(self.classes)]}
            )
        return {
            "name": self.model_name,
            "versions": [str(self.version)],
            "platform": "onnxruntime",
            "inputs": inputs,
            "outputs": outputs,
            "parameters": {
                "feature_columns": {
                    NUMERIC_INPUT: self.schema.numeric,
                    CATEGORICAL_INPUT: self.schema.categorical,
                },
                "classes": self.classes,
                "per_column_inputs": "inputs may also be one tensor per feature, named after it",
            },
        }

    def _label_datatype(self) -> str:
        if not self.classification:
            return "FP32"
        return "BYTES"

    # -- routes: prediction --------------------------------------------------------------
    # FastPath answers these before FastAPI sees them; the routes document them in OpenAPI
    # and answer identically when the app runs without the middleware.
    @app.post(
        "/v1/models/{name}/predict", tags=["models"], openapi_extra={"x-framework": "predict"}
    )
    @requires("predict")
    async def predict(self, request: Request, name: str) -> Response:
        body = await self.predict_body(request.scope["headers"], name, await request.body())
        return Response(body, media_type="application/json")

    @app.post("/v2/models/{name}/infer", tags=["open inference protocol"])
    @requires("predict")
    async def v2_infer(self, request: Request, name: str) -> Response:
        body = await self.infer_body(name, None, await request.body())
        return Response(body, media_type="application/json")

    @app.post("/v2/models/{name}/versions/{version}/infer", tags=["open inference protocol"])
    @requires("predict")
    async def v2_infer_version(self, request: Request, name: str, version: str) -> Response:
        body = await self.infer_body(name, version, await request.body())
        return Response(body, media_type="application/json")

    async def predict_body(
        self, headers: list[tuple[bytes, bytes]], name: str, raw: bytes
    ) -> bytes:
        """``POST /v1/models/{name}/predict``: JSON records in, one prediction per row out."""
        self._check_name(name)
        if len(raw) > self.config.max_body_bytes:
            raise HttpError(413, {"error": "the body is over the limit"})
        body = self._parse(raw)
        records = [body] if isinstance(body, dict) else body
        if isinstance(records, list) and not 1 <= len(records) <= self.max_rows:
            raise RequestInvalid(
                [
                    Problem(
                        ("body",),
                        f"expected 1 to {self.max_rows} rows; got {len(records)}",
                        "too_long" if records else "too_short",
                    )
                ]
            )
        feeds = self.schema.records_to_feeds(records, raw)
        result = await self._predict(feeds, len(records))
        rid = _header(headers, b"x-request-id") or os.urandom(8).hex()
        labels = result.labels.tolist()
        if self.classification:
            assert result.scores is not None
            probabilities = np.round(result.scores.astype(np.float64), 6).tolist()
            classes = self.classes
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
        return orjson.dumps(
            {
                "model": self.model_name,
                "version": self.version,
                "request_id": rid,
                "predictions": predictions,
            }
        )

    async def infer_body(self, name: str, version: str | None, raw: bytes) -> bytes:
        """``POST /v2/models/{name}[/versions/{v}]/infer``: the Open Inference Protocol."""
        self._check_name(name, version)
        if len(raw) > self.config.max_body_bytes:
            raise HttpError(413, {"error": "the body is over the limit"})
        body = self._parse(raw)
        if not isinstance(body, dict):
            raise RequestInvalid(
                [Problem(("body",), "expected an inference request object", "type")]
            )
        strict = b"true" in raw or b"false" in raw
        feeds, n = self.schema.tensors_to_feeds(body.get("inputs"), self.max_rows, strict=strict)
        result = await self._predict(feeds, n)
        rid = body.get("id") if isinstance(body.get("id"), str) else os.urandom(8).hex()
        if self.classification:
            assert result.scores is not None
            outputs = [
                {
                    "name": "label",
                    "datatype": "BYTES",
                    "shape": [n],
                    "data": result.labels.tolist(),
                },
                {
                    "name": "probabilities",
                    "datatype": "FP32",
                    "shape": [n, len(self.classes)],
                    "data": result.scores.reshape(-1),
                },
            ]
        else:
            outputs = [{"name": "label", "datatype": "FP32", "shape": [n], "data": result.labels}]
        wanted = body.get("outputs")
        if isinstance(wanted, list) and wanted:
            names = {o.get("name") for o in wanted if isinstance(o, dict)}
            outputs = [o for o in outputs if o["name"] in names]
        return orjson.dumps(
            {
                "model_name": self.model_name,
                "model_version": str(self.version),
                "id": rid,
                "outputs": outputs,
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )

    # -- routes: admin -------------------------------------------------------------------
    @app.get("/v1/admin/config", tags=["admin"])
    @requires("admin")
    async def admin_config(self, request: Request) -> Response:
        return _json(
            {
                "serve": self.config.model_dump(mode="json"),
                "security": self.security.model_dump(
                    mode="json", include={"auth", "keys_file", "keys_env", "header"}
                ),
                "keys": sorted(k.name for k in self.keys.values()),
                "model": {
                    "name": self.model_name,
                    "version": self.version,
                    "files": self.manifest.get("files"),
                    "code_version": self.manifest.get("code_version"),
                },
                "replica_started": self._started,
            }
        )

    # -- OpenAPI -------------------------------------------------------------------------
    def _openapi_document(self) -> dict[str, Any]:
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        row = self.schema.row_model.model_json_schema(ref_template="#/components/schemas/{model}")
        row_name = self.schema.row_model.__name__
        components = doc.setdefault("components", {}).setdefault("schemas", {})
        components.update(row.pop("$defs", {}))
        components[row_name] = row
        body_schema = {
            "oneOf": [
                {"$ref": f"#/components/schemas/{row_name}"},
                {
                    "type": "array",
                    "items": {"$ref": f"#/components/schemas/{row_name}"},
                    "minItems": 1,
                    "maxItems": self.max_rows,
                },
            ]
        }
        doc["components"]["securitySchemes"] = {
            "ApiKey": {"type": "apiKey", "in": "header", "name": self.security.header}
        }
        for route in iter_routes(app.routes):
            role = ROUTE_ROLES.get(getattr(route, "name", ""))
            operations = doc.get("paths", {}).get(getattr(route, "path", ""), {})
            for method in getattr(route, "methods", ()):
                operation = operations.get(method.lower())
                if operation is None or role is None:
                    continue
                if role == PUBLIC:
                    operation["description"] = "Public: no API key needed."
                else:
                    operation["security"] = [{"ApiKey": []}]
                    operation["description"] = f"Needs an API key with the role `{role}`."
        predict_path = "/v1/models/{name}/predict"
        operation = doc["paths"][predict_path]["post"]
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body_schema}},
        }
        return doc


def deployment_options(config: ServeConfig) -> dict[str, Any]:
    """Ray Serve deployment options from the ``serve/`` config."""
    options: dict[str, Any] = {
        "max_ongoing_requests": config.max_ongoing_requests,
        "max_queued_requests": config.max_queued_requests,
        "graceful_shutdown_timeout_s": config.graceful_shutdown_s,
        "health_check_period_s": config.health_check_period_s,
        "ray_actor_options": {"num_cpus": config.num_cpus},
    }
    if config.memory_mb:
        options["ray_actor_options"]["memory"] = config.memory_mb * 1024 * 1024
    if config.num_replicas == "auto":
        scaling = config.autoscaling
        options["autoscaling_config"] = {
            "min_replicas": scaling.min_replicas,
            "max_replicas": scaling.max_replicas,
            "initial_replicas": scaling.initial_replicas,
            "target_ongoing_requests": scaling.target_ongoing_requests,
            "upscale_delay_s": scaling.upscale_delay_s,
            "downscale_delay_s": scaling.downscale_delay_s,
        }
    else:
        options["num_replicas"] = config.num_replicas
    return options


def build_app(args: dict[str, Any]) -> Application:
    """Application builder (``import_path: framework.serving.app:build_app``)."""
    settings = AppArgs.model_validate(args)
    options = deployment_options(settings.serve)
    deployment = ModelServer.options(**options)
    from ray.serve.config import BackpressureConfig

    deployment = deployment.options(
        backpressure_config=BackpressureConfig(
            status_code=503, retry_after_s=settings.serve.retry_after_s
        )
    )
    return deployment.bind(settings.model_dump(mode="json"))
