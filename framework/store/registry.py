"""The local model registry: one folder per model version, aliases that move atomically.

Layout under the registry root::

    <name>/versions/<N>/   model.onnx, manifest.json, profile.json, metrics.json, ...
    <name>/aliases.json    {"champion": 3, "challenger": 4}
    <name>/audit.jsonl     one line per registration, alias move or rollout decision

A version is written into a staging folder and renamed into place, so a crash mid-way
leaves no half version. Aliases are rewritten through a temporary file and ``os.replace``.

The audit log is append-only and keyed: every entry carries the HMAC-SHA256 of the entry
before it (``prev``) and its own (``hmac``, over ``prev`` and the entry's canonical JSON),
computed with a key kept outside the registry (:class:`AuditKey`). A signed head
(``audit.head``) holds the number of entries, the last entry's HMAC and the aliases they
leave. Without the key nobody can edit, remove, reorder or append an entry, truncate the log,
rewrite it whole, or move an alias by editing ``aliases.json``, without ``verify_audit``
saying so.

Each registration records the sha256 of the version's ``manifest.json`` in its audit entry;
:meth:`ModelRegistry.verify` checks the files against the manifest and the manifest against
that recorded hash, so neither can be changed after registration. An alias move and its audit
entry are one step: the entry and the head are written first, and the aliases move only when
both are on disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import hmac
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from framework.errors import RegistryError

MANIFEST = "manifest.json"
AUDIT = "audit.jsonl"
HEAD = "audit.head"
ALIASES = "aliases.json"
#: The audit key itself (hex, or any text of at least 16 characters); wins over a key file.
AUDIT_KEY_ENV = "FRAMEWORK_AUDIT_KEY"
#: A file holding the audit key, when ``security.audit_key_file`` is not set.
AUDIT_KEY_FILE_ENV = "FRAMEWORK_AUDIT_KEY_FILE"


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
    manifest_sha256: str = ""  # of the manifest bytes this object was read from
    registry: ModelRegistry | None = field(default=None, repr=False)

    def file(self, name: str) -> Path:
        return self.path / name

    def verify(self) -> None:
        """Check the manifest against its hash in the audit log and every file against it.

        Raises ``RegistryError`` (exit 5) on the first mismatch."""
        if self.registry is None:
            raise RegistryError(f"{self.name} v{self.version}: not read from a registry")
        self.registry.verify_version(self)

    def verify_files(self) -> None:
        """Check every file against the sha256 in the manifest; raise on any mismatch."""
        files = self.manifest.get("files")
        if not isinstance(files, dict) or "model.onnx" not in files:
            raise RegistryError(
                f"{self.name} v{self.version}: the manifest lists no files to check",
                hint="the manifest was edited after registration",
            )
        for name, expected in files.items():
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


def _replace_atomic(folder: Path, path: Path, data: bytes, prefix: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str).encode()


def _load_json(path: Path, what: str) -> Any:
    """Parse a registry file; a damaged one is a ``RegistryError`` naming it (exit 5)."""
    try:
        return json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RegistryError(
            f"{path}: the {what} is not valid JSON ({exc})",
            hint="the file was damaged or edited; restore it from a backup",
        ) from None


class AuditKey:
    """The secret the audit log is signed with, kept outside the registry.

    Looked up in this order: the ``FRAMEWORK_AUDIT_KEY`` environment variable, the file
    ``security.audit_key_file`` (or ``FRAMEWORK_AUDIT_KEY_FILE``), else a per-registry file
    under ``$XDG_CONFIG_HOME/framework/audit-keys/`` (``~/.config`` by default), created with
    mode 0600 on the registry's first write.
    """

    def __init__(self, root: Path, key_file: str | Path | None = None):
        self.root = root
        # stripped: a Kubernetes Secret made from the key file carries its newline
        self.from_env = (os.environ.get(AUDIT_KEY_ENV) or "").strip() or None
        chosen = key_file or os.environ.get(AUDIT_KEY_FILE_ENV)
        if chosen:
            self.file = Path(chosen).expanduser()
        else:
            base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
            tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:20]
            self.file = base / "framework" / "audit-keys" / f"{tag}.key"
        self._key: bytes | None = None

    @property
    def where(self) -> str:
        return f"${AUDIT_KEY_ENV}" if self.from_env else str(self.file)

    def get(self, create: bool = False) -> bytes:
        if self._key is not None:
            return self._key
        text: str | None = self.from_env
        if text is None and self.file.is_file():
            text = self.file.read_text().strip()
        if text is None and create:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            text = secrets.token_hex(32)
            with os.fdopen(fd, "w") as handle:
                handle.write(text + "\n")
        if not text:
            raise RegistryError(
                f"no audit key for the registry {self.root}: looked in ${AUDIT_KEY_ENV} "
                f"and {self.file}",
                path="security.audit_key_file",
                hint="the key the registry was written with is needed to verify it: set "
                f"{AUDIT_KEY_ENV} or security.audit_key_file",
            )
        if len(text) < 16:
            raise RegistryError(
                f"the audit key in {self.where} is shorter than 16 characters",
                path="security.audit_key_file",
            )
        self._key = text.encode()
        return self._key

    def sign(self, entry: dict[str, Any], create: bool = False) -> str:
        return hmac.new(self.get(create), _canonical(entry), hashlib.sha256).hexdigest()

    def check(self, entry: dict[str, Any], signature: Any) -> bool:
        return isinstance(signature, str) and hmac.compare_digest(self.sign(entry), signature)


@dataclass
class AuditState:
    """What a verified audit log says: its entries, problems, and what it recorded."""

    entries: list[dict[str, Any]]
    problems: list[str]
    aliases: dict[str, int]  # as the audited moves leave them
    manifests: dict[int, str]  # version -> sha256 of its manifest at registration


class ModelRegistry:
    """A registry rooted at a folder on a local or shared file system."""

    def __init__(self, root: str | Path, audit_key_file: str | Path | None = None):
        self.root = Path(root)
        self.key = AuditKey(self.root, audit_key_file)

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
            folder = path.parent
            known = (
                sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())
                if (folder.is_dir())
                else []
            )
            raise RegistryError(
                f"model {name!r} has no version {version} in {self.root}",
                hint=f"registered versions: {known}" if known else "register one with task=train",
            )
        raw = manifest_path.read_bytes()
        manifest = _load_json(manifest_path, "manifest")
        if not isinstance(manifest, dict):
            raise RegistryError(f"{manifest_path}: the manifest is not a JSON object")
        aliases = [a for a, v in self.aliases(name).items() if v == version]
        return ModelVersion(
            name, version, path, manifest, sorted(aliases), hashlib.sha256(raw).hexdigest(), self
        )

    def aliases(self, name: str) -> dict[str, int]:
        path = self.root / name / ALIASES
        if not path.is_file():
            return {}
        aliases = _load_json(path, "alias file")
        if not isinstance(aliases, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in aliases.values()
        ):
            raise RegistryError(f"{path}: aliases must map names to version numbers")
        return aliases

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
        path = self.root / name / AUDIT
        if not path.is_file():
            return []
        entries = []
        for number, line in enumerate(path.read_bytes().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise RegistryError(
                    f"{path}: line {number} is not valid JSON",
                    hint="the audit log was damaged or edited; task=registry verify=true "
                    "lists every problem",
                ) from None
            if not isinstance(entry, dict):
                raise RegistryError(f"{path}: line {number} is not a JSON object")
            entries.append(entry)
        return entries

    # -- verifying --------------------------------------------------------------------
    def audit_state(self, name: str) -> AuditState:
        """Check the audit log's signatures, its chain and its signed head.

        An unreadable log or a missing key is a ``RegistryError``; what the checks find is in
        ``problems`` (empty: intact)."""
        folder = self.root / name
        entries = self.audit(name)
        problems: list[str] = []
        aliases: dict[str, int] = {}
        manifests: dict[int, str] = {}
        prev = ""
        for number, entry in enumerate(entries, start=1):
            if "hmac" not in entry:
                problems.append(f"audit entry {number}: it is not signed")
            elif not self.key.check({k: v for k, v in entry.items() if k != "hmac"}, entry["hmac"]):
                problems.append(f"audit entry {number}: its signature does not match its content")
            if entry.get("prev") != prev:
                problems.append(f"audit entry {number}: does not follow entry {number - 1}")
            prev = str(entry.get("hmac", ""))
            if entry.get("action") == "register" and isinstance(entry.get("version"), int):
                manifests[entry["version"]] = str(entry.get("manifest_sha256", ""))
            if "alias" in entry and "to" in entry:
                if entry["to"] is None:
                    aliases.pop(entry["alias"], None)
                else:
                    aliases[entry["alias"]] = entry["to"]
        head_path = folder / HEAD
        if head_path.is_file():
            head = _load_json(head_path, "audit head")
            body = {k: v for k, v in head.items() if k != "hmac"} if isinstance(head, dict) else {}
            if not isinstance(head, dict) or not self.key.check(body, head.get("hmac")):
                problems.append("audit head: its signature does not match its content")
            else:
                if head.get("entries") != len(entries) or head.get("last") != prev:
                    problems.append(
                        f"audit log: the signed head records {head.get('entries')} entries "
                        f"ending in {str(head.get('last'))[:12]}..., the log has {len(entries)}"
                        f" ending in {prev[:12]}...; entries were removed, added or rewritten"
                    )
                if head.get("aliases") != aliases:
                    problems.append("audit head: the aliases it records are not the audited ones")
        elif entries:
            problems.append("audit head: missing; the log cannot be checked for truncation")
        on_disk = self.aliases(name)
        if on_disk != aliases:
            problems.append(
                f"aliases: {ALIASES} says {on_disk}, the audited moves say {aliases}; "
                "an alias was moved without an audit entry"
            )
        return AuditState(entries, problems, aliases, manifests)

    def verify_audit(self, name: str) -> list[str]:
        """Problems in the audit log, its head and the aliases (empty: intact)."""
        if not (self.root / name / AUDIT).is_file() and not (self.root / name / HEAD).is_file():
            return []
        return self.audit_state(name).problems

    def verify_version(self, version: ModelVersion, state: AuditState | None = None) -> None:
        """The audit log intact, the manifest as registered, every file as the manifest says."""
        label = f"{version.name} v{version.version}"
        state = state or self.audit_state(version.name)
        if state.problems:
            raise RegistryError(
                f"{label}: the audit log of {version.name!r} fails verification: "
                + "; ".join(state.problems[:3]),
                hint="task=registry verify=true lists every problem",
            )
        recorded = state.manifests.get(version.version)
        if recorded is None:
            raise RegistryError(
                f"{label}: the audit log records no registration of this version",
                hint="a version can only be added by task=train or task=update",
            )
        if not hmac.compare_digest(recorded, version.manifest_sha256):
            raise RegistryError(
                f"{label}: sha256 of {MANIFEST} is {version.manifest_sha256[:12]}..., the audit "
                f"log recorded {recorded[:12]}... at registration; the manifest was changed"
            )
        version.verify_files()

    def verify_all(self, name: str | None = None) -> list[str]:
        """Every problem in every model (or ``name``): audit logs, manifests, files."""
        problems: list[str] = []
        for model in [name] if name else self.models():
            try:
                state = self.audit_state(model)
                problems += [f"{model}: {p}" for p in state.problems]
                for version in self.versions(model):
                    try:
                        self.verify_version(version, AuditState([], [], {}, state.manifests))
                    except RegistryError as exc:
                        problems.append(exc.message)
                if self.root.joinpath(model, "versions").is_dir():
                    folder = self.root / model / "versions"
                    on_disk = {int(p.name) for p in folder.iterdir() if p.name.isdigit()}
                    for lost in sorted(set(state.manifests) - on_disk):
                        problems.append(f"{model} v{lost}: registered but its folder is gone")
            except RegistryError as exc:
                problems.append(f"{model}: {exc.message}")
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
        """Write a new version atomically; return it. ``manifest`` gains files' sha256.

        The version's folder appears only once its audit entry (with the manifest's sha256)
        is written; the alias, when given, moves in a second audited step."""
        self.key.get(create=True)
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
                raw = json.dumps(full, indent=2, default=str).encode()
                _fsync_write(staging / MANIFEST, raw)
                entry = {"version": version, "manifest_sha256": hashlib.sha256(raw).hexdigest()}
                with self._audited(folder, "register", actor, entry):
                    os.rename(staging, folder / "versions" / str(version))
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
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
        verify: bool = True,
    ) -> dict[str, int]:
        """Apply several alias moves (None: remove the alias) as one atomic, audited step.

        Every version an alias moves to is verified first (audit log, manifest, files); a
        failure raises ``RegistryError`` and nothing moves. Each move is audited with its
        ``from`` and ``to`` version, the actor and the reason. Returns the aliases before.
        """
        targets = [self.get(name, v) for v in changes.values() if v is not None]
        with self._locked(name) as folder:
            if verify:
                state = self.audit_state(name)
                for version in targets:
                    self.verify_version(version, state)
            return self._write_aliases(folder, changes, actor, action, reason)

    def _write_aliases(
        self,
        folder: Path,
        changes: dict[str, int | None],
        actor: str | None,
        action: str,
        reason: str | None,
    ) -> dict[str, int]:
        """Audit each move, then rewrite aliases.json (the caller holds the lock).

        The entries and the signed head are on disk before the aliases move; when they
        cannot be written, the log is cut back and the aliases stay as they were."""
        path = folder / ALIASES
        before = self._head_of(folder)[2]  # the audited aliases, whatever the file says now
        aliases = dict(before)
        for alias, version in changes.items():
            if version is None:
                aliases.pop(alias, None)
            else:
                aliases[alias] = version
        moves = []
        for alias, version in changes.items():
            if before.get(alias) != version:
                fields: dict[str, Any] = {"alias": alias, "from": before.get(alias), "to": version}
                if reason:
                    fields["reason"] = reason
                moves.append(fields)
        data = json.dumps(aliases, indent=2, sort_keys=True).encode()
        with self._audited(folder, action, actor, *moves, aliases=aliases):
            _replace_atomic(folder, path, data, ".aliases-")
        return before

    def record(self, name: str, action: str, actor: str | None = None, **fields: Any) -> None:
        """Append a decision that moves no alias (a rollout step, a retraining run)."""
        with self._locked(name) as folder, self._audited(folder, action, actor, fields):
            pass

    @contextlib.contextmanager
    def _audited(
        self,
        folder: Path,
        action: str,
        actor: str | None,
        *entries: dict[str, Any],
        aliases: dict[str, int] | None = None,
    ) -> Iterator[None]:
        """Append signed entries and the new signed head, then run the change (the body).

        If the entries, the head or the change fail, the log and the head are put back as
        they were and the error goes on: no change without its entry, no entry without its
        change. The caller holds the model's lock."""
        log, head_path = folder / AUDIT, folder / HEAD
        count, last, current = self._head_of(folder)
        old_head = head_path.read_bytes() if head_path.is_file() else None
        size = log.stat().st_size if log.is_file() else 0
        lines = []
        for fields in entries:
            entry = {
                "time": time.time(),
                "action": action,
                "actor": actor or _whoami(),
                **fields,
                "prev": last,
            }
            entry["hmac"] = last = self.key.sign(entry, create=True)
            lines.append(json.dumps(entry, default=str) + "\n")
            count += 1
        head = {"entries": count, "last": last, "aliases": current if aliases is None else aliases}
        head["hmac"] = self.key.sign(head)
        try:
            if lines:
                with log.open("ab") as handle:
                    handle.write("".join(lines).encode())
                    handle.flush()
                    os.fsync(handle.fileno())
            _replace_atomic(folder, head_path, json.dumps(head).encode(), ".head-")
            yield
        except BaseException:
            with contextlib.suppress(OSError):
                if log.is_file():
                    with log.open("r+b") as handle:
                        handle.truncate(size)
                        os.fsync(handle.fileno())
                if old_head is None:
                    head_path.unlink(missing_ok=True)
                else:
                    _replace_atomic(folder, head_path, old_head, ".head-")
            raise

    def _head_of(self, folder: Path) -> tuple[int, str, dict[str, int]]:
        """Entries, last signature and aliases the log holds now, from its signed head.

        A head that does not verify refuses every write: the log is not extended on top of
        something that was tampered with."""
        head_path = folder / HEAD
        if not head_path.is_file():
            if (folder / AUDIT).is_file() and (folder / AUDIT).stat().st_size:
                raise RegistryError(
                    f"{folder / HEAD} is missing: the audit log cannot be extended",
                    hint="task=registry verify=true lists every problem",
                )
            return 0, "", {}
        head = _load_json(head_path, "audit head")
        body = {k: v for k, v in head.items() if k != "hmac"} if isinstance(head, dict) else {}
        if not isinstance(head, dict) or not self.key.check(body, head.get("hmac")):
            raise RegistryError(
                f"{head_path}: its signature does not match (wrong audit key, or edited)",
                path="security.audit_key_file",
                hint=f"the key in use is {self.key.where}",
            )
        return int(head["entries"]), str(head["last"]), dict(head["aliases"])


def open_registry(
    store_path: str | Path, audit_key_file: str | Path | None = None
) -> ModelRegistry:
    """The registry at ``store.path`` with the audit key of ``security.audit_key_file``."""
    key = Path(audit_key_file).expanduser().resolve() if audit_key_file else None
    return ModelRegistry(Path(store_path).expanduser(), key)


def _whoami() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
