"""Code and package versions recorded in every manifest."""

from __future__ import annotations

import subprocess
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = (
    "framework",
    "scikit-learn",
    "skl2onnx",
    "onnx",
    "onnxruntime",
    "pandas",
    "numpy",
    "ray",
    "pydantic",
    "hydra-core",
    "torch",
    "shap",
    "fairlearn",
)


@cache
def code_version() -> str:
    """``git describe`` of the project checkout (with ``-dirty``), else the package version."""
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return package_versions().get("framework", "unknown")


@cache
def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found
