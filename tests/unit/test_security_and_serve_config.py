"""API keys stored as hashes, and the serve/security config turned into Ray Serve's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from framework.config.security import SecurityConfig
from framework.errors import ConfigError
from framework.security.keys import add_key, hash_key, load_keys
from tests.helpers import load_config, problems


def test_a_new_key_is_stored_only_as_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key, _ = add_key(path, "alice", ["predict"])
    text = path.read_text()
    assert key not in text
    assert hash_key(key) in text
    assert oct(path.stat().st_mode)[-3:] == "600"
    keys = load_keys(SecurityConfig(keys_file=str(path), keys_env=None))
    assert keys[hash_key(key)].name == "alice"
    assert keys[hash_key(key)].grants("predict")
    assert not keys[hash_key(key)].grants("admin")
    with pytest.raises(ConfigError, match="already exists"):
        add_key(path, "alice", ["admin"])


def test_admin_grants_every_role_and_keys_may_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = hash_key("fwk_secret")
    monkeypatch.setenv(
        "TEST_KEYS", json.dumps({"keys": [{"name": "ops", "sha256": digest, "roles": ["admin"]}]})
    )
    keys = load_keys(SecurityConfig(keys_file=None, keys_env="TEST_KEYS"))
    assert keys[digest].grants("predict") and keys[digest].grants("feedback")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"keys": {}}', 'expected {"keys"'),
        ('{"keys": [{"name": "a", "sha256": "abc", "roles": ["predict"]}]}', "keys[0].sha256"),
        ('{"keys": [{"name": "a", "sha256": "' + "a" * 64 + '", "roles": ["root"]}]}', "root"),
    ],
)
def test_a_bad_keys_file_names_the_field(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_keys(SecurityConfig(keys_file=str(path), keys_env=None))
    assert message in str(info.value)
    assert "security.keys_file" in str(info.value)


def test_serve_and_security_config_errors_name_the_field() -> None:
    found = problems(
        [
            "task=serve",
            "serve.autoscaling.min_replicas=3",
            "serve.autoscaling.max_replicas=2",
            "serve.port=70000",
            "security.auth=maybe",
            "serve.batching.max_batch_wait_ms=-1",
        ]
    )
    text = "\n".join(found)
    assert "serve.autoscaling: " in text and "min_replicas (3) must be <= max_replicas (2)" in text
    assert "serve.port: got 70000" in text
    assert "security.auth: got 'maybe'" in text
    assert "serve.batching.max_batch_wait_ms: got -1" in text


def test_the_ray_serve_config_file_mirrors_the_config(tmp_path: Path) -> None:
    from framework.serving.app import build_app
    from framework.serving.deploy import IMPORT_PATH, serve_config_document

    cfg = load_config(
        [
            f"store.path={tmp_path / 'registry'}",
            "serve.port=8123",
            "serve.autoscaling.max_replicas=4",
            "serve.max_queued_requests=10",
            "serve.num_cpus=0.25",
        ]
    )
    document = serve_config_document(cfg)
    text = yaml.safe_dump(document)
    assert yaml.safe_load(text) == document
    assert document["http_options"] == {"host": "127.0.0.1", "port": 8123}
    (app,) = document["applications"]
    assert app["import_path"] == IMPORT_PATH
    assert app["name"] == "breast_cancer" and app["route_prefix"] == "/"
    assert app["args"]["store_path"] == str((tmp_path / "registry").resolve())
    deployment, monitor = app["deployments"]
    assert monitor["name"] == "Monitor" and monitor["num_replicas"] == 1
    assert deployment["autoscaling_config"]["max_replicas"] == 4
    assert deployment["max_queued_requests"] == 10
    assert deployment["ray_actor_options"] == {"num_cpus": 0.25}
    assert deployment["backpressure_config"] == {"status_code": 503, "retry_after_s": 1}
    # Ray's own schema accepts the file as it is.
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(document)
    # and the builder named by import_path builds an application from its args
    assert build_app(app["args"]) is not None


def test_the_config_file_carries_the_queue_consumers_and_their_scaling_policy(
    tmp_path: Path,
) -> None:
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import ServeDeploySchema

    from framework.serving.app import build_app
    from framework.serving.deploy import SCALING_POLICY, serve_config_document

    cfg = load_config(
        [
            f"store.path={tmp_path / 'registry'}",
            "serve.async.enabled=true",
            "serve.async.autoscaling.max_replicas=3",
            "serve.async.autoscaling.target_backlog=50",
        ]
    )
    document = serve_config_document(cfg)
    ServeDeploySchema.model_validate(document)
    (app,) = document["applications"]
    names = [d["name"] for d in app["deployments"]]
    assert names == ["ModelServer", "Monitor", "QueueConsumer"]
    scaling = app["deployments"][2]["autoscaling_config"]
    assert scaling["max_replicas"] == 3
    assert scaling["policy"] == {
        "policy_function": SCALING_POLICY,
        "policy_kwargs": {"target_backlog": 50},
    }
    # Ray resolves and pickles the policy as it would in its controller
    policy = AutoscalingConfig(**scaling).policy.get_policy()
    assert policy.__name__ == "BacklogPolicy"
    assert app["args"]["serve"]["async"]["enabled"] is True
    assert build_app(app["args"]) is not None


def test_every_route_declares_a_role_and_a_wrong_method_gets_405() -> None:
    from framework.serving.auth import PUBLIC
    from framework.serving.handlers import Handlers
    from framework.serving.problems import HttpError
    from framework.serving.routes import ROUTES, RouteTable

    assert len(ROUTES) > 10
    for route in ROUTES:
        assert route.role in ("public", "predict", "admin", "feedback")
        assert route.handler is getattr(Handlers, route.name)  # the callable is in the table
    table = RouteTable()

    def role(method: str, path: str) -> str:
        return table.match(method, path).route.role

    def refused(method: str, path: str) -> tuple[int, dict[str, str]]:
        with pytest.raises(HttpError) as info:
            table.match(method, path)
        return info.value.status, info.value.headers

    assert role("POST", "/v1/models/churn/predict") == "predict"
    assert table.match("POST", "/v2/models/churn/versions/3/infer").params == {
        "name": "churn",
        "version": "3",
    }
    assert role("GET", "/v1/admin/config") == "admin"
    assert role("GET", "/healthz") == PUBLIC and role("GET", "/docs") == PUBLIC
    assert role("HEAD", "/v2/health/ready") == PUBLIC
    assert refused("GET", "/nowhere")[0] == 404
    assert refused("DELETE", "/v1/models") == (405, {"Allow": "GET, HEAD"})
    assert refused("TRACE", "/healthz")[0] == 405
    assert refused("GET", "/v1/models/churn/predict") == (405, {"Allow": "POST"})


def test_serving_refuses_early_without_keys_or_with_a_changed_model(tmp_path: Path) -> None:
    from framework.errors import RegistryError
    from framework.serving.deploy import check_servable
    from framework.store.registry import ModelRegistry

    store = tmp_path / "registry"
    version = ModelRegistry(store).register(
        "breast_cancer", {"model.onnx": b"onnx bytes"}, {"signature": {}}, alias="champion"
    )
    keys = tmp_path / "none.json"
    cfg = load_config([f"store.path={store}", f"security.keys_file={keys}", "security.keys_env=X"])
    with pytest.raises(ConfigError) as info:
        check_servable(cfg)
    assert "no API key is configured" in str(info.value) and "task=api_key" in str(info.value)

    off = load_config([f"store.path={store}", "security.auth=off"])
    assert check_servable(off).version == 1

    version.file("model.onnx").write_bytes(b"changed")
    with pytest.raises(RegistryError, match=r"sha256 of model\.onnx"):
        check_servable(off)
    with pytest.raises(RegistryError, match="no alias 'canary'"):
        check_servable(
            load_config([f"store.path={store}", "security.auth=off", "serve.alias=canary"])
        )
