"""Build, start and describe the serving application from the typed config.

``build_app`` is the application builder Ray Serve calls (``task=serve``, or Ray's own CLI on
a config file from ``task=build_serve_config``): it validates the arguments once into an
``AppConfig`` and binds the model deployment (and the monitor beside it) to that typed object.
``serve_env`` holds Ray Serve's own switches for the fast HTTP path and the ingress; they are
read when Ray starts, so ``task=serve`` sets them before it starts a local instance, and a
cluster that is joined must have been started with them (the README shows where they go).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from ray import serve
from ray.serve import Application

from framework.config import RootConfig
from framework.config.app import AppConfig
from framework.config.serve import ServeConfig
from framework.errors import ConfigError
from framework.security.keys import load_keys, resolve_keys_file
from framework.serving import ingress
from framework.serving.names import CONSUMER
from framework.serving.replica import DEPLOYMENT, ModelServer
from framework.store.registry import ModelVersion, open_registry

IMPORT_PATH = "framework.serving.app:build_app"
MONITOR = "Monitor"
SCALING_POLICY = "framework.serving.scaling:BacklogPolicy"


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host if host not in ("0.0.0.0", "::") else "127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_http_port(host: str, port: int, refused: str | None = None) -> None:
    """Refuse, naming ``serve.port``, when a new Ray Serve ingress could not bind its port.

    ``refused``: why the cluster found on this machine was not joined (the application
    already runs there, say), which makes the likely holder of the port that application.
    """
    from framework.cluster import port_free
    from framework.errors import ClusterError

    if port_free(host, port, reuse=True):
        return
    free = f"serve.port={_free_port(host)}"
    if refused:
        hint = (
            f"{refused}, and it is likely what listens there: stop it first, serve this one "
            f"beside it under another serve.app_name and serve.route_prefix, or on a free "
            f"port ({free})"
        )
    else:
        hint = f"stop that process, or serve on a free port ({free})"
    raise ClusterError(
        f"port {port} on {host} is held by another process, so Ray Serve's ingress "
        "cannot listen there",
        path="serve.port",
        hint=hint,
    )


def haproxy_wrapper() -> str:
    """The ``framework-haproxy`` entry point installed beside this Python."""
    return str(Path(sys.executable).with_name("framework-haproxy"))


def serve_env(config: ServeConfig, run_dir: Path | None = None) -> dict[str, str]:
    """Environment variables that select Ray Serve's HTTP path; read when Ray starts.

    With ``run_dir`` (a local instance started by ``task=serve``), every port and file of
    the ingress is private to this instance: HAProxy's files, its stats and metrics ports,
    and Ray's fallback proxy (which would otherwise sit on 8500, shared by every Ray Serve
    on the host, and answer this app's traffic while it has no replica).
    """
    env = {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1" if config.throughput_optimized else "0",
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": str(config.drain_s),
        "RAY_SERVE_HTTP_KEEP_ALIVE_TIMEOUT_S": str(config.timeouts.keep_alive_s),
    }
    if config.haproxy:
        env["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
        env["RAY_SERVE_HAPROXY_BINARY_PATH"] = haproxy_wrapper()
        env[ingress.ENV_HOST] = config.host
        env[ingress.ENV_HEADER_S] = str(config.timeouts.header_s)
        env[ingress.ENV_CLIENT_S] = str(config.timeouts.client_idle_s)
    if run_dir is not None:
        env["RAY_SERVE_FALLBACK_PROXY_HTTP_PORT"] = str(_free_port(config.host))
        env["RAY_SERVE_FALLBACK_PROXY_GRPC_PORT"] = str(_free_port(config.host))
        if config.haproxy:
            # HAProxy's files default to /tmp/haproxy-serve: give each instance its own.
            env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"] = str(run_dir / "haproxy.cfg")
            env["RAY_SERVE_HAPROXY_SOCKET_PATH"] = str(run_dir / "admin.sock")
            env["RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH"] = str(run_dir / "metrics.sock")
            env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"] = str(run_dir)
            env["RAY_SERVE_HAPROXY_SERVER_STATE_FILE"] = str(run_dir / "server-state")
            env["RAY_SERVE_HAPROXY_STATS_PORT"] = str(_free_port(config.host))
            env["RAY_SERVE_HAPROXY_METRICS_PORT"] = str(_free_port(config.host))
    return env


def deployment_options(config: ServeConfig, cluster_gpus: float = 0.0) -> dict[str, Any]:
    """Ray Serve deployment options of the model server, from the ``serve/`` config."""
    from framework.export.devices import replica_gpus

    options: dict[str, Any] = {
        "max_ongoing_requests": config.max_ongoing_requests,
        "max_queued_requests": config.max_queued_requests,
        "graceful_shutdown_timeout_s": config.graceful_shutdown_s,
        "health_check_period_s": config.health_check_period_s,
        "ray_actor_options": {"num_cpus": config.num_cpus},
        "logging_config": {"enable_access_log": config.access_log},
    }
    gpus = replica_gpus(config.device, config.num_gpus, cluster_gpus)
    if gpus:
        options["ray_actor_options"]["num_gpus"] = gpus
    if config.max_replicas_per_node:
        options["max_replicas_per_node"] = config.max_replicas_per_node
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


def monitor_options(settings: AppConfig) -> dict[str, Any]:
    """The monitor is one replica: it holds the windows and takes the rollout decisions."""
    return {
        "num_replicas": 1,
        "max_ongoing_requests": 256,
        "ray_actor_options": {"num_cpus": 0.1},
        "health_check_period_s": settings.serve.health_check_period_s,
    }


def consumer_options(config: ServeConfig) -> dict[str, Any]:
    """Ray Serve options of the queue consumers (``serve.async``): scaled on the backlog."""
    queue = config.queue
    options: dict[str, Any] = {
        "max_ongoing_requests": 4,
        "graceful_shutdown_timeout_s": config.graceful_shutdown_s,
        "health_check_period_s": config.health_check_period_s,
        "ray_actor_options": {"num_cpus": queue.num_cpus},
    }
    if queue.num_replicas == "auto":
        scaling = queue.autoscaling
        options["autoscaling_config"] = {
            "min_replicas": scaling.min_replicas,
            "max_replicas": scaling.max_replicas,
            "upscale_delay_s": scaling.upscale_delay_s,
            "downscale_delay_s": scaling.downscale_delay_s,
            "metrics_interval_s": 1.0,
            "look_back_period_s": 5.0,
            "policy": {
                "policy_function": SCALING_POLICY,
                "policy_kwargs": {"target_backlog": scaling.target_backlog},
            },
        }
    else:
        options["num_replicas"] = queue.num_replicas
    return options


def build_app(args: dict[str, Any] | AppConfig) -> Application:
    """Application builder (``import_path: framework.serving.app:build_app``)."""
    from ray.serve.config import BackpressureConfig

    from framework.monitoring.service import Monitor

    settings = args if isinstance(args, AppConfig) else AppConfig.model_validate(args)
    import ray

    gpus = float(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0.0
    options = deployment_options(settings.serve, gpus)
    deployment = serve.deployment(name=DEPLOYMENT)(ModelServer).options(**options)
    deployment = deployment.options(
        backpressure_config=BackpressureConfig(
            status_code=503, retry_after_s=settings.serve.retry_after_s
        )
    )
    monitor = None
    if settings.monitor.enabled:
        monitor = serve.deployment(name=MONITOR)(Monitor).options(**monitor_options(settings))
        monitor = monitor.bind(settings)
    if not settings.serve.queue.enabled:
        return deployment.bind(settings, monitor)
    from framework.serving.consumer import QueueConsumer

    consumer = serve.deployment(name=CONSUMER)(QueueConsumer)
    consumer = consumer.options(**consumer_options(settings.serve)).bind(settings, monitor)
    return deployment.bind(settings, monitor, consumer)


def audit_key_file(cfg: RootConfig) -> str | None:
    """The audit key file as an absolute path, so replicas find it from any folder."""
    path = cfg.security.audit_key_file
    return str(Path(path).expanduser().resolve()) if path else None


def app_args(cfg: RootConfig) -> AppConfig:
    return AppConfig(
        model_name=cfg.model_name,
        store_path=str(Path(cfg.store.path).expanduser().resolve()),
        keys_base=str(Path.cwd()),
        serve=cfg.serve,
        security=cfg.security.model_copy(update={"audit_key_file": audit_key_file(cfg)}),
        monitor=cfg.monitor,
    )


def check_servable(cfg: RootConfig) -> ModelVersion:
    """Fail early, with a clear message, if the model or the keys are not ready to serve."""
    version = open_registry(cfg.store.path, cfg.security.audit_key_file).resolve(
        cfg.model_name, cfg.serve.alias
    )
    version.verify()
    if cfg.security.auth == "api_key":
        keys = load_keys(cfg.security)
        if not keys:
            where = []
            if cfg.security.keys_file:
                where.append(f"security.keys_file ({resolve_keys_file(cfg.security)})")
            if cfg.security.keys_env:
                where.append(f"${cfg.security.keys_env}")
            raise ConfigError(
                [
                    "security: auth is api_key but no API key is configured in "
                    + " or ".join(where)
                    + "; create one with `python -m framework task=api_key "
                    "security.key_name=NAME 'security.key_roles=[predict]'`, or set "
                    "security.auth=off to serve without keys"
                ]
            )
    return version


def example_row(version: ModelVersion) -> dict[str, Any]:
    """A plausible request row: the training medians and commonest categories."""
    profile_path = version.file("profile.json")
    features = json.loads(profile_path.read_text()).get("features", {})
    signature = version.manifest["signature"]
    row: dict[str, Any] = {}
    for column in signature["numeric"]:
        stats = features.get(column, {})
        value = stats.get("quantiles", {}).get("0.5", stats.get("mean", 0.0))
        dtype = version.manifest["schema"][column]["dtype"]
        row[column] = round(float(value)) if dtype == "int" else round(float(value), 4)
        if dtype == "bool":
            row[column] = bool(row[column])
    for column in signature["categorical"]:
        stats = features.get(column, {})
        top = stats.get("frequencies") or {}  # commonest first
        categories = version.manifest["schema"][column].get("categories") or []
        row[column] = next(iter(top), categories[0] if categories else "")
    return row


def serve_config_document(cfg: RootConfig) -> dict[str, Any]:
    """A Ray Serve config file: for ``serve run``/``serve deploy`` or a RayService."""
    args = app_args(cfg)
    options = deployment_options(cfg.serve)
    deployment: dict[str, Any] = {"name": DEPLOYMENT, **options}
    deployment["backpressure_config"] = {
        "status_code": 503,
        "retry_after_s": cfg.serve.retry_after_s,
    }
    if "autoscaling_config" in deployment:
        deployment["autoscaling_config"] = {
            k: v for k, v in deployment["autoscaling_config"].items() if v is not None
        }
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": cfg.serve.host, "port": cfg.serve.port},
        "applications": [
            {
                "name": cfg.serve.app_name or cfg.model_name,
                "route_prefix": cfg.serve.route_prefix,
                "import_path": IMPORT_PATH,
                "args": args.model_dump(mode="json"),
                "deployments": [deployment]
                + ([{"name": MONITOR, **monitor_options(args)}] if cfg.monitor.enabled else [])
                + (
                    [{"name": CONSUMER, **consumer_options(cfg.serve)}]
                    if cfg.serve.queue.enabled
                    else []
                ),
            }
        ],
    }


def write_serve_config(cfg: RootConfig) -> Path:
    check_servable(cfg)
    document = serve_config_document(cfg)
    name = cfg.serve.app_name or cfg.model_name
    out = Path(cfg.serve.output_dir) / f"{name}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    env = serve_env(cfg.serve)
    header = [
        f"# Ray Serve config for {name} (alias {cfg.serve.alias}), written by",
        "# `python -m framework task=build_serve_config`. Deploy it with Ray's own tools:",
        f"#   serve run {out}        (starts a local Ray) | serve deploy {out} (running cluster)",
        "# or paste it under `serveConfigV2` of a KubeRay RayService (see README).",
        "# Start Ray with these environment variables for the fast HTTP path:",
        *[f"#   {k}={v}" for k, v in env.items()],
        "# Registry and keys paths below are absolute; on a cluster they must name shared storage.",
        *(
            [
                f"# serve.async: every node must reach {cfg.serve.queue.broker_url.split('@')[-1]}"
                f"; credentials come from ${cfg.serve.queue.password_env} (set it where Ray "
                "starts).",
            ]
            if cfg.serve.queue.enabled and cfg.serve.queue.password_env
            else []
        ),
        "",
    ]
    fd, tmp = tempfile.mkstemp(prefix=".serve-", dir=out.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(header))
        yaml.safe_dump(document, handle, sort_keys=False)
    os.replace(tmp, out)
    return out


def wait_until_stopped() -> str:
    """Block until SIGINT or SIGTERM; return the signal's name.

    The handlers stay in place afterwards, so that a second signal while the application
    drains does not cut the shutdown short.
    """
    received: list[str] = []

    def handler(signum: int, frame: Any) -> None:
        received.append(signal.Signals(signum).name)

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, handler)
    while not received:
        time.sleep(0.1)
    return received[0]


def startup_failure(app_name: str) -> str | None:
    """The last line of the error a failed replica reported (its exception), if any."""
    from ray import serve

    try:
        status = serve.status().applications.get(app_name)
    except Exception:
        return None
    if status is None:
        return None
    for deployment in status.deployments.values():
        lines = [line.strip() for line in (deployment.message or "").splitlines() if line.strip()]
        errors = [line for line in lines if "Error:" in line or "Exception:" in line]
        if errors:
            return errors[-1]
    return status.message or None


def check_joinable(app_name: str, host: str, port: int) -> None:
    """Refuse to deploy onto a joined cluster where the app runs, or Serve listens elsewhere."""
    from ray.serve.context import _get_global_client

    from framework.errors import ClusterError

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return  # no Serve on the cluster yet: this command starts it
    from ray import serve

    if app_name in serve.status().applications:
        raise ClusterError(
            f"the application {app_name!r} already runs on the joined Ray cluster",
            path="serve.app_name",
            hint="stop it first, or serve beside it under another serve.app_name and "
            "serve.route_prefix (or run a private instance with ray.address=local)",
        )
    http = client.http_config
    if (getattr(http, "host", host), getattr(http, "port", port)) != (host, port):
        raise ClusterError(
            f"Ray Serve on the joined cluster listens on {http.host}:{http.port}, not on "
            f"{host}:{port}",
            path="serve.port",
            hint=f"serve beside it with serve.host={http.host} serve.port={http.port} and "
            "another serve.route_prefix, or run a private instance with ray.address=local",
        )
