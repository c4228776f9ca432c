"""The serving parts one by one: what a replica imports, which way imports run, the ingress
rewrite, the rate limit and the route table's OpenAPI document."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from framework.config.security import SecurityConfig
from framework.serving.auth import Gatekeeper, TokenBucket
from framework.serving.ingress import FRONTEND_RULES, MARK, harden
from framework.serving.problems import HttpError

ROOT = Path(__file__).resolve().parents[2]


def test_a_replica_loads_no_training_library() -> None:
    code = (
        "import sys, framework.serving.replica, framework.serving.deploy;"
        "print([m for m in ('sklearn', 'skl2onnx', 'torch') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_imports_run_one_way() -> None:
    serving = ROOT / "framework" / "serving"
    monitoring = ROOT / "framework" / "monitoring"
    for module in monitoring.glob("*.py"):
        assert not any(i.startswith("framework.serving") for i in _imports(module)), module
    for module in serving.glob("*.py"):
        if module.name not in ("deploy.py", "app.py"):
            assert "framework.serving.replica" not in _imports(module), module
        assert not any(i.startswith("framework.training") for i in _imports(module)), module
    parts = {"rules", "codec", "tensors", "problems", "auth", "router", "recorder"}
    for part in parts:
        imported = _imports(serving / f"{part}.py")
        assert not imported & {"framework.serving.handlers", "framework.serving.routes"}, part
    for module in [*serving.glob("*.py"), *monitoring.glob("*.py")]:
        assert len(module.read_text().splitlines()) <= 450, module


CONFIG = """global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 3600s
frontend prometheus
    bind :9101
frontend http_frontend
    bind 127.0.0.1:8000
    acl healthcheck path -i /-/healthz
listen stats
  bind *:8404
"""


def test_the_ingress_rewrite_binds_the_host_and_sets_timeouts() -> None:
    out = harden(CONFIG, "127.0.0.1", 7, 30, {400: "/x/400.http"})
    lines = [line.strip() for line in out.splitlines()]
    assert "bind 127.0.0.1:9101" in lines and "bind 127.0.0.1:8404" in lines
    assert "timeout http-request 7s" in lines and "timeout client 30s" in lines
    assert "timeout client 3600s" not in lines and "errorfile 400 /x/400.http" in lines
    at = lines.index("bind 127.0.0.1:8000")
    assert lines[at + 1 : at + 1 + len(FRONTEND_RULES)] == [r.strip() for r in FRONTEND_RULES]
    assert out.startswith(MARK) and harden(out, "127.0.0.1", 1, 1) == out  # reloads reuse it
    everywhere = harden(CONFIG, "0.0.0.0", 7, 30)
    assert "bind :9101" in everywhere


def test_the_rewritten_config_is_valid_for_haproxy(tmp_path: Path) -> None:
    from framework.serving.ingress import real_binary, write_errorfiles

    config = tmp_path / "haproxy.cfg"
    config.write_text(harden(CONFIG, "127.0.0.1", 7, 30, write_errorfiles(str(tmp_path))))
    checked = subprocess.run(
        [real_binary(), "-c", "-f", str(config)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    body = (tmp_path / "framework-408.http").read_bytes().split(b"\r\n\r\n", 1)[1]
    assert json.loads(body)["error"]


def test_a_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=100.0, burst=5)
    assert [bucket.take() for _ in range(5)] == [0.0] * 5
    wait = bucket.take()
    assert 0 < wait <= 0.011
    time.sleep(0.03)
    assert bucket.take() == 0.0


def test_the_gatekeeper_limits_each_key_on_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from framework.security.keys import add_key

    first, _ = add_key(tmp_path / "keys.json", "first", ["predict"])
    second, _ = add_key(tmp_path / "keys.json", "second", ["predict"])
    config = SecurityConfig.model_validate(
        {"keys_file": str(tmp_path / "keys.json"), "rate_limit": {"requests_per_s": 1, "burst": 2}}
    )
    gate = Gatekeeper(config, tmp_path)
    for _ in range(2):
        assert gate.admit({b"x-api-key": first.encode()}, "predict").name == "first"
    with pytest.raises(HttpError) as info:
        gate.admit({b"x-api-key": first.encode()}, "predict")
    assert info.value.status == 429 and int(info.value.headers["Retry-After"]) >= 1
    assert gate.admit({b"authorization": b"Bearer " + second.encode()}, "predict").name == "second"
    assert gate.admit({}, "public") is None
    with pytest.raises(HttpError) as info:
        gate.admit({b"x-api-key": b"\xff"}, "predict")
    assert info.value.status == 401


def test_routes_match_below_the_route_prefix() -> None:
    """Ray Serve passes the whole path and the prefix as ``root_path`` (ASGI)."""
    from framework.serving.replica import route_path

    assert route_path({"path": "/readyz", "root_path": ""}) == "/readyz"
    assert route_path({"path": "/_staging/x1/readyz", "root_path": "/_staging/x1"}) == "/readyz"
    assert route_path({"path": "/_staging/x1", "root_path": "/_staging/x1"}) == "/"
    # a path that merely starts with the prefix's characters is not below it
    assert route_path({"path": "/_staging/x10/readyz", "root_path": "/_staging/x1"}) == (
        "/_staging/x10/readyz"
    )


def test_the_serving_port_counts_as_taken_only_while_something_listens() -> None:
    import socket

    from framework.cluster import port_free
    from framework.errors import ClusterError
    from framework.serving.deploy import check_http_port

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as HAProxy's listener
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        assert not port_free("127.0.0.1", port, reuse=True)
        assert not port_free("0.0.0.0", port, reuse=True)
        with pytest.raises(ClusterError) as refused:
            check_http_port("127.0.0.1", port)
        assert refused.value.path == "serve.port" and refused.value.exit_code == 7
        assert f"port {port} on 127.0.0.1 is held by another process" in str(refused.value)
        assert "serve.port=" in (refused.value.hint or "")
        # a connection the server closed first stays in TIME_WAIT on the server's port:
        # a server restarted right away must not be refused for it
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()
        client.recv(1)
        client.close()
    finally:
        listener.close()
    assert port_free("127.0.0.1", port, reuse=True)
    check_http_port("127.0.0.1", port)
