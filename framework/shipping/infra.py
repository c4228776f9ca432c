"""Infra validation: does the registered candidate actually serve, as configured, in time?

The candidate runs as a staging Ray Serve application on the cluster the pipeline joined,
beside whatever serves there: its own application name and route prefix, the production
``serve`` settings (replicas, threads, batching, ingress), the monitor and the task queue
off, and one API key whose hash lies in a folder of the registry (shared storage that every
replica reads) while the key itself stays in this process. Then:

1. warm-up requests, not timed;
2. replay: reference rows (the version's ``reference.npz``), one per request; every answer
   must equal the offline ONNX Runtime prediction of the same row (labels exactly, scores
   within ``tolerance``);
3. load: requests at a fixed rate (open loop: a slow answer does not slow the sender) for
   ``duration_s``; 0 errors and a p99 within ``p99_ms``;
4. teardown: the staging application is deleted, its key folder removed, and a Serve this
   step started is shut down again.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from framework.config import RootConfig
from framework.config.app import AppConfig
from framework.config.monitor import MonitorConfig
from framework.config.pipeline import InfraValidationConfig
from framework.config.serve import AsyncConfig
from framework.errors import InfraValidationError
from framework.progress import Stages
from framework.store.registry import ModelVersion

#: Folder of the registry that holds each staging application's key hashes while it runs.
STAGING_KEYS = ".staging"


@dataclass
class LoadFigures:
    """What the fixed-rate load measured."""

    sent: int = 0
    ok: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    achieved_rps: float = 0.0


@dataclass
class InfraReport:
    """The staging application, what it answered, and the verdict."""

    app: str
    url: str
    version: int
    deploy_s: float = 0.0
    warmup: int = 0
    replayed: int = 0
    mismatches: list[str] = field(default_factory=list)
    load: LoadFigures = field(default_factory=LoadFigures)
    budget_p99_ms: float = 0.0
    rate_rps: float = 0.0
    reasons: list[str] = field(default_factory=list)
    torn_down: bool = False

    @property
    def passed(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def reference_records(version: ModelVersion, rows: int, seed: int) -> list[dict[str, Any]]:
    """Up to ``rows`` request rows from the version's reference sample, typed per its schema."""
    from framework.monitoring.drift import load_reference

    features, _ = load_reference(version.file("reference.npz").read_bytes())
    schema = version.manifest["schema"]
    signature = version.manifest["signature"]
    names = [*signature["numeric"], *signature["categorical"]]
    total = len(next(iter(features.values()))) if features else 0
    order = np.random.default_rng(seed).permutation(total)[:rows]
    records = []
    for i in order.tolist():
        row: dict[str, Any] = {}
        for name in names:
            value = features[name][i]
            dtype = schema.get(name, {}).get("dtype")
            if name in signature["categorical"]:
                row[name] = None if value == "" else str(value)
            elif isinstance(value, float | np.floating) and math.isnan(float(value)):
                row[name] = None
            elif dtype == "int":
                row[name] = round(float(value))
            elif dtype == "bool":
                row[name] = bool(round(float(value)))
            else:
                row[name] = float(value)
        records.append(row)
    return records


def compare(
    body: dict[str, Any], expected: Any, row: int, classes: list[str], tolerance: float
) -> str | None:
    """How a served answer for one row differs from the offline prediction (None: equal)."""
    served = body.get("predictions") or [{}]
    got = served[0]
    if classes:
        label = str(expected.labels[0])
        if str(got.get("label")) != label:
            return f"row {row}: served label {got.get('label')!r}, offline {label!r}"
        probabilities = got.get("probabilities") or {}
        assert expected.scores is not None
        for k, name in enumerate(classes):
            want = float(expected.scores[0][k])
            have = probabilities.get(name)
            # the response rounds probabilities to 6 decimals
            if have is None or abs(float(have) - want) > tolerance + 5e-7:
                return f"row {row}: served P({name})={have}, offline {want:.6f}"
        return None
    want = float(expected.labels[0])
    have = got.get("value")
    if have is None or abs(float(have) - want) > tolerance * max(1.0, abs(want)):
        return f"row {row}: served value {have}, offline {want}"
    return None


def row_of(prediction: Any, i: int) -> Any:
    """Row ``i`` of a batch prediction, as a prediction of one row."""
    from framework.export.predictor import Prediction

    scores = prediction.scores
    return Prediction(prediction.labels[i : i + 1], None if scores is None else scores[i : i + 1])


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else 0.0


