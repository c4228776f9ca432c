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

import asyncio
import itertools
import logging
import math
import os
import time
import zlib
from dataclasses import dataclass, field
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
from ray.util.metrics import Counter
from starlette.routing import compile_path

from framework.config.base import StrictModel
from framework.config.data import ColumnSpec
from framework.config.monitor import MonitorConfig
from framework.config.security import SecurityConfig
from framework.config.serve import ServeConfig
from framework.export.onnx import CATEGORICAL_INPUT, NUMERIC_INPUT, Signature
from framework.export.predictor import OnnxPredictor, Prediction
from framework.monitoring.metrics import BucketHistogram
from framework.security.keys import ApiKey, hash_key, load_keys
from framework.serving.schema import Feeds, Problem, RequestInvalid, RequestSchema
from framework.store.registry import ModelRegistry, ModelVersion
from framework.training.pipeline import MISSING_CATEGORY

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
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)


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
    Route("POST", "/v1/feedback", "feedback", "feedback", "monitoring"),
    Route("GET", "/v1/admin/config", "admin_config", "admin", "admin"),
    Route("GET", "/v1/admin/monitor", "admin_monitor", "admin", "admin"),
    Route("POST", "/v1/admin/promote", "admin_promote", "admin", "admin"),
    Route("POST", "/v1/admin/rollback", "admin_rollback", "admin", "admin"),
)
#: FastAPI's documentation routes: public.
DOC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})
_COMPILED = [(route, compile_path(route.path)[0]) for route in ROUTES]
_HOT = {"predict", "v2_infer", "v2_infer_version"}
#: Bucket boundaries of the latency histogram, in seconds.
LATENCY_BOUNDARIES = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]
ROW_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096]


@dataclass
class ServedVersion:
    """One loaded model version: its ONNX Runtime session and what it answers with."""

    number: int
    predictor: OnnxPredictor
    signature: Signature
    manifest: dict[str, Any]


@dataclass(frozen=True)
class Routing:
    """Which versions answer, and the challenger's share of callers."""

    champion: int
    challenger: int | None = None
    weight: float = 0.0
    shadow: int | None = None
    generation: int = -1


@dataclass
class Records:
    """What a replica saw since its last hand-over to the monitor."""

    requests: list[tuple[str, int | None, int, float, bool]] = field(default_factory=list)
    predictions: list[tuple[int, str, Feeds, Any]] = field(default_factory=list)
    batch_rows: list[int] = field(default_factory=list)


def bucket(key: str) -> float:
    """A caller's fixed place in [0, 1): the same key lands on the same version everywhere."""
    return zlib.crc32(key.encode()) / 4294967296.0


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


def _warmup_feeds(signature: Signature) -> Feeds:
    feeds: Feeds = {}
    if signature.numeric:
        feeds[NUMERIC_INPUT] = np.zeros((1, len(signature.numeric)), dtype=np.float32)
    if signature.categorical:
        feeds[CATEGORICAL_INPUT] = np.full((1, len(signature.categorical)), "", dtype=object)
    return feeds


