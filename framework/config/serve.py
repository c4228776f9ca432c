"""Config of the ``serve/`` group: the Ray Serve application that answers predictions."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from framework.config.base import StrictModel


class BatchingConfig(StrictModel):
    """Request batching inside a replica (``@serve.batch``), counted in rows."""

    enabled: bool = Field(True, description="Batch concurrent requests into one ONNX call.")
    max_batch_rows: PositiveInt = Field(
        512, description="Most rows in one batch; a larger request runs as a batch of its own."
    )
    max_batch_wait_ms: NonNegativeFloat = Field(
        0.0,
        description="How long a batch waits for more requests after the first; 0 batches only "
        "requests that are already queued (no added latency when idle).",
    )


class AutoscalingConfig(StrictModel):
    """Ray Serve autoscaling of the model deployment."""

    min_replicas: NonNegativeInt = Field(1, description="Fewest replicas.")
    max_replicas: PositiveInt = Field(2, description="Most replicas.")
    initial_replicas: PositiveInt | None = Field(None, description="Replicas at start.")
    target_ongoing_requests: PositiveFloat = Field(
        8.0, description="Ongoing requests per replica the autoscaler aims for."
    )
    upscale_delay_s: NonNegativeFloat = Field(10.0, description="Load must last this long to add.")
    downscale_delay_s: NonNegativeFloat = Field(
        60.0, description="Low load must last this long to remove a replica."
    )

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})"
            )
        initial = self.initial_replicas
        if initial is not None and not self.min_replicas <= initial <= self.max_replicas:
            raise ValueError(
                f"initial_replicas ({initial}) must lie between min_replicas and max_replicas"
            )
        return self


class TlsConfig(StrictModel):
    """TLS to the broker (used with a ``rediss://`` URL)."""

    ca_file: str | None = Field(None, description="CA bundle that signed the broker's cert.")
    cert_file: str | None = Field(None, description="Client certificate (mutual TLS).")
    key_file: str | None = Field(None, description="Client certificate's private key.")
    verify: bool = Field(True, description="Check the broker's certificate and host name.")


class QueueScalingConfig(StrictModel):
    """Ray Serve autoscaling of the consumers, on the queue's backlog."""

    min_replicas: PositiveInt = Field(
        1, description="Fewest consumers (at least 1: the consumers report the backlog)."
    )
    max_replicas: PositiveInt = Field(2, description="Most consumers.")
    target_backlog: PositiveInt = Field(
        256, description="Messages waiting per consumer the autoscaler aims for."
    )
    upscale_delay_s: NonNegativeFloat = Field(5.0, description="Backlog must last this long.")
    downscale_delay_s: NonNegativeFloat = Field(
        60.0, description="A small backlog must last this long to remove a consumer."
    )

    @model_validator(mode="after")
    def _ordered(self) -> QueueScalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})"
            )
        return self


