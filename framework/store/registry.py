"""The local model registry: one folder per model version, aliases that move atomically.

Layout under the registry root::

    <name>/versions/<N>/   model.onnx, manifest.json, profile.json, metrics.json, ...
    <name>/aliases.json    {"champion": 3, "challenger": 4}
    <name>/audit.jsonl     one line per registration, alias move or rollout decision

A version is written into a staging folder and renamed into place, so a crash mid-way
leaves no half version. Aliases are rewritten through a temporary file and ``os.replace``.

The audit log is append-only and hash-chained: every entry carries the sha256 of the entry
before it (``prev``) and its own (``hash``, over ``prev`` and the entry's canonical JSON), so
``verify_audit`` finds any entry that was edited, removed or reordered.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framework.errors import RegistryError

MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ModelVersion:
    """One registered version: where it lies and what its manifest says."""

    name: str
    version: int
    path: Path
    manifest: dict[str, Any]
    aliases: list[str]

    def file(self, name: str) -> Path:
        return self.path / name

    def verify(self) -> None:
        """Check every file against the sha256 in the manifest; raise on any mismatch."""
        for name, expected in self.manifest.get("files", {}).items():
            path = self.path / name
            if not path.is_file():
                raise RegistryError(f"{self.name} v{self.version}: {name} is missing")
            actual = sha256_file(path)
            if actual != expected:
                raise RegistryError(
                    f"{self.name} v{self.version}: sha256 of {name} is {actual[:12]}..., "
                    f"manifest says {expected[:12]}...; the file was changed after registration"
                )


def _fsync_write(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


class ModelRegistry:
    """A registry rooted at a folder on a local or shared file system."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # -- reading ----------------------------------------------------------------------
    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "versions").is_dir())

    def versions(self, name: str) -> list[ModelVersion]:
        folder = self.root / name / "versions"
        if not folder.is_dir():
            return []
        numbers = sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())
        return [self.get(name, n) for n in numbers]

    def get(self, name: str, version: int) -> ModelVersion:
        path = self.root / name / "versions" / str(version)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            known = [v.version for v in self.versions(name)] if path.parent.is_dir() else []
            raise RegistryError(
                f"model {name!r} has no version {version} in {self.root}",
                hint=f"registered versions: {known}" if known else "register one with task=train",
            )
        manifest = json.loads(manifest_path.read_text())
        aliases = [a for a, v in self.aliases(name).items() if v == version]
        return ModelVersion(name, version, path, manifest, sorted(aliases))

    def aliases(self, name: str) -> dict[str, int]:
        path = self.root / name / "aliases.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def resolve(self, name: str, ref: str | int) -> ModelVersion:
        """A version by number, or by alias (``champion``)."""
        if isinstance(ref, int) or str(ref).isdigit():
            return self.get(name, int(ref))
        aliases = self.aliases(name)
        if ref not in aliases:
            raise RegistryError(
                f"model {name!r} has no alias {ref!r}",
                hint=f"aliases: {aliases or 'none yet'}",
            )
        return self.get(name, aliases[ref])

    def audit(self, name: str) -> list[dict[str, Any]]:
        path = self.root / name / "audit.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def verify_audit(self, name: str) -> list[str]:
        """Problems in the hash chain of the audit log (empty: intact)."""
        problems = []
        prev = ""
        for number, entry in enumerate(self.audit(name), start=1):
            if entry.get("prev") != prev:
                problems.append(f"entry {number}: does not follow entry {number - 1}")
            body = {k: v for k, v in entry.items() if k != "hash"}
            if entry.get("hash") != _entry_hash(body):
                problems.append(f"entry {number}: its content does not match its hash")
            prev = entry.get("hash", "")
        return problems

    # -- writing ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[Path]:
        folder = self.root / name
        (folder / "versions").mkdir(parents=True, exist_ok=True)
        with (folder / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield folder
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def register(
        self,
        name: str,
        files: dict[str, bytes],
        manifest: dict[str, Any],
        alias: str | None = None,
        actor: str | None = None,
    ) -> ModelVersion:
        """Write a new version atomically; return it. ``manifest`` gains files' sha256."""
        with self._locked(name) as folder:
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
            try:
                for filename, data in files.items():
                    _fsync_write(staging / filename, data)
                existing = [
                    int(p.name) for p in (folder / "versions").iterdir() if p.name.isdigit()
                ]
                version = max(existing, default=0) + 1
                full = {
                    "name": name,
                    "version": version,
                    **manifest,
                    "files": {f: hashlib.sha256(d).hexdigest() for f, d in files.items()},
                }
                _fsync_write(staging / MANIFEST, json.dumps(full, indent=2, default=str).encode())
                os.rename(staging, folder / "versions" / str(version))
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            self._audit(folder, "register", actor, version=version)
            if alias:
                self._write_aliases(folder, {alias: version}, actor, "alias", None)
        return self.get(name, version)

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        actor: str | None = None,
        action: str = "alias",
        reason: str | None = None,
    ) -> None:
        """Point ``alias`` at ``version`` atomically, and audit the move."""
        self.move_aliases(name, {alias: version}, actor, action, reason)

    def move_aliases(
        self,
        name: str,
        changes: dict[str, int | None],
        actor: str | None = None,
        action: str = "alias",
        reason: str | None = None,
    ) -> dict[str, int]:
        """Apply several alias moves (None: remove the alias) as one atomic write.

        Each move is audited with its ``from`` and ``to`` version, the actor and the reason.
        Returns the aliases before the change.
        """
        for version in changes.values():
            if version is not None:
                self.get(name, version)  # raises if absent
        with self._locked(name) as folder:
            return self._write_aliases(folder, changes, actor, action, reason)

    def _write_aliases(
        self,
        folder: Path,
        changes: dict[str, int | None],
        actor: str | None,
        action: str,
        reason: str | None,
    ) -> dict[str, int]:
        """Rewrite aliases.json through a temporary file (the caller holds the lock)."""
        path = folder / "aliases.json"
        before = json.loads(path.read_text()) if path.is_file() else {}
        aliases = dict(before)
        for alias, version in changes.items():
            if version is None:
                aliases.pop(alias, None)
            else:
                aliases[alias] = version
        fd, tmp = tempfile.mkstemp(prefix=".aliases-", dir=folder)
        with os.fdopen(fd, "w") as handle:
            json.dump(aliases, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        for alias, version in changes.items():
            if before.get(alias) != version:
                fields: dict[str, Any] = {"alias": alias, "from": before.get(alias), "to": version}
                if reason:
                    fields["reason"] = reason
                self._audit(folder, action, actor, **fields)
        return before

    def record(self, name: str, action: str, actor: str | None = None, **fields: Any) -> None:
        """Append a decision that moves no alias (a rollout step, a retraining run)."""
        with self._locked(name) as folder:
            self._audit(folder, action, actor, **fields)

    @staticmethod
    def _audit(folder: Path, action: str, actor: str | None, **fields: Any) -> None:
        """Append one hash-chained entry (the caller holds the model's lock)."""
        path = folder / "audit.jsonl"
        entry = {
            "time": time.time(),
            "action": action,
            "actor": actor or _whoami(),
            **fields,
            "prev": _last_hash(path),
        }
        entry["hash"] = _entry_hash(entry)
        with path.open("a") as handle:
            handle.write(json.dumps(entry, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def _entry_hash(entry: dict[str, Any]) -> str:
    canonical = json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _last_hash(path: Path) -> str:
    """The hash of the log's last entry, read from its tail."""
    if not path.is_file():
        return ""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 65536))
        lines = [line for line in handle.read().splitlines() if line.strip()]
    if not lines:
        return ""
    return str(json.loads(lines[-1]).get("hash", ""))


def _whoami() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