def _target_bins(registry: ModelRegistry, name: str, version: int) -> tuple[np.ndarray, list[str]]:
    """Inner quantile edges of the training target and bin names (regression; else empty)."""
    try:
        served = registry.get(name, version)
        if served.manifest["signature"]["task"] != "regression":
            return np.array([]), []
        profile = orjson.loads(served.file("profile.json").read_bytes())
        (target,) = [c for c, s in served.manifest["schema"].items() if s.get("role") == "target"]
        edges = profile["features"][target]["bin_edges"]
    except Exception:
        return np.array([]), []
    inner = np.asarray(edges[1:-1], dtype=float)
    bounds = ["-inf", *(f"{e:.4g}" for e in inner), "inf"]
    return inner, [f"{a}..{b}" for a, b in itertools.pairwise(bounds)]


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

    def __init__(self, args: dict[str, Any], monitor: Any = None):
        settings = AppArgs.model_validate(args)
        self.config = settings.serve
        self.security = settings.security
        self.monitoring = settings.monitor
        self.monitor = monitor  # the Monitor deployment's handle (None: monitoring off)
        registry = ModelRegistry(settings.store_path)
        version = registry.resolve(settings.model_name, self.config.alias)
        self.registry = registry
        self.model_name = version.name
        self.aliases = version.aliases
        champion = self._load(version)
        self.versions: dict[int, ServedVersion] = {champion.number: champion}
        self.routing = Routing(champion=champion.number)
        self.champion = champion
        self.manifest = champion.manifest
        self.version = champion.number
        self.signature = champion.signature
        self.classification = self.signature.task == "classification"
        self.classes = list(self.signature.classes)
        columns = {c: ColumnSpec.model_validate(s) for c, s in self.manifest["schema"].items()}
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
        self.sticky = self.monitoring.rollout.sticky_header.lower().encode()
        self.max_rows = self.config.max_rows_per_request
        batching = self.config.batching
        self.batch_rows = batching.max_batch_rows if batching.enabled else 0
        self._batched.set_max_batch_size(batching.max_batch_rows)
        self._batched.set_batch_wait_timeout_s(batching.max_batch_wait_ms / 1000.0)
        self._started = time.time()
        self._active = 0  # prediction requests in this replica right now
        self._records = Records()
        self._background: asyncio.Task[None] | None = None
        self._metrics()
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

    def _load(self, version: ModelVersion) -> ServedVersion:
        """Verify a version's files against its manifest and start its ONNX Runtime session."""
        version.verify()  # sha256 of model.onnx (and every other file) against the manifest
        signature = Signature.from_dict(version.manifest["signature"])
        predictor = OnnxPredictor(
            version.file("model.onnx").read_bytes(), signature, self.config.onnx_threads
        )
        predictor.run(_warmup_feeds(signature))
        return ServedVersion(version.version, predictor, signature, version.manifest)

    # -- metrics -------------------------------------------------------------------------
    def _metrics(self) -> None:
        self.tags = {"model": self.model_name}
        self.m_requests = Counter(
            "framework_requests_total",
            description="Requests by route, model version and HTTP status.",
            tag_keys=("model", "route", "version", "status"),
        )
        self.m_latency = BucketHistogram(
            "framework_request_duration_seconds",
            "Time from request to response inside the replica.",
            LATENCY_BOUNDARIES,
            ("model", "route", "version"),
        )
        self.m_batch = BucketHistogram(
            "framework_batch_rows",
            "Rows in one ONNX Runtime call (requests batched together).",
            ROW_BOUNDARIES,
            ("model",),
        )
        self.m_predictions = Counter(
            "framework_predictions_total",
            description="Predicted rows by version and class.",
            tag_keys=("model", "version", "class"),
        )
        self.m_value = Counter(
            "framework_prediction_bin_total",
            description="Predicted values (regression) by version, counted in the training "
            "target's quantile bins.",
            tag_keys=("model", "version", "bin"),
        )
        self.value_edges, self.value_bins = _target_bins(
            self.registry, self.model_name, self.version
        )
        self.m_imputed = Counter(
            "framework_imputed_values_total",
            description="Missing feature values in requests, imputed with training statistics.",
            tag_keys=("model", "feature"),
        )
        self.m_shadow = Counter(
            "framework_shadow_predictions_total",
            description="Rows the shadow version predicted, by agreement with the answer given.",
            tag_keys=("model", "version", "outcome"),
        )
        self.m_dropped = Counter(
            "framework_monitor_records_dropped_total",
            description="Request records the monitor could not take (it was unreachable).",
            tag_keys=("model",),
        )

    # -- background work: routing updates and records, off the request path --------------
    def _ensure_background(self) -> None:
        if self.monitor is not None and (self._background is None or self._background.done()):
            self._background = asyncio.get_running_loop().create_task(self._run_background())

    async def _run_background(self) -> None:
        poll = self.monitoring.routing_poll_s
        flush = self.monitoring.flush_interval_s
        last_poll = last_flush = 0.0
        while True:
            now = time.monotonic()
            try:
                if now - last_flush >= flush:
                    last_flush = now
                    routing = await self._flush()
                    if routing is not None:  # the monitor answered records with the routing
                        last_poll = now
                        await self._update_routing(routing)
                if now - last_poll >= poll:
                    last_poll = now
                    await self._update_routing(await self.monitor.routing.remote())
            except Exception:  # a monitor that is away never stops predictions
                logger.exception("background monitoring step failed")
            await asyncio.sleep(min(poll, flush) / 2)

    async def _update_routing(self, wanted: dict[str, Any]) -> None:
        if wanted["generation"] == self.routing.generation or wanted["champion"] is None:
            return
        numbers = [wanted[k] for k in ("champion", "challenger", "shadow") if wanted[k]]
        loaded = dict(self.versions)
        for number in numbers:
            if number not in loaded:
                try:
                    served = await asyncio.to_thread(
                        self._load, self.registry.get(self.model_name, number)
                    )
                except Exception as exc:
                    logger.error("cannot load %s v%s: %s", self.model_name, number, exc)
                    return
                problem = self._incompatible(served)
                if problem:
                    logger.error("not serving %s v%s: %s", self.model_name, number, problem)
                    return
                loaded[number] = served
        self.versions = {n: loaded[n] for n in numbers}
        self.champion = loaded[wanted["champion"]]
        self.version = self.champion.number
        self.manifest = self.champion.manifest
        self.routing = Routing(
            champion=wanted["champion"],
            challenger=wanted["challenger"],
            weight=wanted["weight"],
            shadow=wanted["shadow"],
            generation=wanted["generation"],
        )
        logger.info("routing of %s is now %s", self.model_name, self.routing)

    def _incompatible(self, served: ServedVersion) -> str | None:
        mine, theirs = self.signature, served.signature
        if (mine.numeric, mine.categorical, mine.task, list(mine.classes)) != (
            theirs.numeric,
            theirs.categorical,
            theirs.task,
            list(theirs.classes),
        ):
            return "its inputs, task or classes differ from the version this app validates for"
        return None

    def _choose(self, headers: list[tuple[bytes, bytes]], rid: str) -> ServedVersion:
        routing = self.routing
        if routing.challenger is not None and routing.weight > 0:
            key = _header(headers, self.sticky) or rid
            if bucket(key) < routing.weight:
                return self.versions[routing.challenger]
        return self.versions[routing.champion]

    async def _flush(self) -> dict[str, Any] | None:
        """Hand the records of the last interval to the metrics and the monitor, in bulk;
        return the routing the monitor answers with (None: nothing was sent)."""
        records, self._records = self._records, Records()
        tags = self.tags
        counts: dict[tuple[str, str, str], int] = {}
        durations: dict[tuple[str, str], list[float]] = {}
        versions: list[int] = []
        errors: list[bool] = []
        latencies: list[float] = []
        for route, version, status, latency, error in records.requests:
            label = "" if version is None else str(version)
            key = (route, label, str(status))
            counts[key] = counts.get(key, 0) + 1
            durations.setdefault((route, label), []).append(latency)
            if version is not None:
                versions.append(version)
                errors.append(error)
                latencies.append(latency * 1000.0)
        for (route, version, status), n in counts.items():
            self.m_requests.inc(n, {**tags, "route": route, "version": version, "status": status})
        for (route, version), values in durations.items():
            self.m_latency.observe_many(values, {**tags, "route": route, "version": version})
        self.m_batch.observe_many(records.batch_rows, tags)
        self.m_latency.export()
        self.m_batch.export()
        if not versions and not records.predictions:
            return None
        batch: dict[str, Any] = {
            "versions": np.asarray(versions, dtype=np.int64),
            "errors": np.asarray(errors, dtype=bool),
            "latency_ms": np.asarray(latencies, dtype=np.float64),
        }
        if records.predictions:
            self._summarize(records.predictions, batch)
        try:
            return await self.monitor.record.remote(batch)  # type: ignore[no-any-return]
        except Exception as exc:
            self.m_dropped.inc(len(records.requests), tags)
            logger.warning("the monitor did not take %d records: %s", len(records.requests), exc)
            return None

    def _summarize(
        self, predictions: list[tuple[int, str, Feeds, Any]], batch: dict[str, Any]
    ) -> None:
        """Rows, imputed values, predictions by id and shadow agreement for the monitor."""
        tags = self.tags
        rate = self.monitoring.sample_rate
        sizes = [len(labels) for *_, labels in predictions]
        feeds = {k: np.concatenate([f[k] for _, _, f, _ in predictions]) for k in predictions[0][2]}
        labels = np.concatenate([np.asarray(lab) for *_, lab in predictions])
        versions = np.repeat([v for v, *_ in predictions], sizes)
        keep = np.repeat(
            np.random.random(len(predictions)) < rate if rate < 1.0 else np.ones(len(sizes), bool),
            sizes,
        )
        if NUMERIC_INPUT in feeds:
            numeric = feeds[NUMERIC_INPUT]
            missing = np.isnan(numeric).sum(axis=0)
            for name, n in zip(self.schema.numeric, missing.tolist(), strict=True):
                if n:
                    self.m_imputed.inc(n, {**tags, "feature": name})
            batch["numeric"] = numeric[keep]
        if CATEGORICAL_INPUT in feeds:
            categorical = feeds[CATEGORICAL_INPUT]
            missing = (categorical == MISSING_CATEGORY).sum(axis=0)
            for name, n in zip(self.schema.categorical, missing.tolist(), strict=True):
                if n:
                    self.m_imputed.inc(n, {**tags, "feature": name})
            batch["categorical"] = categorical[keep]
        batch["sampled_predictions"] = labels[keep]
        batch["ids"] = [
            f"{rid}-{i}"
            for (_, rid, _, _), n in zip(predictions, sizes, strict=True)
            for i in range(n)
        ]
        batch["prediction_versions"] = versions
        batch["prediction_labels"] = labels
        for version in np.unique(versions).tolist():
            mine = labels[versions == version]
            if self.classification:
                classes, counts = np.unique(mine.astype(str), return_counts=True)
                for cls, n in zip(classes.tolist(), counts.tolist(), strict=True):
                    self.m_predictions.inc(n, {**tags, "version": str(version), "class": cls})
            elif len(self.value_edges):
                index = np.searchsorted(self.value_edges, mine.astype(float))
                for b, n in enumerate(np.bincount(index, minlength=len(self.value_bins))):
                    if n:
                        self.m_value.inc(
                            int(n), {**tags, "version": str(version), "bin": self.value_bins[b]}
                        )
        shadow = self.versions.get(self.routing.shadow) if self.routing.shadow else None
        if shadow is not None:
            answer = shadow.predictor.run(feeds).labels
            if self.classification:
                agree = int((np.asarray(answer).astype(str) == labels.astype(str)).sum())
            else:
                agree = int(np.isclose(answer.astype(float), labels.astype(float), rtol=0.05).sum())
            outcome = {"agree": agree, "disagree": len(labels) - agree}
            for key, n in outcome.items():
                if n:
                    self.m_shadow.inc(n, {**tags, "version": str(shadow.number), "outcome": key})
            batch["shadow"] = outcome

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
        started = time.perf_counter()
        scope = request.scope
        route, params, role = route_role(scope["method"], scope["path"])
        extra: dict[str, str] | None = None
        served: list[int] = []  # the version that answered, once chosen
        error = False
        try:
            if role is None:
                raise HttpError(404, {"error": f"no route {scope['method']} {scope['path']}"})
            if role != PUBLIC:
                self.authorize(scope["headers"], role)
            if route is None or route.handler not in _HOT:
                response = await self._forward(request)
                self._note(route, None, response.status_code, started, False)
                return response
            raw = await self._read(scope, request.receive)
            self._active += 1
            try:
                if route.handler == "predict":
                    body = await self.predict_body(scope["headers"], params["name"], raw, served)
                else:
                    body = await self.infer_body(
                        params["name"], params.get("version"), raw, scope["headers"], served
                    )
            finally:
                self._active -= 1
            status = 200
        except HttpError as exc:
            status, extra = exc.status, exc.headers
            body = orjson.dumps(exc.body)
        except RequestInvalid as exc:
            status, body = 422, orjson.dumps(self._invalid(exc))
        except Exception as exc:  # a failed prediction: counted against the version that ran
            logger.exception("prediction failed")
            status, error = 500, True
            body = orjson.dumps({"error": f"the prediction failed: {type(exc).__name__}"})
        self._note(route, served[0] if served else None, status, started, error)
        return Response(body, status, extra, media_type="application/json")

    def _note(
        self, route: Route | None, version: int | None, status: int, started: float, error: bool
    ) -> None:
        if self.monitor is None:
            return
        self._ensure_background()
        name = route.handler if route is not None else "unmatched"
        self._records.requests.append((name, version, status, time.perf_counter() - started, error))

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
        if version is not None and not (version.isdigit() and int(version) in self.versions):
            served = ", ".join(f"v{n}" for n in sorted(self.versions))
            raise HttpError(
                404, {"error": f"{self.model_name} v{version} is not served; {served} are"}
            )

    # -- prediction ----------------------------------------------------------------------
    async def _predict(self, feeds: Feeds, rows: int, served: ServedVersion) -> Prediction:
        # A request that is alone in the replica runs at once: the batch queue would only add
        # latency. With others in flight, it joins them in one ONNX Runtime call (per version).
        if 0 < rows < self.batch_rows and self._active > 1:
            return await self._batched(feeds, served.number)
        if self.monitor is not None:
            self._records.batch_rows.append(rows)
        return served.predictor.run(feeds)

    @serve.batch(max_batch_size=512, batch_size_fn=lambda items: sum(_rows(f) for f, _ in items))
    async def _batched(self, items: list[tuple[Feeds, int]]) -> list[Prediction]:
        out: list[Prediction | None] = [None] * len(items)
        for number in {n for _, n in items}:  # one ONNX Runtime call per version
            positions = [i for i, (_, n) in enumerate(items) if n == number]
            served = self.versions.get(number) or self.champion
            group = [items[i][0] for i in positions]
            if self.monitor is not None:
                self._records.batch_rows.append(sum(_rows(f) for f in group))
            if len(group) == 1:
                out[positions[0]] = served.predictor.run(group[0])
                continue
            feeds = {k: np.concatenate([f[k] for f in group]) for k in group[0]}
            result = served.predictor.run(feeds)
            start = 0
            for i, f in zip(positions, group, strict=True):
                stop = start + _rows(f)
                scores = None if result.scores is None else result.scores[start:stop]
                out[i] = Prediction(labels=result.labels[start:stop], scores=scores)
                start = stop
        return out  # type: ignore[return-value]

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
        aliases = self.registry.aliases(self.model_name)
        served = {
            "name": self.model_name,
            "version": self.version,
            "aliases": sorted(a for a, v in aliases.items() if v == self.version),
            "served_alias": self.config.alias,
            "task": self.signature.task,
            "model_type": self.manifest.get("model_type"),
            "created_at": self.manifest.get("created_at"),
            "metrics": self.manifest.get("metrics", {}).get("test"),
        }
        routing = self.routing
        return _json(
            {
                "models": [served],
                "aliases": aliases,
                "routing": {
                    "champion": routing.champion,
                    "challenger": routing.challenger,
                    "challenger_share": routing.weight,
                    "shadow": routing.shadow,
                },
            }
        )

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
            "versions": [str(n) for n in sorted(self.versions)],
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
        body = await self.predict_body(request.scope["headers"], name, await request.body(), [])
        return Response(body, media_type="application/json")

    async def v2_infer(self, request: Request, name: str) -> Response:
        headers = request.scope["headers"]
        body = await self.infer_body(name, None, await request.body(), headers, [])
        return Response(body, media_type="application/json")

    async def v2_infer_version(self, request: Request, name: str, version: str) -> Response:
        headers = request.scope["headers"]
        body = await self.infer_body(name, version, await request.body(), headers, [])
        return Response(body, media_type="application/json")

    async def predict_body(
        self, headers: list[tuple[bytes, bytes]], name: str, raw: bytes, served: list[int]
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
        rid = _header(headers, b"x-request-id") or os.urandom(8).hex()
        model = self._choose(headers, rid)
        served.append(model.number)
        result = await self._predict(feeds, len(records), model)
        if self.monitor is not None:
            self._records.predictions.append((model.number, rid, feeds, result.labels))
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
                "version": model.number,
                "request_id": rid,
                "predictions": predictions,
            }
        )

    async def infer_body(
        self,
        name: str,
        version: str | None,
        raw: bytes,
        headers: list[tuple[bytes, bytes]],
        served: list[int],
    ) -> bytes:
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
        rid = body.get("id") if isinstance(body.get("id"), str) else os.urandom(8).hex()
        model = self.versions[int(version)] if version else self._choose(headers, rid)
        served.append(model.number)
        result = await self._predict(feeds, n, model)
        if self.monitor is not None:
            self._records.predictions.append((model.number, rid, feeds, result.labels))
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
                "model_version": str(model.number),
                "id": rid,
                "outputs": outputs,
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )

    # -- routes: monitoring ----------------------------------------------------------------
    def _monitor_handle(self) -> Any:
        if self.monitor is None:
            raise HttpError(
                409, {"error": "monitoring is off for this application (monitor.enabled=false)"}
            )
        self._ensure_background()
        return self.monitor

    async def feedback(self, request: Request) -> Response:
        """``POST /v1/feedback``: ground-truth labels for earlier predictions, by their ``id``.

        Body: ``{"labels": [{"id": "<prediction id>", "label": <true label>}, ...]}`` (or one
        such object). Labels join their predictions in the monitor's live quality windows.
        """
        monitor = self._monitor_handle()
        body = self._parse(await request.body())
        items = body.get("labels", [body]) if isinstance(body, dict) else body
        if not isinstance(items, list) or not 1 <= len(items) <= 10_000:
            raise RequestInvalid(
                [Problem(("body", "labels"), "expected 1 to 10000 {id, label} objects", "type")]
            )
        problems: list[Problem] = []
        pairs: list[tuple[str, Any]] = []
        allowed = set(self.classes)
        for i, item in enumerate(items):
            where = ("body", "labels", i)
            if not isinstance(item, dict) or set(item) != {"id", "label"}:
                problems.append(Problem(where, "expected an object with `id` and `label`", "type"))
                continue
            rid, label = item["id"], item["label"]
            if not isinstance(rid, str) or not rid:
                problems.append(Problem((*where, "id"), "expected a prediction id", "type"))
            elif self.classification and str(label) not in allowed:
                problems.append(
                    Problem((*where, "label"), f"expected one of {sorted(allowed)}", "enum")
                )
            elif not self.classification and (
                isinstance(label, bool)
                or not isinstance(label, int | float)
                or not math.isfinite(label)
            ):
                problems.append(Problem((*where, "label"), "expected a finite number", "type"))
            else:
                pairs.append((rid, str(label) if self.classification else float(label)))
        if problems:
            raise RequestInvalid(problems)
        return _json(await monitor.feedback.remote(pairs))

    async def admin_monitor(self, request: Request) -> Response:
        """Live drift, quality per version, rollout state and the latest audit entries."""
        status = await self._monitor_handle().status.remote()
        status["audit"] = self.registry.audit(self.model_name)[-20:]
        status["audit_intact"] = not self.registry.verify_audit(self.model_name)
        status["replica_routing"] = self.routing.__dict__
        return _json(status)

    async def _admin_move(self, request: Request, action: str) -> Response:
        entry = self.authorize(request.scope["headers"], "admin")
        actor = f"api-key:{entry.name}" if entry is not None else "admin (auth off)"
        raw = await request.body()
        body = self._parse(raw) if raw.strip() else {}
        if not isinstance(body, dict) or set(body) - {"version", "reason"}:
            raise RequestInvalid(
                [Problem(("body",), "expected {version?: int, reason?: str}", "type")]
            )
        version = body.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise RequestInvalid([Problem(("body", "version"), "expected an integer", "type")])
        reason = str(body.get("reason") or f"manual {action} through the admin API")
        monitor = self._monitor_handle()
        result = await getattr(monitor, action).remote(actor, version, reason)
        if "error" in result:
            raise HttpError(409, result)
        return _json({"action": action, "actor": actor, "reason": reason, **result})

    async def admin_promote(self, request: Request) -> Response:
        """Make the challenger (or ``version``) champion, now; audited with the key's name."""
        return await self._admin_move(request, "promote")

    async def admin_rollback(self, request: Request) -> Response:
        """Drop the challenger, or restore the previous champion (or ``version``)."""
        return await self._admin_move(request, "rollback")

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


MONITOR = "Monitor"


def build_app(args: dict[str, Any]) -> Application:
    """Application builder (``import_path: framework.serving.app:build_app``)."""
    from ray.serve.config import BackpressureConfig

    from framework.monitoring.service import Monitor

    settings = AppArgs.model_validate(args)
    options = deployment_options(settings.serve)
    deployment = serve.deployment(name=DEPLOYMENT)(ModelServer).options(**options)
    deployment = deployment.options(
        backpressure_config=BackpressureConfig(
            status_code=503, retry_after_s=settings.serve.retry_after_s
        )
    )
    plain = settings.model_dump(mode="json")
    if not settings.monitor.enabled:
        return deployment.bind(plain)
    monitor = serve.deployment(name=MONITOR)(Monitor).options(**monitor_options(settings))
    return deployment.bind(plain, monitor.bind(plain))


def monitor_options(settings: AppArgs) -> dict[str, Any]:
    """The monitor is one replica: it holds the windows and takes the rollout decisions."""
    return {
        "num_replicas": 1,
        "max_ongoing_requests": 256,
        "ray_actor_options": {"num_cpus": 0.1},
        "health_check_period_s": settings.serve.health_check_period_s,
    }
