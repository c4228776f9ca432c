"""Config of the ``ray/`` group: which Ray cluster a command runs on, and how."""

from __future__ import annotations

from pydantic import Field, NonNegativeFloat, PositiveInt, model_validator

from framework.config.base import StrictModel


class RayConfig(StrictModel):
    """Where Ray runs.

    ``address: null`` joins the cluster already running on this machine (``RAY_ADDRESS``,
    ``ray start --head`` or a running ``task=serve``) and starts a local one only when there
    is none; ``local`` always starts a private one; ``auto``, ``host:port`` or ``ray://...``
    join that cluster and fail when it is not there.
    """

    address: str | None = Field(
        None,
        description="null: join the running cluster or start one; `local`: always start a "
        "private instance; `auto`, `host:port`, `ray://host:10001`: join that cluster.",
    )
    num_cpus: PositiveInt | None = Field(
        2,
        description="CPUs of a local instance this command starts (a joined cluster keeps "
        "its own; the output says how many it has).",
    )
    include_dashboard: bool = Field(
        True, description="Start the Ray dashboard with a local instance (Ray Jobs need it)."
    )
    dashboard_host: str = Field("127.0.0.1", description="Address the dashboard binds to.")
    dashboard_port: PositiveInt = Field(
        8265, le=65535, description="Dashboard port; when it is busy a free one is taken."
    )
    node_ip_address: str = Field(
        "127.0.0.1",
        description="Address of a local instance: loopback keeps every port it opens (its "
        "metrics endpoint too) off the network; a host address lets other nodes join.",
    )
    namespace: str = Field("framework", description="Ray namespace of the job.")
    object_store_memory_mb: PositiveInt | None = Field(
        None, description="Object store size of a local instance."
    )
    log_to_driver: bool = Field(False, description="Show worker logs in the driver's output.")
    metrics_export_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port of Ray's Prometheus metrics endpoint on a local instance (null: Ray "
        "picks one; when the one given is busy a free one is taken; task=serve prints it).",
    )
    submit: bool = Field(
        False,
        description="Run the task as a Ray Job on the cluster (Ray's Job Submission API): "
        "the project's code, conf/ and experiments/ travel in its runtime_env, logs stream "
        "here and the job's exit status is this command's.",
    )
    job_python: str | None = Field(
        None,
        description="Interpreter that runs a submitted job on the head node (null: the one "
        "running this command; `python` when the cluster's nodes have their own layout).",
    )
    resource_wait_s: NonNegativeFloat | None = Field(
        120.0,
        description="How long a task waits for the CPUs it reserves when the cluster has too "
        "few free (serving replicas hold them, say) before it fails with exit 7 naming what "
        "holds them; null: as long as it takes (an autoscaling cluster adding a node).",
    )
    job_timeout_s: PositiveInt = Field(
        6 * 3600, description="Most time a submitted job may run before it is stopped."
    )

    @model_validator(mode="after")
    def _local_only(self) -> RayConfig:
        joins = self.address is not None and self.address != "local"
        if joins and self.object_store_memory_mb is not None:
            raise ValueError(
                "object_store_memory_mb applies only to a local instance (address: null/local)"
            )
        return self