class AsyncConfig(StrictModel):
    """Asynchronous inference through a Redis stream (``serve.async``).

    ``POST /v1/models/{name}/predict_async`` checks the body like predict, adds it to the
    stream and answers 202 with a task id; consumer replicas read the stream in batches
    (a consumer group), predict with the served versions, store each result under its task
    id with a TTL and acknowledge the message only then. A message not acknowledged within
    ``visibility_timeout_s`` is delivered again; after ``max_deliveries`` it goes to the
    dead-letter stream with its reason.
    """

    enabled: bool = Field(
        False, description="Run the queue path: the predict_async route and the consumers."
    )
    broker_url: str = Field(
        "redis://127.0.0.1:6379/0",
        pattern=r"^(redis|rediss|unix)://",
        description="Redis URL (redis://host:port/db; rediss:// for TLS). Keep credentials "
        "out of it: see username_env and password_env.",
    )
    username_env: str | None = Field(
        "FRAMEWORK_BROKER_USERNAME",
        description="Environment variable holding the broker user name (ACL), when set.",
    )
    password_env: str | None = Field(
        "FRAMEWORK_BROKER_PASSWORD",
        description="Environment variable holding the broker password, when set.",
    )
    tls: TlsConfig = Field(default_factory=TlsConfig)
    stream: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Stream the tasks go to (default: framework:<app name>:<registry hash>:tasks, "
        "printed by task=serve). Results, "
        "task records and the dead-letter stream are named after it.",
    )
    group: str = Field("consumers", min_length=1, description="Consumer group of the replicas.")
    dead_letter_stream: str | None = Field(
        None, description="Where failed messages go (default: <stream>:dead)."
    )
    batch_messages: PositiveInt = Field(
        32, le=10_000, description="Most messages a consumer takes from the stream at once."
    )
    max_batch_rows: PositiveInt = Field(
        4096, description="Most rows in one ONNX Runtime call of a consumer."
    )
    block_ms: PositiveInt = Field(
        500, le=60_000, description="How long an idle consumer waits on the stream per read."
    )
    visibility_timeout_s: PositiveFloat = Field(
        30.0,
        description="A delivered message not acknowledged within this (its consumer died or "
        "hangs) is delivered to another consumer.",
    )
    retry_delay_s: NonNegativeFloat = Field(
        1.0, description="A message whose prediction failed is tried again after this."
    )
    max_deliveries: PositiveInt = Field(
        3,
        le=1000,
        description="Deliveries before a message that keeps failing goes to the dead-letter "
        "stream with its reason.",
    )
    result_ttl_s: PositiveInt = Field(
        86_400, description="How long results (and pending task records) are kept."
    )
    max_queue_length: PositiveInt = Field(
        100_000,
        description="Messages waiting at most; beyond it predict_async answers 503 with "
        "Retry-After.",
    )
    dead_letter_max_length: PositiveInt = Field(
        100_000, description="The dead-letter stream is trimmed to about this many entries."
    )
    connect_timeout_s: PositiveFloat = Field(
        1.0, description="How long a producer or consumer waits to reach the broker."
    )
    num_replicas: PositiveInt | Literal["auto"] = Field(
        "auto", description="Fixed consumer count, or `auto` to scale on the backlog."
    )
    autoscaling: QueueScalingConfig = Field(default_factory=QueueScalingConfig)
    num_cpus: PositiveFloat = Field(0.5, description="CPUs Ray reserves for each consumer.")

    @model_validator(mode="after")
    def _timeouts(self) -> AsyncConfig:
        if self.retry_delay_s >= self.visibility_timeout_s:
            raise ValueError(
                f"retry_delay_s ({self.retry_delay_s}) must be below visibility_timeout_s "
                f"({self.visibility_timeout_s})"
            )
        if self.block_ms / 1000 >= self.visibility_timeout_s:
            raise ValueError("block_ms must be well below visibility_timeout_s")
        return self


class TimeoutsConfig(StrictModel):
    """How long the ingress waits on a client; a slow or stalled client is cut off."""

    header_s: PositiveInt = Field(
        10,
        description="Most time a client may take to send a request's headers and body "
        "(HAProxy `timeout http-request`); past it: 408 and the connection is closed.",
    )
    client_idle_s: PositiveInt = Field(
        60, description="Most time a client connection may stay silent mid-request."
    )
    keep_alive_s: PositiveInt = Field(
        5, description="How long an idle keep-alive connection stays open between requests."
    )


