"""The Ray Serve application: one deployment that authenticates, validates and predicts.

Layout: HAProxy (Ray Serve's HAProxy ingress) balances the HTTP port over the replicas'
own ports; each replica of ``ModelServer`` is the whole request path - API key check,
schema validation, ``@serve.batch`` batching and one ONNX Runtime session. There is no
second deployment on the request path: on this kind of machine every hop between
deployments costs milliseconds (a two-deployment graph served 3-5x fewer requests per second
than one deployment), so the path stays one replica deep and scaling adds replicas.
Prediction requests are answered in ``__call__`` without an ASGI framework; FastAPI serves
the other routes and the OpenAPI document.

``build_app(args)`` is an application builder: ``python -m framework task=serve`` calls it,
and so does Ray's own CLI from a config file written by ``task=build_serve_config``.
"""

import logging
import os
import time
from dataclasses import dataclass
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
from starlette.routing import compile_path

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


@dataclass(frozen=True)
class Route:
    """One HTTP route: method, path, the ``ModelServer`` method that answers it, its role."""

    method: str
    path: str
    handler: str
    role: str
    tag: str


#: Every route and the role it needs (``public``: no key). The replica checks the key
#: before any handler runs; a path matching no route gets 404 without reaching one.
ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", "healthz", PUBLIC, "health"),
    Route("GET", "/readyz", "readyz", PUBLIC, "health"),
    Route("GET", "/v2/health/live", "v2_live", PUBLIC, "v2"),
    Route("GET", "/v2/health/ready", "v2_ready", PUBLIC, "v2"),
    Route("GET", "/v2/models/{name}/ready", "v2_model_ready", PUBLIC, "v2"),
    Route("GET", "/v1/models", "list_models", "predict", "models"),
    Route("GET", "/v2", "v2_server", "predict", "v2"),
    Route("GET", "/v2/models/{name}", "v2_model", "predict", "v2"),
    Route(
        "GET",
        "/v2/models/{name}/versions/{version}",
        "v2_model_version",
        "predict",
        "v2",
    ),
    Route("POST", "/v1/models/{name}/predict", "predict", "predict", "models"),
    Route("POST", "/v2/models/{name}/infer", "v2_infer", "predict", "v2"),
    Route(
        "POST",
        "/v2/models/{name}/versions/{version}/infer",
        "v2_infer_version",
        "predict",
        "v2",
    ),
    Route("GET", "/v1/admin/config", "admin_config", "admin", "admin"),
)
#: FastAPI's documentation routes: public.
DOC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})
_COMPILED = [(route, compile_path(route.path)[0]) for route in ROUTES]
_HOT = {"predict", "v2_infer", "v2_infer_version"}


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


def route_role(method: str, path: str) -> tuple[Route | None, dict[str, str], str | None]:
    """The route matching a request, its path parameters and its role (None: no route)."""
    if path in DOC_PATHS and method in ("GET", "HEAD"):
        return None, {}, PUBLIC
    for route, regex in _COMPILED:
        if route.method != method and not (method == "HEAD" and route.method == "GET"):
            continue
        match = regex.match(path)
        if match is not None:
            return route, match.groupdict(), route.role
    return None, {}, None


