"""What each route does, given the replica's parts. The route table (``routes``) points here.

A handler takes a ``Call`` (path parameters, headers, the body already read within its limit,
the caller's key) and returns a ``Reply``; it refuses by raising ``HttpError`` or
``RequestInvalid``. A prediction that fails inside a version raises ``PredictionFailed``:
the only error counted against that version.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from framework.config.app import AppConfig
from framework.errors import FrameworkError
from framework.export.ood import OodScorer
from framework.export.signature import NUMERIC_INPUT
from framework.monitoring.protocol import AliasMove, FeedbackResult
from framework.security.keys import ApiKey
from framework.serving.auth import Gatekeeper
from framework.serving.codec import (
    Answer,
    decode_labels,
    decode_move,
    decode_records,
    encode_predictions,
)
from framework.serving.problems import HttpError, Problem, RequestInvalid
from framework.serving.recorder import Recorder
from framework.serving.router import LoadedVersion, VersionRouter
from framework.serving.rules import Feeds, RequestRules
from framework.serving.tasks import TaskHandlers
from framework.serving.tensors import (
    EXTENSIONS,
    HEADER_LENGTH,
    InferRequest,
    decode_infer,
    encode_infer,
    model_metadata,
)
from framework.store.registry import ModelRegistry

JSON = "application/json"
logger = logging.getLogger("ray.serve")
_VERSION = re.compile(r"[0-9]{1,9}")
_CORRELATION = re.compile(rb"[\x21-\x7e]{1,128}")


@dataclass
class Call:
    """One request as a handler sees it."""

    params: dict[str, str]
    headers: dict[bytes, bytes]
    body: bytes
    key: ApiKey | None
    started: float = field(default_factory=time.perf_counter)


@dataclass
class Reply:
    """A handler's answer; ``version``: the model version that answered, if one did."""

    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = JSON
    version: int | None = None


class PredictionFailed(Exception):
    """A version failed to predict (a server-side failure, counted against it)."""

    def __init__(self, version: int, cause: Exception):
        super().__init__(f"v{version}: {type(cause).__name__}")
        self.version = version
        self.cause = cause


def _json(body: Any, version: int | None = None) -> Reply:
    return Reply(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), version=version)


def ood_verdict(
    policy: str, detector: OodScorer, numeric: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray | None, list[Problem]]:
    """Scores and flags of each row, and (policy ``reject``) a problem per flagged row."""
    if policy == "off":
        return None, None, []
    distance, score = detector.score(numeric)
    flagged = detector.flagged(distance)
    problems = []
    if policy == "reject":
        for i in np.flatnonzero(flagged)[:20]:
            furthest = ", ".join(f"{n} ({z} IQR)" for n, z in detector.furthest(numeric[i]))
            problems.append(
                Problem(
                    ("body", int(i)),
                    f"row {int(i)} is out of the training distribution (in-distribution score "
                    f"{float(score[i]):.4f}, distance {float(distance[i]):.1f} > threshold "
                    f"{detector.threshold:.1f}); furthest from training: {furthest}",
                    "out_of_distribution",
                    row=int(i),
                )
            )
    return score, flagged, problems


def screen_ood(policy: str, version: LoadedVersion, feeds: Feeds, recorder: Any) -> tuple[Any, Any]:
    """The version's out-of-distribution verdict per row, for predict and the consumers alike:
    flagged rows are counted by version; with policy ``reject`` they raise ``RequestInvalid``."""
    if version.ood is None or NUMERIC_INPUT not in feeds:
        return None, None
    score, flagged, problems = ood_verdict(policy, version.ood, feeds[NUMERIC_INPUT])
    if flagged is not None and flagged.any():
        recorder.out_of_distribution(version.number, int(flagged.sum()))
    if problems:
        raise RequestInvalid(problems)
    return score, flagged


