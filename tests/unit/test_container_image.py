"""The container image definition: hadolint finds nothing, and it installs the framework
the way the README says (no container engine runs here, so the build itself is not run)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_reports_nothing() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    found = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert found.returncode == 0 and not found.stdout.strip(), found.stdout + found.stderr


def test_the_install_steps_are_the_readmes() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Installing it as a library, and the container image", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    steps = [line for line in block.group(1).splitlines() if line.startswith("python -m pip")]
    assert len(steps) == 2
    runs = [args for word, args in _instructions() if word == "RUN"]
    for step in steps:
        assert any(step in run for run in runs), f"the Dockerfile does not run {step!r}"
    env = " ".join(args for word, args in _instructions() if word == "ENV")
    assert "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu" in env
    assert "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu" in section


def test_the_image_is_rays_own_for_the_pinned_versions_and_not_root() -> None:
    import ray

    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (ray_pin,) = [p for p in pins if p.startswith("ray[")]
    assert ray_pin.endswith(f"=={ray.__version__}")
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    args = [a for w, a in _instructions() if w == "ARG"]
    assert f"RAY_IMAGE=rayproject/ray:{ray.__version__}-{python}-cpu" in args
    stages = [a for w, a in _instructions() if w == "FROM"]
    assert len(stages) == 2 and all(s.startswith("${RAY_IMAGE}") for s in stages)
    users = [a for w, a in _instructions() if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    words = [w for w, _ in _instructions()]
    assert "HEALTHCHECK" in words
    entry = [a for w, a in _instructions() if w == "ENTRYPOINT"]
    assert entry == ['["python", "-m", "framework"]']


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore  # everything else stays out: registries, keys, virtualenvs
    copied = set()
    for word, args in _instructions():
        if word == "COPY" and "--from=" not in args:
            parts = [p for p in args.split() if not p.startswith("--")]
            copied.update(p.rstrip("/") for p in parts[:-1])
    assert copied == allowed
