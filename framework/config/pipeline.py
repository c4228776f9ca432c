"""``pipeline``: ``task=pipeline``, from data to a canaried version, and its infra validation.

Infra validation deploys the registered candidate as a staging application beside whatever
already runs on the Ray cluster, under a route prefix of its own and with an API key only
the pipeline holds; warms it up, replays reference rows, runs a short load at a declared
rate against a p99 budget, and tears it down before anything is aliased.
"""

from __future__ import annotations

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt

from framework.config.base import StrictModel


class InfraValidationConfig(StrictModel):
    """What the staging application must show before the candidate gets traffic."""

    enabled: bool = Field(
        True, description="Deploy, replay and load the candidate before aliasing it."
    )
    route_prefix: str = Field(
        "/_staging",
        pattern=r"^/[A-Za-z0-9._~/-]*$",
        description="Prefix of the staging application's routes (the run's id is appended).",
    )
    deploy_timeout_s: PositiveFloat = Field(
        180.0, description="Most time the staging application may take to become ready."
    )
    warmup_requests: NonNegativeInt = Field(
        20, description="Requests sent (and not timed) before the replay and the load."
    )
    replay_rows: PositiveInt = Field(
        200, description="Reference rows (the version's reference.npz) replayed one per request."
    )
    tolerance: float = Field(
        1e-5,
        ge=0,
        le=0.1,
        description="Largest difference between a served probability (or value) and the offline "
        "ONNX prediction; labels must be equal.",
    )
    rate_rps: PositiveFloat = Field(
        20.0, le=10_000, description="Requests per second of the load (open loop, fixed rate)."
    )
    duration_s: PositiveFloat = Field(5.0, le=600, description="How long the load runs.")
    rows_per_request: PositiveInt = Field(
        1, le=1024, description="Rows in each load request (reference rows, in turn)."
    )
    p99_ms: PositiveFloat = Field(
        100.0, description="Latency budget: the load's 99th percentile, in milliseconds."
    )
    request_timeout_s: PositiveFloat = Field(
        10.0, description="A load request unanswered after this long counts as an error."
    )


class PipelineConfig(StrictModel):
    """``task=pipeline``: validate, train, evaluate, gates, register, infra validation, alias."""

    infra: InfraValidationConfig = Field(default_factory=InfraValidationConfig)