class StagingApp:
    """The candidate deployed under its own name, prefix and key; removed on exit."""

    def __init__(self, cfg: RootConfig, version: ModelVersion, run_id: str):
        from framework.security.keys import add_key

        self.cfg = cfg
        self.version = version
        base = cfg.serve.app_name or cfg.model_name
        self.name = f"{base}-staging-{run_id}"
        self.prefix = f"{cfg.pipeline.infra.route_prefix.rstrip('/')}/{run_id}"
        store = Path(cfg.store.path).expanduser().resolve()
        (store / STAGING_KEYS).mkdir(parents=True, exist_ok=True)
        self.keys_dir = Path(tempfile.mkdtemp(prefix=f"{run_id}-", dir=store / STAGING_KEYS))
        self.key, _ = add_key(self.keys_dir / "api_keys.json", "pipeline", ["predict"])
        self.started_serve = False
        self.url = ""

    def settings(self) -> AppConfig:
        from framework.serving.deploy import app_args

        args = app_args(self.cfg)
        serve = args.serve.model_copy(
            update={
                "alias": str(self.version.version),
                "app_name": self.name,
                "route_prefix": self.prefix,
                "queue": AsyncConfig(),
            }
        )
        security = args.security.model_copy(
            update={
                "auth": "api_key",
                "keys_file": str(self.keys_dir / "api_keys.json"),
                "keys_env": None,
            }
        )
        return args.model_copy(
            update={"serve": serve, "security": security, "monitor": MonitorConfig(enabled=False)}
        )

    def deploy(self, timeout_s: float) -> None:
        from ray import serve
        from ray.serve.context import _get_global_client

        from framework.serving.deploy import _free_port, build_app, startup_failure

        client = _get_global_client(raise_if_no_controller_running=False)
        if client is None:
            port = _free_port("127.0.0.1")
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            self.started_serve = True
            host = "127.0.0.1"
        else:
            http = client.http_config
            host, port = http.host, http.port
            if host in ("0.0.0.0", "::", ""):
                host = "127.0.0.1"
        self.url = f"http://{host}:{port}{self.prefix}"
        serve._run(
            build_app(self.settings()), name=self.name, route_prefix=self.prefix, _blocking=False
        )
        deadline = time.monotonic() + timeout_s
        while True:
            status = serve.status().applications.get(self.name)
            state = str(getattr(status, "status", ""))
            if state.endswith("RUNNING"):
                break
            if state.endswith("DEPLOY_FAILED") or state.endswith("UNHEALTHY"):
                raise InfraValidationError(
                    f"the staging application did not start: {startup_failure(self.name)}",
                    path="pipeline.infra",
                )
            if time.monotonic() > deadline:
                raise InfraValidationError(
                    f"the staging application was not running after {timeout_s:.0f} s "
                    f"({state or 'no status'}: {startup_failure(self.name) or 'no message'})",
                    path="pipeline.infra.deploy_timeout_s",
                    hint="the cluster may lack the CPUs for the staging replicas beside the "
                    "serving application",
                )
            time.sleep(0.5)

    def teardown(self) -> bool:
        """Delete the application (and a Serve this step started); True when it is gone."""
        from ray import serve

        gone = True
        try:
            serve.delete(self.name)
            if self.started_serve:
                serve.shutdown()
        except Exception:
            gone = False
        shutil.rmtree(self.keys_dir, ignore_errors=True)
        return gone


