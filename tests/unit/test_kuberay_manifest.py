"""`task=build_serve_config target=kuberay`: the RayService and the objects beside it, checked
against Ray's own ServeDeploySchema, the KubeRay CRD's OpenAPI schema (tests/data/kuberay,
from KubeRay v1.7.0) and kubernetes-validate's schemas of the plain Kubernetes objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from framework.serving.kuberay import dns_name, dump, manifests
from tests.helpers import load_config

SCHEMA = (
    Path(__file__).resolve().parents[1] / "data" / "kuberay" / "rayservice-v1-openapi-schema.json"
)
KUBERNETES = "1.33"


def unknown_fields(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Keys the schema does not declare (the API server would drop them silently)."""
    found = []
    if isinstance(value, dict) and "properties" in schema:
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return []
        for key, item in value.items():
            if key not in schema["properties"]:
                found.append(f"{where}.{key}")
            else:
                found += unknown_fields(item, schema["properties"][key], f"{where}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{where}[{i}]")
    return found


def _objects(*overrides: str) -> dict[str, dict[str, Any]]:
    cfg = load_config(["data=churn", "target=kuberay", *overrides])
    return {o["kind"]: o for o in manifests(cfg)}


def test_the_rayservice_validates_against_the_kuberay_crd_and_rays_serve_schema() -> None:
    from ray.serve.schema import ServeDeploySchema

    objects = _objects(
        "serve.async.enabled=true",
        "kuberay.workers.max_replicas=6",
        "kuberay.workers.cpu=4",
        "kuberay.workers.gpu=1",
        "kuberay.namespace=ml",
    )
    assert set(objects) == {"RayService", "PersistentVolumeClaim", "PodMonitor"}
    service = objects["RayService"]
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(service, schema)
    assert unknown_fields(service, schema) == []
    # serveConfigV2 is the same Ray Serve config as task=build_serve_config writes
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(serve_config)
    (app,) = serve_config["applications"]
    assert [d["name"] for d in app["deployments"]] == ["ModelServer", "Monitor", "QueueConsumer"]
    assert app["args"]["store_path"] == "/home/ray/work/model_registry"
    assert app["args"]["security"]["keys_env"] == "FRAMEWORK_API_KEYS"
    assert app["args"]["security"]["keys_file"] is None
    assert serve_config["http_options"]["host"] == "0.0.0.0"
    cluster = service["spec"]["rayClusterConfig"]
    import ray

    assert cluster["rayVersion"] == ray.__version__
    (workers,) = cluster["workerGroupSpecs"]
    assert (workers["minReplicas"], workers["maxReplicas"]) == (1, 6)
    (worker,) = workers["template"]["spec"]["containers"]
    assert worker["resources"]["limits"] == {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": 1}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8000}
    env = {e["name"]: e for e in worker["env"]}
    assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"]["value"] == "1"
    assert env["FRAMEWORK_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == "framework-api-keys"
    assert env["FRAMEWORK_AUDIT_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "key"
    assert env["FRAMEWORK_BROKER_PASSWORD"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert not any("value" in e and "fwk_" in e["value"] for e in worker["env"])  # no secrets
    mounts = worker["volumeMounts"]
    assert mounts == [{"name": "registry", "mountPath": "/home/ray/work/model_registry"}]
    assert workers["template"]["spec"]["securityContext"]["runAsUser"] == 1000
    assert service["metadata"]["namespace"] == "ml"


def test_the_plain_kubernetes_objects_validate() -> None:
    objects = _objects("kuberay.registry_storage_class=nfs")
    claim = objects["PersistentVolumeClaim"]
    kubernetes_validate.validate(claim, KUBERNETES, strict=True)
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["storageClassName"] == "nfs"
    cluster = objects["RayService"]["spec"]["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]["template"]] + [
        g["template"] for g in cluster["workerGroupSpecs"]
    ]
    for template in templates:  # each pod template is a valid Pod
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, **template}
        pod["metadata"] = {"name": "p", **template["metadata"]}
        kubernetes_validate.validate(pod, KUBERNETES, strict=True)
    monitor = objects["PodMonitor"]
    assert monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/instance": "churn"}
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "metrics", "path": "/metrics"}]
    for template in templates:
        assert template["metadata"]["labels"]["app.kubernetes.io/instance"] == "churn"
        ports = {p["name"] for p in template["spec"]["containers"][0]["ports"]}
        assert "metrics" in ports


def test_a_broken_manifest_is_caught_by_the_checks() -> None:
    objects = _objects()
    schema = json.loads(SCHEMA.read_text())
    service = objects["RayService"]
    service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] = "many"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(service, schema)
    service["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParms"] = {}
    assert unknown_fields(service, schema) == [".spec.rayClusterConfig.headGroupSpec.rayStartParms"]
    claim = objects["PersistentVolumeClaim"]
    claim["spec"]["accesModes"] = ["ReadWriteMany"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(claim, KUBERNETES, strict=True)


def test_the_written_file_is_one_yaml_document_per_object(tmp_path: Path) -> None:
    from framework.serving.kuberay import write_manifests

    cfg = load_config(["target=kuberay", f"serve.output_dir={tmp_path}"])
    path = write_manifests(cfg)
    assert path.name == "breast-cancer.kuberay.yaml"
    text = path.read_text()
    assert "kubectl create secret generic framework-api-keys" in text
    assert "serveConfigV2: |" in text  # readable, not an escaped string
    loaded = list(yaml.safe_load_all(text))
    assert [o["kind"] for o in loaded] == ["RayService", "PersistentVolumeClaim", "PodMonitor"]
    assert loaded == list(yaml.safe_load_all(dump(manifests(cfg))))
    assert dns_name("Breast_Cancer v2") == "breast-cancer-v2"
