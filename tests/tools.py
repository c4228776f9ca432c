"""Third-party command-line checkers the tests run against the project's output.

``promtool`` (Prometheus' linter) comes from the system's package registry: the binary on
PATH if there is one, else Debian's ``prometheus`` package, downloaded once and unpacked
into a cache folder (nothing is installed system-wide, no service is started).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "framework-tests"


def promtool() -> str | None:
    """Path of a promtool binary, or None when neither PATH nor apt can provide one."""
    found = shutil.which("promtool")
    if found:
        return found
    cached = CACHE / "promtool"
    if cached.is_file():
        return str(cached)
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return None
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        download = subprocess.run(
            ["apt-get", "download", "prometheus"], cwd=folder, capture_output=True, timeout=300
        )
        if download.returncode != 0:  # the package lists may be missing: read them once
            subprocess.run(["apt-get", "update"], capture_output=True, timeout=300)
            download = subprocess.run(
                ["apt-get", "download", "prometheus"], cwd=folder, capture_output=True, timeout=300
            )
        packages = list(Path(folder).glob("prometheus_*.deb"))
        if download.returncode != 0 or not packages:
            return None
        subprocess.run(["dpkg-deb", "-x", str(packages[0]), folder], check=True, timeout=120)
        shutil.copy2(Path(folder) / "usr" / "bin" / "promtool", cached)
    return str(cached)