async def _exercise(
    staging: StagingApp, infra: InfraValidationConfig, report: InfraReport, seed: int
) -> None:
    """Wait for /readyz, warm up, replay and load, filling ``report``."""
    import aiohttp

    from framework.export.predictor import OnnxPredictor
    from framework.export.signature import Signature

    version = staging.version
    signature = Signature.from_dict(version.manifest["signature"])
    classes = [str(c) for c in signature.classes] if signature.classification else []
    predictor = OnnxPredictor(version.file("model.onnx").read_bytes(), signature, 1)
    records = reference_records(version, infra.replay_rows, seed)
    if not records:
        report.reasons.append("the version's reference sample holds no rows to replay")
        return
    predict = f"{staging.url}/v1/models/{version.name}/predict"
    headers = {staging.cfg.security.header: staging.key, "content-type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=infra.request_timeout_s)
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        deadline = time.monotonic() + infra.deploy_timeout_s
        while True:  # the ingress learns the new route a moment after the app runs
            try:
                async with session.get(f"{staging.url}/readyz") as response:
                    if response.status == 200:
                        break
                    seen = f"HTTP {response.status}"
            except aiohttp.ClientError as exc:
                seen = str(exc) or type(exc).__name__
            if time.monotonic() > deadline:
                report.reasons.append(f"{staging.url}/readyz never answered 200 (last: {seen})")
                return
            await asyncio.sleep(0.25)

        async def post(rows: list[dict[str, Any]]) -> tuple[int, Any]:
            async with session.post(predict, json=rows, headers=headers) as response:
                status = response.status
                body = await response.json(content_type=None) if status == 200 else None
                if status != 200:
                    body = (await response.text())[:300]
                return status, body

        for i in range(infra.warmup_requests):
            await post([records[i % len(records)]])
        report.warmup = infra.warmup_requests

        semaphore = asyncio.Semaphore(8)
        offline = predictor.predict_records(records)  # one ONNX Runtime call

        async def replay(i: int, row: dict[str, Any]) -> str | None:
            async with semaphore:
                try:
                    status, body = await post([row])
                except (TimeoutError, aiohttp.ClientError) as exc:
                    return f"row {i}: {type(exc).__name__} {exc}"
            if status != 200:
                return f"row {i}: HTTP {status} {body}"
            return compare(body, row_of(offline, i), i, classes, infra.tolerance)

        found = await asyncio.gather(*(replay(i, r) for i, r in enumerate(records)))
        report.replayed = len(records)
        report.mismatches = [m for m in found if m is not None][:20]
        mismatched = sum(m is not None for m in found)
        if mismatched:
            report.reasons.append(
                f"{mismatched} of {len(records)} replayed rows were not answered as the offline "
                f"ONNX prediction (first: {report.mismatches[0]})"
            )

        latencies: list[float] = []
        figures = report.load

        async def timed(i: int) -> None:
            start = i * infra.rows_per_request
            rows = [records[(start + k) % len(records)] for k in range(infra.rows_per_request)]
            began = time.perf_counter()
            try:
                status, body = await post(rows)
            except (TimeoutError, aiohttp.ClientError) as exc:
                status, body = 0, f"{type(exc).__name__} {exc}"
            latencies.append((time.perf_counter() - began) * 1000.0)
            if status == 200:
                figures.ok += 1
            else:
                figures.errors += 1
                if len(figures.error_samples) < 5:
                    figures.error_samples.append(f"HTTP {status}: {body}")

        total = max(1, round(infra.rate_rps * infra.duration_s))
        began = time.perf_counter()
        tasks = []
        for i in range(total):
            wait = began + i / infra.rate_rps - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(timed(i)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - began
        figures.sent = total
        figures.achieved_rps = total / elapsed if elapsed > 0 else 0.0
        figures.p50_ms = percentile(latencies, 50)
        figures.p95_ms = percentile(latencies, 95)
        figures.p99_ms = percentile(latencies, 99)
        figures.max_ms = max(latencies, default=0.0)
        if figures.errors:
            report.reasons.append(
                f"{figures.errors} of {total} load requests failed (first: "
                f"{figures.error_samples[0]})"
            )
        if figures.p99_ms > infra.p99_ms:
            report.reasons.append(
                f"p99 latency {figures.p99_ms:.1f} ms at {infra.rate_rps:g} requests/s is over "
                f"the budget of {infra.p99_ms:g} ms (pipeline.infra.p99_ms)"
            )


def validate_infra(
    cfg: RootConfig, version: ModelVersion, run_id: str, stages: Stages
) -> InfraReport:
    """Deploy, warm up, replay, load and tear down the staging application; never raises
    for what the candidate did (the report's ``reasons`` say it), only for a failed deploy."""
    infra = cfg.pipeline.infra
    staging = StagingApp(cfg, version, run_id)
    report = InfraReport(
        app=staging.name,
        url=staging.prefix,
        version=version.version,
        budget_p99_ms=infra.p99_ms,
        rate_rps=infra.rate_rps,
    )
    try:
        with stages.stage(f"deploy the staging application {staging.name} at {staging.prefix}"):
            began = time.perf_counter()
            staging.deploy(infra.deploy_timeout_s)
            report.url = staging.url
            report.deploy_s = time.perf_counter() - began
        with stages.stage(
            f"warm up, replay {infra.replay_rows} reference rows, load at {infra.rate_rps:g} "
            f"requests/s for {infra.duration_s:g} s"
        ):
            asyncio.run(_exercise(staging, infra, report, cfg.train.seed))
    finally:
        with stages.stage("tear down the staging application"):
            report.torn_down = staging.teardown()
    return report
