"""Two commands starting Ray at the same moment: the dashboard port we found free is taken
before Ray binds it. The start is tried again on free ports instead of failing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

SCRIPT = textwrap.dedent(
    """
    import socket
    import ray
    from framework import cluster
    from framework.config.ray import RayConfig

    config = RayConfig(num_cpus=1)
    kwargs, notes = cluster.start_ports(config)
    taken = socket.socket()
    taken.bind(("127.0.0.1", kwargs["dashboard_port"]))  # another Ray got there first
    taken.listen()
    kwargs.update(address="local", num_cpus=1, logging_level="WARNING")
    cluster._init(ray, kwargs, config, notes)
    assert ray.is_initialized()
    print("dashboard", kwargs["dashboard_port"], "taken", taken.getsockname()[1])
    print("notes", notes)
    ray.shutdown()
    """
)


def test_a_port_taken_while_ray_starts_is_replaced() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("dashboard"))
    _, started, _, taken = line.split()
    assert started != taken
    assert "started again on free ones" in done.stdout
