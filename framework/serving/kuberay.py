"""``task=build_serve_config target=kuberay``: the application as Kubernetes objects.

From the same config as ``task=serve`` and the Ray Serve config file:

- a KubeRay ``RayService`` whose ``serveConfigV2`` is that config file, with the registry
  path, keys and audit key as the pods see them; a head group and one worker group with the
  resources of ``kuberay.head`` / ``kuberay.workers`` (Ray's autoscaler between the worker
  bounds); the environment serving needs (Ray Serve's HTTP mode, the HAProxy wrapper); API
  keys, the audit key and the broker's credentials from Secrets; the registry on a
  ``ReadWriteMany`` volume; readiness on ``/readyz``; the pods run as a non-root user;
- the ``PersistentVolumeClaim`` of the registry;
- a Prometheus Operator ``PodMonitor`` on Ray's metrics port of every Ray pod.

Secrets are referenced, never written: create them with ``kubectl create secret``.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from framework.config import RootConfig
from framework.serving.deploy import serve_config_document, serve_env

PART_OF = "app.kubernetes.io/part-of"
INSTANCE = "app.kubernetes.io/instance"
API_KEYS_ENV = "FRAMEWORK_API_KEYS"
AUDIT_KEY_ENV = "FRAMEWORK_AUDIT_KEY"
WORKDIR = "/home/ray/work"


def dns_name(text: str) -> str:
    """A DNS-1123 label from an application name (``breast_cancer`` -> ``breast-cancer``)."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return (name or "framework")[:50].rstrip("-")


def in_pod(cfg: RootConfig) -> RootConfig:
    """The config as the pods see it: the registry on its volume, keys from the environment."""
    kube = cfg.kuberay
    security = cfg.security.model_copy(
        update={"keys_file": None, "keys_env": API_KEYS_ENV, "audit_key_file": None}
    )
    serve = cfg.serve.model_copy(update={"host": "0.0.0.0"})
    store = cfg.store.model_copy(update={"path": kube.registry_mount})
    return cfg.model_copy(update={"security": security, "serve": serve, "store": store})


def _secret_env(name: str, secret: str, key: str, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def environment(cfg: RootConfig) -> list[dict[str, Any]]:
    """What every Ray container needs: Ray Serve's HTTP mode (read when Ray starts), keys."""
    kube = cfg.kuberay
    env = {**serve_env(cfg.serve), "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    if cfg.serve.haproxy:
        env["RAY_SERVE_HAPROXY_BINARY_PATH"] = kube.haproxy_binary
    out: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in env.items()]
    out.append(_secret_env(API_KEYS_ENV, kube.api_keys_secret, "keys.json"))
    out.append(_secret_env(AUDIT_KEY_ENV, kube.audit_key_secret, "key"))
    queue = cfg.serve.queue
    if queue.enabled:
        if queue.username_env:
            out.append(_secret_env(queue.username_env, kube.broker_secret, "username", True))
        if queue.password_env:
            out.append(_secret_env(queue.password_env, kube.broker_secret, "password", True))
    return out


def _container(cfg: RootConfig, role: str, resources: Any) -> dict[str, Any]:
    kube = cfg.kuberay
    amounts: dict[str, Any] = {"cpu": resources.cpu, "memory": resources.memory}
    limits = dict(amounts)
    if resources.gpu:
        limits["nvidia.com/gpu"] = resources.gpu
    ports = [{"name": "metrics", "containerPort": kube.metrics_port}]
    ports.append({"name": "serve", "containerPort": cfg.serve.port})
    if role == "head":
        ports += [
            {"name": "gcs-server", "containerPort": 6379},
            {"name": "dashboard", "containerPort": 8265},
            {"name": "client", "containerPort": 10001},
        ]
    prefix = cfg.serve.route_prefix.rstrip("/")
    container: dict[str, Any] = {
        "name": f"ray-{role}",
        "image": kube.image,
        "imagePullPolicy": kube.image_pull_policy,
        "workingDir": WORKDIR,
        "env": environment(cfg),
        "ports": ports,
        "resources": {"requests": amounts, "limits": limits},
        "volumeMounts": [{"name": "registry", "mountPath": kube.registry_mount}],
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True},
    }
    if role == "worker":
        container["readinessProbe"] = {
            "httpGet": {"path": f"{prefix}/readyz", "port": cfg.serve.port},
            "initialDelaySeconds": 10,
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        }
    return container


