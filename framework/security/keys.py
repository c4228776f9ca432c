"""API keys: generated once, shown once, stored only as sha256 hashes with their roles.

Keys are 256-bit random tokens, so a plain sha256 is enough to store them (the same choice
as for access tokens of code hosts): there is no low-entropy secret to stretch or salt.
A key grants its roles; ``admin`` grants every role.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framework.config.security import ROLES, SecurityConfig
from framework.errors import ConfigError

PREFIX = "fwk_"


@dataclass(frozen=True)
class ApiKey:
    """A stored key: its name (safe to log), its hash and its roles."""

    name: str
    sha256: str
    roles: frozenset[str]

    def grants(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def _parse(text: str, origin: str) -> list[ApiKey]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError([f"{origin}: not valid JSON ({exc.msg} at line {exc.lineno})"]) from None
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError([f'{origin}: expected {{"keys": [{{"name", "sha256", "roles"}}]}}'])
    keys: list[ApiKey] = []
    problems: list[str] = []
    for i, entry in enumerate(entries):
        where = f"{origin}: keys[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected an object")
            continue
        digest = entry.get("sha256")
        roles = entry.get("roles")
        if not isinstance(digest, str) or len(digest) != 64:
            problems.append(f"{where}.sha256: expected 64 hex digits (the key's sha256)")
            continue
        if not isinstance(roles, list) or not roles:
            problems.append(f"{where}.roles: expected a non-empty list of {list(ROLES)}")
            continue
        unknown = [r for r in roles if r not in ROLES]
        if unknown:
            problems.append(f"{where}.roles: unknown role(s) {unknown}; expected {list(ROLES)}")
            continue
        keys.append(ApiKey(str(entry.get("name", f"key{i}")), digest.lower(), frozenset(roles)))
    if problems:
        raise ConfigError(problems)
    return keys


def load_keys(config: SecurityConfig, base: Path | None = None) -> dict[str, ApiKey]:
    """Every configured key by hash, from the keys file and the environment variable."""
    keys: list[ApiKey] = []
    if config.keys_file:
        path = resolve_keys_file(config, base)
        if path.is_file():
            keys += _parse(path.read_text(), f"security.keys_file ({path})")
    if config.keys_env and os.environ.get(config.keys_env):
        keys += _parse(os.environ[config.keys_env], f"${config.keys_env}")
    return {k.sha256: k for k in keys}


def resolve_keys_file(config: SecurityConfig, base: Path | None = None) -> Path:
    assert config.keys_file is not None
    path = Path(config.keys_file).expanduser()
    return path if path.is_absolute() else (base or Path.cwd()) / path


def add_key(path: Path, name: str, roles: list[str]) -> tuple[str, ApiKey]:
    """Create a key, append its hash to ``path`` (atomically); return the key and its entry."""
    data: dict[str, Any] = {"keys": []}
    if path.is_file():
        data = json.loads(path.read_text())
        _parse(json.dumps(data), str(path))
    if any(entry.get("name") == name for entry in data["keys"]):
        raise ConfigError([f"security.key_name: a key named {name!r} already exists in {path}"])
    key = new_key()
    entry = ApiKey(name, hash_key(key), frozenset(roles))
    data["keys"].append({"name": name, "sha256": entry.sha256, "roles": sorted(roles)})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return key, entry
