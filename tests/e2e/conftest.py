"""Run the CLI as a user does: a fresh process in a temporary working directory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 300


BROKER = "redis://127.0.0.1:6379/0"


def drop_stream(stream: str, url: str = BROKER) -> None:
    """Delete a test's task stream and every key named after it."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(f"{stream}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    except redis.RedisError:
        pass
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


Runner = Callable[..., subprocess.CompletedProcess[str]]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a CLI run: no usage stats, no inherited Ray address."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "COLUMNS": "120", **(extra or {})}
    env.pop("RAY_ADDRESS", None)
    return env


def run_cli(
    work: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m framework ARGS`` in ``work``, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "framework", *args],
        cwd=work,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


@pytest.fixture
def cli(tmp_path: Path) -> Runner:
    """``cli(*args, env=...)`` runs ``python -m framework`` in ``tmp_path``."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(tmp_path, *args, env=env)

    return run


def start_serve(
    work: Path,
    *args: str,
    env: dict[str, str] | None = None,
    python: str = sys.executable,
    timeout_s: float = 240,
) -> tuple[subprocess.Popen[str], list[str]]:
    """``python -m framework task=serve ARGS`` in ``work``, once it serves; its output lines
    keep growing in the list. ``env`` is the whole environment (default: ``cli_env()``);
    stop it with ``tests.processes.stop``."""
    from tests.processes import start_until

    return start_until(
        [python, "-m", "framework", "task=serve", *args],
        timeout_s=timeout_s,
        cwd=work,
        env=cli_env() if env is None else env,
    )


@dataclass
class Served:
    """A running ``task=serve`` as its users see it: its URL, a key and its output."""

    work: Path
    url: str
    key: str
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def status(self) -> dict[str, Any]:
        """``GET /v1/admin/monitor``."""
        response = requests.get(
            f"{self.url}/v1/admin/monitor", headers={"x-api-key": self.key}, timeout=10
        )
        assert response.status_code == 200, response.text
        return response.json()

    def wait(
        self, check: Callable[[dict[str, Any]], bool], what: str, timeout: float = 120.0
    ) -> dict[str, Any]:
        """The monitor's status once ``check`` holds for it; fails after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                status = self.status()
            except (AssertionError, requests.RequestException):
                time.sleep(0.5)
                continue
            if check(status):
                return status
            time.sleep(0.5)
        raise AssertionError(f"{what} not reached in {timeout} s: {json.dumps(status)[:2000]}")

    def predict_body(
        self, model: str, rows: list[dict[str, Any]], headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """``POST /v1/models/{model}/predict``'s body; fails unless it answered 200."""
        response = requests.post(
            f"{self.url}/v1/models/{model}/predict",
            json=rows,
            headers={"x-api-key": self.key, **(headers or {})},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()