class ServeConfig(StrictModel):
    """The serving application: which model, where it listens, how it scales and batches."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    app_name: str | None = Field(
        None, description="Ray Serve application name (default: the registered model's name)."
    )
    alias: str = Field(
        "champion", description="Registry alias (or version number) of the model to serve."
    )
    host: str = Field("127.0.0.1", description="Address the HTTP ingress binds to.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port of the application.")
    route_prefix: str = Field("/", pattern=r"^/", description="URL prefix of every route.")
    max_rows_per_request: PositiveInt = Field(
        1024,
        le=100_000,
        description="Most rows one predict or infer request may carry (more: 422).",
    )
    max_rows_per_explain: PositiveInt = Field(
        32,
        le=10_000,
        description="Most rows one explain request may carry (more: 422); model-agnostic "
        "explanations cost explain.samples model rows per row.",
    )
    explain_samples: PositiveInt | None = Field(
        None,
        description="Model-agnostic budget at serving (null: the one the version registered).",
    )
    max_body_bytes: PositiveInt = Field(
        4 * 1024 * 1024, description="Largest request body accepted on any route (more: 413)."
    )
    max_labels_per_request: PositiveInt = Field(
        10_000, description="Most labels one /v1/feedback request may carry (more: 422)."
    )
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    onnx_threads: PositiveInt = Field(1, description="ONNX Runtime intra-op threads per replica.")
    num_cpus: PositiveFloat = Field(0.5, description="CPUs Ray reserves for each replica.")
    device: Literal["cpu", "cuda", "auto"] = Field(
        "cpu",
        description="Where ONNX Runtime runs: cpu; cuda (CUDA execution provider, and "
        "`num_gpus` GPUs reserved per replica); auto (cuda where the cluster has GPUs).",
    )
    num_gpus: PositiveFloat = Field(
        1.0, description="GPUs Ray reserves for each replica when the device is cuda."
    )
    max_replicas_per_node: PositiveInt | None = Field(
        None,
        description="Most replicas of the model server on one node (1 spreads them, so a "
        "lost node costs only its share).",
    )
    memory_mb: PositiveInt | None = Field(None, description="Memory Ray reserves per replica.")
    num_replicas: PositiveInt | Literal["auto"] = Field(
        "auto", description="Fixed replica count, or `auto` to scale within `autoscaling`."
    )
    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig)
    max_ongoing_requests: PositiveInt = Field(
        64, description="Requests one replica works on at once (Ray Serve)."
    )
    max_queued_requests: int = Field(
        256,
        ge=-1,
        description="Requests allowed to wait per replica before new ones get 503 (-1: no limit).",
    )
    retry_after_s: PositiveInt = Field(1, description="Retry-After sent with a 503.")
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    ood: Literal["off", "flag", "reject"] = Field(
        "flag",
        description="Out-of-distribution rows (the version's detector.onnx): flag adds "
        "`in_distribution` and `out_of_distribution` to each prediction and counts them by "
        "version; reject answers 422 naming the row and the features furthest out; off skips it.",
    )
    queue: AsyncConfig = Field(
        default_factory=AsyncConfig,
        alias="async",
        description="Asynchronous inference through a message broker (serve.async).",
    )
    throughput_optimized: bool = Field(
        True,
        description="Ray Serve's throughput-optimized mode (direct ingress to replicas, gRPC "
        "between deployments); set before Ray starts.",
    )
    haproxy: bool = Field(
        True,
        description="Ray Serve's HAProxy ingress: balances replicas' own HTTP ports on `port`.",
    )
    drain_s: NonNegativeFloat = Field(
        2.0,
        description="How long a stopping replica keeps its port open so HAProxy takes it out "
        "first (Ray's RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S; 30 behind a cloud load "
        "balancer).",
    )
    graceful_shutdown_s: PositiveFloat = Field(
        5.0, description="How long a stopping replica finishes its ongoing requests."
    )
    health_check_period_s: PositiveFloat = Field(5.0, description="Replica health check period.")
    access_log: bool = Field(
        False,
        description="Ray Serve's per-request access log lines in the replicas' logs (the "
        "framework's request metrics count every request either way; the log line costs a "
        "few percent of a replica's CPU).",
    )
    output_dir: str = Field(
        "serve_configs", description="Folder task=build_serve_config writes to."
    )
