"""Config of the ``ray/`` group: a local Ray instance or an existing cluster."""

from __future__ import annotations

from pydantic import Field, PositiveInt, model_validator

from framework.config.base import StrictModel


class RayConfig(StrictModel):
    """Where Ray runs. ``address: null`` starts a local instance; ``auto`` joins a cluster."""

    address: str | None = Field(None, description="Cluster address (`auto`, `ray://...`).")
    num_cpus: PositiveInt | None = Field(2, description="CPUs of a local instance.")
    include_dashboard: bool = Field(True, description="Start the Ray dashboard (local only).")
    dashboard_host: str = Field("127.0.0.1", description="Address the dashboard binds to.")
    dashboard_port: PositiveInt = Field(8265, le=65535, description="Dashboard port.")
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
        "picks one; task=serve prints it).",
    )

    @model_validator(mode="after")
    def _local_only(self) -> RayConfig:
        if self.address is not None and self.object_store_memory_mb is not None:
            raise ValueError(
                "object_store_memory_mb applies only to a local instance (address: null)"
            )
        return self