class ModelServer:
    """One replica: API key check, schema validation, batching and ONNX Runtime.

    Ray Serve hands every request to ``__call__`` (its plain HTTP path, no ASGI framework in
    between): prediction routes are answered there directly; the other routes go to a
    FastAPI app built from ``ROUTES``, which also serves the OpenAPI document.
    """

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
        self.app = self._fastapi()
        self._openapi = self._openapi_document()
        self.app.openapi = lambda: self._openapi  # type: ignore[method-assign]
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

    async def __call__(self, request: Request) -> Response:
        scope = request.scope
        route, params, role = route_role(scope["method"], scope["path"])
        extra: dict[str, str] | None = None
        try:
            if role is None:
                raise HttpError(404, {"error": f"no route {scope['method']} {scope['path']}"})
            if role != PUBLIC:
                self.authorize(scope["headers"], role)
            if route is None or route.handler not in _HOT:
                return await self._forward(request)
            raw = await self._read(scope, request.receive)
            self._active += 1
            try:
                if route.handler == "predict":
                    body = await self.predict_body(scope["headers"], params["name"], raw)
                else:
                    body = await self.infer_body(params["name"], params.get("version"), raw)
            finally:
                self._active -= 1
            status = 200
        except HttpError as exc:
            status, extra = exc.status, exc.headers
            body = orjson.dumps(exc.body)
        except RequestInvalid as exc:
            status, body = 422, orjson.dumps(self._invalid(exc))
        return Response(body, status, extra, media_type="application/json")

    async def _forward(self, request: Request) -> Response:
        """Answer a non-prediction route with the FastAPI app."""
        messages: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)

        await self.app(request.scope, request.receive, send)
        start = messages[0]
        headers = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in start.get("headers", [])
            if k.lower() != b"content-length"
        }
        body = b"".join(m.get("body", b"") for m in messages[1:])
        return Response(body, start["status"], headers)

    def _fastapi(self) -> FastAPI:
        app = FastAPI(
            title=f"{self.model_name} model server",
            description=f"Predictions from {self.model_name} v{self.version}; requests are "
            "checked against its data schema. Send the API key in the "
            f"`{self.security.header}` header.",
            version=str(self.version),
        )
        for route in ROUTES:
            app.add_api_route(
                route.path,
                getattr(self, route.handler),
                methods=[route.method],
                name=route.handler,
                tags=[route.tag],
                description="Public: no API key needed."
                if route.role == PUBLIC
                else f"Needs an API key with the role `{route.role}`.",
            )

        async def http_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, HttpError)
            return _json(exc.body, exc.status, exc.headers)

        async def request_invalid(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, RequestInvalid)
            return _json(self._invalid(exc), 422)

        app.add_exception_handler(HttpError, http_error)
        app.add_exception_handler(RequestInvalid, request_invalid)
        return app

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
    async def healthz(self, request: Request) -> Response:
        return _json({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        return _json({"ready": True, "model": self.model_name, "version": self.version})

    async def v2_live(self, request: Request) -> Response:
        return _json({"live": True})

    async def v2_ready(self, request: Request) -> Response:
        return _json({"ready": True})

    async def v2_model_ready(self, request: Request, name: str) -> Response:
        self._check_name(name)
        return _json({"name": name, "ready": True})

    # -- routes: metadata ----------------------------------------------------------------
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

    async def v2_server(self, request: Request) -> Response:
        return _json({"name": "framework", "version": "1", "extensions": []})

    async def v2_model(self, request: Request, name: str) -> Response:
        self._check_name(name)
        return _json(self._v2_metadata())

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
    # ``__call__`` answers these itself; through the FastAPI app (OpenAPI, tests) they answer
    # the same way.
    async def predict(self, request: Request, name: str) -> Response:
        body = await self.predict_body(request.scope["headers"], name, await request.body())
        return Response(body, media_type="application/json")

    async def v2_infer(self, request: Request, name: str) -> Response:
        body = await self.infer_body(name, None, await request.body())
        return Response(body, media_type="application/json")

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
        app = self.app
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
        for route in ROUTES:
            if route.role != PUBLIC:
                doc["paths"][route.path][route.method.lower()]["security"] = [{"ApiKey": []}]
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
    deployment = serve.deployment(name=DEPLOYMENT)(ModelServer).options(**options)
    from ray.serve.config import BackpressureConfig

    deployment = deployment.options(
        backpressure_config=BackpressureConfig(
            status_code=503, retry_after_s=settings.serve.retry_after_s
        )
    )
    return deployment.bind(settings.model_dump(mode="json"))
