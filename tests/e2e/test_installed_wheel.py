"""The framework installs like a library: a wheel in a fresh virtual environment runs the
main job and `task=serve` from an empty folder, with the bundled config found inside the
package (pkg://framework.conf) and a `conf/` of the user's own layered over it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import ROOT, cli_env, free_port, start_serve
from tests.processes import stop

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

INSTALL_TIMEOUT_S = 1500


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh virtual environment with the project's wheel installed."""
    base = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(base), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = base.glob("framework-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return python


def _run(python: Path, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "framework", *args],
        cwd=work,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_the_wheel_holds_the_config_and_no_checkout_is_needed(
    installed: Path, tmp_path: Path
) -> None:
    site = subprocess.run(
        [str(installed), "-c", "import framework, sys; print(framework.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    package = Path(site).parent
    assert str(ROOT) not in str(package)
    assert (package / "conf" / "config.yaml").is_file()
    assert (package / "conf" / "experiment" / "churn_logistic_regression.yaml").is_file()
    shown = _run(installed, tmp_path, "+experiment=churn_logistic_regression", "--cfg", "job")
    assert shown.returncode == 0, shown.stderr
    assert "type: logistic_regression" in shown.stdout


def test_a_conf_folder_of_ones_own_layers_over_the_bundled_one(
    installed: Path, tmp_path: Path
) -> None:
    (tmp_path / "conf" / "serve").mkdir(parents=True)
    (tmp_path / "conf" / "experiment").mkdir()
    (tmp_path / "conf" / "serve" / "default.yaml").write_text("port: 8765\n")
    (tmp_path / "conf" / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: gradient_boosting\n"
    )
    shown = _run(installed, tmp_path, "+experiment=mine", "--cfg", "job")
    assert shown.returncode == 0, shown.stderr
    assert "port: 8765" in shown.stdout and "type: gradient_boosting" in shown.stdout
    elsewhere = tmp_path / "other"
    (elsewhere / "serve").mkdir(parents=True)
    (elsewhere / "serve" / "default.yaml").write_text("port: 8766\n")
    given = _run(installed, tmp_path, "--config-dir", str(elsewhere), "--cfg", "job")
    assert given.returncode == 0, given.stderr
    assert "port: 8766" in given.stdout


def test_the_main_job_and_serving_run_from_an_empty_folder(installed: Path, tmp_path: Path) -> None:
    trained = _run(installed, tmp_path, "train.latency_runs=20")
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    assert "Registered breast_cancer version 1" in trained.stdout
    made = _run(installed, tmp_path, "task=api_key", "security.key_name=user")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    port = free_port()
    proc, lines = start_serve(tmp_path, f"serve.port={port}", python=str(installed))
    try:
        example = next(line for line in lines if line.strip().startswith("curl"))
        body = json.loads(example.split(" -d '", 1)[1].rsplit("'", 1)[0])
        answer = requests.post(
            f"http://127.0.0.1:{port}/v1/models/breast_cancer/predict",
            json=body,
            headers={"x-api-key": key},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == 1
    finally:
        stop(proc)
    assert os.path.isdir(tmp_path / "model_registry")
