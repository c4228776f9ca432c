"""Config of ``task=build_serve_config target=kuberay``: the KubeRay ``RayService`` and the
objects beside it (the registry's volume claim, the Prometheus ``PodMonitor``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, NonNegativeInt, PositiveInt, model_validator

from framework.config.base import StrictModel

_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"


def _text(value: Any) -> Any:
    """A number given on the command line (``cpu=4``) is the quantity ``"4"``."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


Quantity = Annotated[str, BeforeValidator(_text)]


class PodResources(StrictModel):
    """What each Ray pod of a group requests (and is limited to)."""

    cpu: Quantity = Field("2", pattern=_QUANTITY, description="CPU per pod (Kubernetes quantity).")
    memory: Quantity = Field("8Gi", pattern=_QUANTITY, description="Memory per pod.")
    gpu: NonNegativeInt = Field(0, description="NVIDIA GPUs per pod (nvidia.com/gpu).")


class WorkerGroup(PodResources):
    """The worker group: the model server, monitor and consumer replicas run here."""

    group_name: str = Field("workers", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    replicas: NonNegativeInt = Field(1, description="Workers at start.")
    min_replicas: NonNegativeInt = Field(1, description="Fewest workers (Ray's autoscaler).")
    max_replicas: PositiveInt = Field(4, description="Most workers (Ray's autoscaler).")

    @model_validator(mode="after")
    def _ordered(self) -> WorkerGroup:
        if not self.min_replicas <= self.replicas <= self.max_replicas:
            raise ValueError("replicas must lie between min_replicas and max_replicas")
        return self


class KubeRayConfig(StrictModel):
    """The Kubernetes objects written by ``task=build_serve_config target=kuberay``."""

    name: str | None = Field(
        None,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=50,
        description="RayService name (default: the application name, in DNS form).",
    )
    namespace: str | None = Field(None, description="Namespace of every object (default: none).")
    image: str = Field(
        "framework:latest", description="Image of every Ray pod (the repository's Dockerfile)."
    )
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    head: PodResources = Field(default_factory=PodResources)
    workers: WorkerGroup = Field(default_factory=WorkerGroup)
    api_keys_secret: str = Field(
        "framework-api-keys",
        description="Secret whose key `keys.json` holds the API keys' JSON ($FRAMEWORK_API_KEYS).",
    )
    audit_key_secret: str = Field(
        "framework-audit-key",
        description="Secret whose key `key` holds the registry's audit key ($FRAMEWORK_AUDIT_KEY).",
    )
    broker_secret: str = Field(
        "framework-broker",
        description="Secret with `username` and `password` of the serve.async broker (optional).",
    )
    registry_claim: str = Field(
        "framework-registry", description="PersistentVolumeClaim holding the model registry."
    )
    registry_size: Quantity = Field("10Gi", pattern=_QUANTITY, description="Its requested size.")
    registry_storage_class: str | None = Field(
        None, description="Its storage class (ReadWriteMany; default: the cluster's)."
    )
    registry_mount: str = Field(
        "/home/ray/work/model_registry", description="Where the registry is mounted in pods."
    )
    haproxy_binary: str = Field(
        "/home/ray/anaconda3/bin/framework-haproxy",
        description="framework-haproxy in the image (Ray's image installs scripts there).",
    )
    metrics: Literal["pod_monitor", "none"] = Field(
        "pod_monitor", description="Write a Prometheus Operator PodMonitor for Ray's metrics."
    )
    metrics_port: PositiveInt = Field(8080, le=65535, description="Ray's metrics export port.")
