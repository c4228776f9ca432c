"""Joining or starting Ray, Ray Jobs, device mapping and the monitor's saved state (no Ray)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from framework import cluster, jobs
from framework.config.monitor import WindowConfig
from framework.config.ray import RayConfig
from framework.config.serve import ServeConfig
from framework.errors import ConfigError
from framework.export import devices
from framework.export.signature import Signature
from framework.monitoring import state
from framework.monitoring.protocol import Label, RecordBatch, RolloutState
from framework.monitoring.windows import DriftWindow, LabelBook, StepCounts
from framework.serving.deploy import deployment_options


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


@pytest.fixture
def no_address(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    path = tmp_path / "ray_current_cluster"
    monkeypatch.setattr(cluster, "address_file", lambda: str(path))
    return path


def test_a_busy_dashboard_port_is_replaced_and_said(listening: socket.socket) -> None:
    busy = listening.getsockname()[1]
    kwargs, notes = cluster.start_ports(RayConfig(dashboard_port=busy, metrics_export_port=busy))
    assert kwargs["dashboard_port"] != busy and kwargs["_metrics_export_port"] != busy
    assert notes[0].startswith(f"dashboard port {busy} is busy; the dashboard takes port ")
    assert notes[1].startswith(f"metrics port {busy} is busy")


def test_a_free_dashboard_port_is_kept() -> None:
    port = cluster.free_port("127.0.0.1")
    kwargs, notes = cluster.start_ports(RayConfig(dashboard_port=port))
    assert kwargs["dashboard_port"] == port and notes == []


def test_the_running_cluster_is_found_in_order(
    no_address: Path, listening: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cluster.find_cluster(RayConfig()) is None  # nothing recorded: start one
    live = f"127.0.0.1:{listening.getsockname()[1]}"
    no_address.write_text(live)
    assert cluster.find_cluster(RayConfig()) == (live, f"recorded in {no_address}")
    assert cluster.find_cluster(RayConfig(address="local")) is None
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6380")
    assert cluster.find_cluster(RayConfig()) == ("10.0.0.5:6380", "RAY_ADDRESS")
    assert cluster.find_cluster(RayConfig(address="auto")) == ("auto", "ray.address")


def test_a_stale_recorded_address_starts_a_new_instance(no_address: Path) -> None:
    no_address.write_text(f"127.0.0.1:{cluster.free_port('127.0.0.1')}")  # nothing listens
    assert cluster.find_cluster(RayConfig()) is None


def test_a_version_mismatch_names_both_versions() -> None:
    message = (
        "Version mismatch: The cluster was started with:\n    Ray: 2.59.0\n    Python: 3.12.4\n"
        "This process on node 10.0.0.2 was started with:\n    Ray: 2.60.0\n    Python: 3.11.7\n"
    )
    error = cluster.version_mismatch("10.0.0.1:6380", message)
    assert error is not None and error.exit_code == 7
    assert str(error).startswith(
        "cannot join the Ray cluster at 10.0.0.1:6380: it runs Ray 2.59.0 on Python 3.12.4, "
        "this machine has Ray 2.60.0 on Python 3.11.7"
    )
    assert cluster.version_mismatch("x", "connection refused") is None


def test_a_job_carries_the_project_and_an_absolute_registry(tmp_path: Path) -> None:
    overrides = jobs.job_overrides(
        ["model=ridge", "ray.submit=true", "store.path=reg", "+x=1"], "reg"
    )
    assert overrides[:2] == ["model=ridge", "+x=1"]
    assert overrides[2] == "ray.submit=false"
    assert overrides[3] == f"store.path={Path('reg').resolve()}"
    staged = jobs.stage_project()
    try:
        assert sorted(p.name for p in staged.iterdir()) == sorted(jobs.PROJECT_PARTS)
        assert (staged / "conf" / "config.yaml").is_file()
        assert not list(staged.rglob("__pycache__"))
    finally:
        jobs.shutil.rmtree(staged)
    line = jobs.entrypoint(["a=b c"], "python")
    assert line == "python -m framework 'a=b c'"


def test_devices_map_to_providers_and_gpus() -> None:
    cpu, cuda = devices.CPU, devices.CUDA
    assert devices.providers("cpu", [cuda, cpu]) == [cpu]
    assert devices.providers("cuda", [cuda, cpu]) == [cuda, cpu]
    assert devices.providers("auto", [cuda, cpu]) == [cuda, cpu]
    assert devices.providers("auto", [cpu]) == [cpu]
    with pytest.raises(ConfigError) as info:
        devices.providers("cuda", [cpu])
    assert "serve.device: got 'cuda'; ONNX Runtime here has no CUDAExecutionProvider" in str(
        info.value
    )
    cuda_cfg = ServeConfig(device="cuda", num_gpus=0.5, max_replicas_per_node=1)
    options = deployment_options(cuda_cfg)
    assert options["ray_actor_options"]["num_gpus"] == 0.5
    assert options["max_replicas_per_node"] == 1
    assert "num_gpus" not in deployment_options(ServeConfig(device="auto"))["ray_actor_options"]
    auto_on_gpus = deployment_options(ServeConfig(device="auto"), cluster_gpus=2)
    assert auto_on_gpus["ray_actor_options"]["num_gpus"] == 1.0
    assert "num_gpus" not in deployment_options(ServeConfig())["ray_actor_options"]


def _signature() -> Signature:
    return Signature(
        task="classification",
        numeric=["a", "b"],
        categorical=["c"],
        outputs=["label"],
        classes=["no", "yes"],
    )


def test_the_monitor_state_round_trips_through_json(tmp_path: Path) -> None:
    window_cfg = WindowConfig()
    book, step = LabelBook(window_cfg), StepCounts()
    window = DriftWindow(_signature(), 100)
    batch = RecordBatch(
        numeric=np.asarray([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32),
        categorical=np.asarray([["x"], ["y"]], dtype=object),
        versions=np.asarray([1, 2]),
        server_errors=np.asarray([False, True]),
        latency_ms=np.asarray([3.0, 5.0]),
        predictions=[("r1", 1, np.asarray(["no", "yes"], dtype=object))],
    )
    step.add(batch)
    window.add(batch)
    book.track(batch, step)
    book.add([Label("r1-0", "no"), Label("r9-0", "yes")], step, True)
    path = state.state_path(tmp_path, "m", "champion")
    document = {
        "version": state.VERSION,
        "step": state.step_state(step),
        "window": state.window_state(window),
        "labels": state.labels_state(book),
        "rollout": state.rollout_state(RolloutState(challenger=2, weight=0.25, step=1)),
    }
    state.write(path, document)
    saved = state.read(path)
    assert saved is not None
    again = state.restore_step(saved["step"])
    assert again.requests == step.requests and again.errors == step.errors
    assert list(again.latencies[2]) == [5.0] and again.pairs == step.pairs
    window2 = DriftWindow(_signature(), 100)
    state.restore_window(window2, saved["window"])
    assert window2.rows == 2 and list(window2.columns["c"]) == ["x", "y"]
    book2 = LabelBook(window_cfg)
    state.restore_labels(book2, saved["labels"])
    assert book2.tracked == book.tracked and book2.tracked_rows == 2
    assert list(book2.pending) == ["r9-0"] and book2.joined == 1
    assert list(book2.quality[1]) == [("no", "no")]
    assert state.restore_rollout(saved["rollout"]) == RolloutState(2, 0.25, 1, "")
    path.write_text("{not json")
    assert state.read(path) is None


def test_a_job_carries_the_working_directorys_own_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project of its own beside the framework: its conf/ and experiments/ travel along,
    over the bundled ones."""
    (tmp_path / "conf" / "data").mkdir(parents=True)
    (tmp_path / "conf" / "data" / "my_table.yaml").write_text("name: my_table\n")
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "mine.yaml").write_text("# @package _global_\n")
    monkeypatch.chdir(tmp_path)
    staged = jobs.stage_project()
    try:
        assert (staged / "conf" / "data" / "my_table.yaml").read_text() == "name: my_table\n"
        assert (staged / "conf" / "config.yaml").is_file()  # the bundled config is still there
        assert (staged / "experiments" / "mine.yaml").is_file()
    finally:
        jobs.shutil.rmtree(staged)