class Handlers(TaskHandlers):
    """The route handlers of one replica, over its parts."""

    def __init__(
        self,
        settings: AppConfig,
        registry: ModelRegistry,
        router: VersionRouter,
        rules: RequestRules,
        gate: Gatekeeper,
        recorder: Recorder,
        monitor: Any,
        openapi: bytes,
        docs: bytes,
    ):
        self.settings = settings
        self.serve = settings.serve
        self.registry = registry
        self.router = router
        self.rules = rules
        self.gate = gate
        self.recorder = recorder
        self.monitor = monitor
        self.model = router.model_name
        self.sticky = settings.monitor.rollout.sticky_header.lower().encode()
        self.openapi_body = openapi
        self.docs_body = docs
        self.started = time.time()
        self._queue_init(settings)

    # -- helpers ---------------------------------------------------------------------------
    def _named(self, call: Call) -> None:
        name = call.params["name"]
        if name != self.model:
            raise HttpError(404, f"model {name[:64]!r} is not served here; this is {self.model!r}")

    def _version(self, call: Call) -> LoadedVersion:
        self._named(call)
        text = call.params["version"]
        loaded = self.router.get(int(text)) if _VERSION.fullmatch(text) else None
        if loaded is None:
            served = ", ".join(f"v{n}" for n in sorted(self.router.versions))
            raise HttpError(404, f"{self.model} v{text[:16]!r} is not served; {served} are")
        return loaded

    def _monitor(self) -> Any:
        if self.monitor is None:
            raise HttpError(409, "monitoring is off for this application (monitor.enabled=false)")
        return self.monitor

    async def _ask(self, call: Any) -> Any:
        try:
            return await call
        except Exception as exc:
            raise HttpError(
                503,
                f"the monitor is not available: {type(exc).__name__}",
                headers={"Retry-After": "1"},
            ) from None

    async def _answer(
        self, call: Call, feeds: Feeds, rows: int, fixed: LoadedVersion | None
    ) -> Answer:
        rid = os.urandom(10).hex()  # prediction ids are the server's own, never the caller's
        sticky = call.headers.get(self.sticky)
        version = fixed or self.router.choose(sticky.decode("latin-1") if sticky else None, rid)
        score, flagged = self._out_of_distribution(version, feeds)
        try:
            result = await self.router.predict(feeds, rows, version)
        except Exception as exc:
            raise PredictionFailed(version.number, exc) from exc
        self.recorder.predicted(version.number, rid, feeds, result.labels)
        return Answer(version.number, rid, result.labels, result.scores, score, flagged)

    def _out_of_distribution(self, version: LoadedVersion, feeds: Feeds) -> tuple[Any, Any]:
        """The detector's verdict per row (``serve.ood``); ``reject`` refuses with 422."""
        return screen_ood(self.serve.ood, version, feeds, self.recorder)

    def _correlation(self, call: Call) -> str | None:
        value = call.headers.get(b"x-request-id")
        return value.decode("ascii") if value and _CORRELATION.fullmatch(value) else None

    # -- prediction ------------------------------------------------------------------------
    async def predict(self, call: Call) -> Reply:
        self._named(call)
        feeds, rows = decode_records(self.rules, call.body, self.serve.max_rows_per_request)
        answer = await self._answer(call, feeds, rows, None)
        body = encode_predictions(
            self.model, answer, self.router.first.signature, self._correlation(call)
        )
        return Reply(body, version=answer.version)

    async def explain(self, call: Call) -> Reply:
        self._named(call)
        feeds, _ = decode_records(self.rules, call.body, self.serve.max_rows_per_explain)
        sticky = call.headers.get(self.sticky)
        version = self.router.choose(
            sticky.decode("latin-1") if sticky else None, os.urandom(10).hex()
        )
        explainer = await self.router.explainer(version, self.serve.explain_samples)
        if explainer is None:
            raise HttpError(
                409,
                f"{self.model} v{version.number} was registered without explanation files; "
                "train it again to explain it",
            )
        try:
            found = await asyncio.to_thread(explainer, feeds)
        except Exception as exc:  # the explainer's own failure, not the version's prediction
            logger.error("explaining with v%s failed", version.number, exc_info=exc)
            raise HttpError(500, f"the explanation failed: {type(exc).__name__}") from None
        body: dict[str, Any] = {
            "model": self.model,
            "version": version.number,
            "method": found.method,
            "exact": explainer.exact,
            "additive": found.additive,
            "output_space": found.output_space,
            "outputs": found.outputs,
            "explanations": found.records(),
        }
        if found.notes:
            body["notes"] = found.notes
        request_id = self._correlation(call)
        if request_id:
            body["id"] = request_id
        return _json(body, version.number)

    async def v2_infer(self, call: Call) -> Reply:
        self._named(call)
        return await self._infer(call, None)

    async def v2_infer_version(self, call: Call) -> Reply:
        return await self._infer(call, self._version(call))

    async def _infer(self, call: Call, fixed: LoadedVersion | None) -> Reply:
        length = call.headers.get(HEADER_LENGTH)
        request: InferRequest = decode_infer(
            self.rules,
            call.body,
            length.decode("latin-1") if length is not None else None,
            self.serve.max_rows_per_request,
        )
        answer = await self._answer(call, request.feeds, request.rows, fixed)
        body, headers = encode_infer(self.model, answer, request, self.router.first.signature)
        media = "application/octet-stream" if headers else JSON
        return Reply(body, headers=headers, media_type=media, version=answer.version)

    # -- probes and metadata -------------------------------------------------------------------
    async def healthz(self, call: Call) -> Reply:
        return _json({"status": "ok"})

    async def readyz(self, call: Call) -> Reply:
        routing = self.router.routing
        body: dict[str, Any] = {
            "ready": not routing.problems,
            "model": self.model,
            "version": self.router.champion.number,
        }
        if routing.problems or routing.refused:
            body["verification"] = {
                "problems": list(routing.problems),
                "refused": {str(v): reason for v, reason in routing.refused},
            }
        if routing.problems:
            body["error"] = "not ready: " + "; ".join(routing.problems)
        reply = _json(body)
        if routing.problems:
            reply.status = 503
        return reply

    async def v2_live(self, call: Call) -> Reply:
        return _json({"live": True})

    async def v2_ready(self, call: Call) -> Reply:
        return _json({"ready": True})

    async def v2_model_ready(self, call: Call) -> Reply:
        self._named(call)
        return _json({"name": self.model, "ready": True})

    async def v2_version_ready(self, call: Call) -> Reply:
        loaded = self._version(call)
        return _json({"name": self.model, "version": str(loaded.number), "ready": True})

    async def v2_server(self, call: Call) -> Reply:
        return _json({"name": "framework", "version": _package_version(), "extensions": EXTENSIONS})

    async def v2_model(self, call: Call) -> Reply:
        self._named(call)
        return _json(model_metadata(self.model, sorted(self.router.versions), self.rules))

    async def v2_model_version(self, call: Call) -> Reply:
        self._version(call)
        return _json(model_metadata(self.model, sorted(self.router.versions), self.rules))

    async def list_models(self, call: Call) -> Reply:
        champion = self.router.champion
        aliases = self.registry.aliases(self.model)
        manifest = champion.manifest
        routing = self.router.routing
        served = {
            "name": self.model,
            "version": champion.number,
            "aliases": sorted(a for a, v in aliases.items() if v == champion.number),
            "served_alias": self.serve.alias,
            "task": champion.signature.task,
            "model_type": manifest.get("model_type"),
            "created_at": manifest.get("created_at"),
            "metrics": manifest.get("metrics", {}).get("test"),
        }
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

    async def openapi(self, call: Call) -> Reply:
        return Reply(self.openapi_body)

    async def docs(self, call: Call) -> Reply:
        return Reply(self.docs_body, media_type="text/html; charset=utf-8")

    # -- monitoring and admin --------------------------------------------------------------------
    async def feedback(self, call: Call) -> Reply:
        monitor = self._monitor()
        labels = decode_labels(
            call.body, self.router.first.signature, self.serve.max_labels_per_request
        )
        result: FeedbackResult = await self._ask(monitor.feedback.remote(labels))
        return _json(result.as_dict())

    async def admin_monitor(self, call: Call) -> Reply:
        status = await self._ask(self._monitor().status.remote())
        status["audit"] = self.registry.audit(self.model)[-20:]
        try:
            status["audit_problems"] = await asyncio.to_thread(
                self.registry.verify_audit, self.model
            )
        except FrameworkError as exc:
            status["audit_problems"] = [exc.message]
        status["audit_intact"] = not status["audit_problems"]
        status["replica_routing"] = self.router.routing.as_dict()
        return _json(status)

    async def admin_promote(self, call: Call) -> Reply:
        return await self._move(call, "promote")

    async def admin_rollback(self, call: Call) -> Reply:
        return await self._move(call, "rollback")

    async def _move(self, call: Call, action: str) -> Reply:
        request = decode_move(call.body)
        monitor = self._monitor()
        actor = f"api-key:{call.key.name}" if call.key is not None else "admin (auth off)"
        reason = request.reason or f"manual {action} through the admin API"
        method = monitor.promote if action == "promote" else monitor.rollback
        move: AliasMove = await self._ask(method.remote(actor, request.version, reason))
        if move.error is not None:
            raise HttpError(409, move.error + (f" ({move.hint})" if move.hint else ""))
        return _json(
            {
                "action": action,
                "actor": actor,
                "reason": reason,
                "changes": move.changes,
                "aliases": move.aliases,
            }
        )

    async def admin_config(self, call: Call) -> Reply:
        champion = self.router.champion
        return _json(
            {
                "serve": _without_secrets(self.serve.model_dump(mode="json")),
                "security": self.settings.security.model_dump(
                    mode="json", include={"auth", "keys_file", "keys_env", "header", "rate_limit"}
                ),
                "keys": self.gate.names,
                "model": {
                    "name": self.model,
                    "version": champion.number,
                    "files": champion.manifest.get("files"),
                    "code_version": champion.manifest.get("code_version"),
                },
                "replica_started": self.started,
            }
        )


def _without_secrets(serve: dict[str, Any]) -> dict[str, Any]:
    """The serving config as admins see it: no password in the broker URL."""
    from framework.serving.queue import safe_url

    queue = serve.get("async") or {}
    if queue.get("broker_url"):
        queue["broker_url"] = safe_url(queue["broker_url"])
    return serve


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("framework")
    except PackageNotFoundError:
        return "0"