def _pod(cfg: RootConfig, role: str, resources: Any, name: str) -> dict[str, Any]:
    kube = cfg.kuberay
    return {
        "metadata": {"labels": {PART_OF: "framework", INSTANCE: name}},
        "spec": {
            "securityContext": {"runAsUser": 1000, "runAsGroup": 100, "fsGroup": 100},
            "containers": [_container(cfg, role, resources)],
            "volumes": [
                {"name": "registry", "persistentVolumeClaim": {"claimName": kube.registry_claim}}
            ],
        },
    }


def manifests(cfg: RootConfig) -> list[dict[str, Any]]:
    """The RayService, the registry's claim and the PodMonitor, as plain data."""
    import ray

    kube = cfg.kuberay
    name = resource_name(cfg)
    pod_cfg = in_pod(cfg)
    document = serve_config_document(pod_cfg)
    for app in document["applications"]:
        app["args"]["keys_base"] = WORKDIR
    metadata: dict[str, Any] = {"name": name, "labels": {PART_OF: "framework", INSTANCE: name}}
    if kube.namespace:
        metadata["namespace"] = kube.namespace
    workers = kube.workers
    service = {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": metadata,
        "spec": {
            "serveConfigV2": yaml.safe_dump(document, sort_keys=False),
            "rayClusterConfig": {
                "rayVersion": ray.__version__,
                "enableInTreeAutoscaling": True,
                "headGroupSpec": {
                    "rayStartParams": {
                        "dashboard-host": "0.0.0.0",
                        "metrics-export-port": str(kube.metrics_port),
                    },
                    "template": _pod(pod_cfg, "head", kube.head, name),
                },
                "workerGroupSpecs": [
                    {
                        "groupName": workers.group_name,
                        "replicas": workers.replicas,
                        "minReplicas": workers.min_replicas,
                        "maxReplicas": workers.max_replicas,
                        "rayStartParams": {"metrics-export-port": str(kube.metrics_port)},
                        "template": _pod(pod_cfg, "worker", workers, name),
                    }
                ],
            },
        },
    }
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": kube.registry_size}},
    }
    if kube.registry_storage_class:
        claim_spec["storageClassName"] = kube.registry_storage_class
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {**metadata, "name": kube.registry_claim},
        "spec": claim_spec,
    }
    out = [service, claim]
    if kube.metrics == "pod_monitor":
        out.append(
            {
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "PodMonitor",
                "metadata": {**metadata, "name": f"{name}-ray"},
                "spec": {
                    "selector": {"matchLabels": {INSTANCE: name}},
                    "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics"}],
                },
            }
        )
    return out


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (``serveConfigV2``) as literal blocks, readable as YAML."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(objects: list[dict[str, Any]]) -> str:
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False)


def resource_name(cfg: RootConfig) -> str:
    """The RayService's name: ``kuberay.name``, else the application's name as a DNS label."""
    return cfg.kuberay.name or dns_name(cfg.serve.app_name or cfg.model_name)


def manifest_name(cfg: RootConfig) -> str:
    """The file name ``write_manifests`` gives the manifests, under ``serve.output_dir``."""
    return f"{resource_name(cfg)}.kuberay.yaml"


def write_manifests(cfg: RootConfig) -> Path:
    """``serve_configs/<name>.kuberay.yaml``: the objects as one multi-document YAML file."""
    objects = manifests(cfg)
    out = Path(cfg.serve.output_dir) / manifest_name(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = [
        f"# KubeRay RayService of {cfg.model_name} (alias {cfg.serve.alias}), written by",
        "# `python -m framework task=build_serve_config target=kuberay`. Apply it with",
        f"#   kubectl apply -f {out}",
        "# after creating the Secrets it names (never written here):",
        f"#   kubectl create secret generic {cfg.kuberay.api_keys_secret} "
        "--from-file=keys.json=api_keys.json",
        f"#   kubectl create secret generic {cfg.kuberay.audit_key_secret} "
        "--from-file=key=<the registry's audit key file>",
        f"# and copying the registry onto the volume claim {cfg.kuberay.registry_claim}.",
        "",
    ]
    fd, tmp = tempfile.mkstemp(prefix=".kuberay-", dir=out.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(header))
        handle.write(dump(objects))
    os.replace(tmp, out)
    return out
