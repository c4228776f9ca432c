"""The registry against someone who can write its files but does not hold the audit key.

Every attack here was once accepted silently; each must now be refused or reported."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from framework.errors import RegistryError
from framework.monitoring.rollout import promote
from framework.store.registry import AUDIT_KEY_ENV, ModelRegistry

NAME = "churn"


def _store(tmp_path: Path) -> ModelRegistry:
    store = ModelRegistry(tmp_path / "registry", audit_key_file=tmp_path / "audit.key")
    store.register(NAME, {"model.onnx": b"model one", "profile.json": b"{}"}, {}, "champion")
    store.register(NAME, {"model.onnx": b"model two", "profile.json": b"{}"}, {}, "challenger")
    return store


def _folder(store: ModelRegistry) -> Path:
    return store.root / NAME


def test_an_intact_registry_verifies_and_keeps_its_key_outside(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert store.verify_all() == []
    key = tmp_path / "audit.key"
    assert key.is_file() and (key.stat().st_mode & 0o777) == 0o600
    assert not list(store.root.rglob("*.key"))
    (register,) = [e for e in store.audit(NAME) if e["action"] == "register" and e["version"] == 1]
    manifest = store.get(NAME, 1).file("manifest.json").read_bytes()
    assert register["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()


def test_a_manifest_without_its_file_list_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    path = store.get(NAME, 1).file("manifest.json")
    manifest = json.loads(path.read_text())
    del manifest["files"]
    path.write_text(json.dumps(manifest, indent=2))
    with pytest.raises(RegistryError, match=r"churn v1: sha256 of manifest\.json .* changed"):
        store.get(NAME, 1).verify()
    assert any("churn v1" in p for p in store.verify_all())


def test_another_versions_model_copied_in_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    v1, v2 = store.get(NAME, 1), store.get(NAME, 2)
    shutil.copy(v2.file("model.onnx"), v1.file("model.onnx"))
    with pytest.raises(RegistryError, match=r"sha256 of model\.onnx"):
        store.get(NAME, 1).verify()
    shutil.copy(v2.file("manifest.json"), v1.file("manifest.json"))  # the manifest too
    with pytest.raises(RegistryError, match=r"sha256 of manifest\.json"):
        store.get(NAME, 1).verify()


def test_promoting_a_tampered_version_moves_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.get(NAME, 2).file("model.onnx").write_bytes(b"tampered")
    before = (_folder(store) / "aliases.json").read_bytes()
    entries = len(store.audit(NAME))
    with pytest.raises(RegistryError, match=r"churn v2: sha256 of model\.onnx"):
        promote(store, NAME, actor="ops")
    assert (_folder(store) / "aliases.json").read_bytes() == before
    assert len(store.audit(NAME)) == entries
    assert store.aliases(NAME) == {"champion": 1, "challenger": 2}


def test_truncating_the_log_is_detected(tmp_path: Path) -> None:
    store = _store(tmp_path)
    log = _folder(store) / "audit.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-1]))
    problems = store.verify_audit(NAME)
    assert any("the signed head records 4 entries" in p for p in problems), problems
    with pytest.raises(RegistryError, match="fails verification"):
        store.get(NAME, 1).verify()


def test_a_log_rewritten_whole_without_the_key_is_detected(tmp_path: Path) -> None:
    store = _store(tmp_path)
    folder = _folder(store)
    forger = ModelRegistry(tmp_path / "forged", audit_key_file=tmp_path / "forger.key")
    forger.register(NAME, {"model.onnx": b"evil", "profile.json": b"{}"}, {}, "champion")
    forger.register(NAME, {"model.onnx": b"evil two", "profile.json": b"{}"}, {}, "challenger")
    for name in ("audit.jsonl", "audit.head", "aliases.json"):  # a consistent, wrongly keyed log
        shutil.copy(forger.root / NAME / name, folder / name)
    problems = store.verify_audit(NAME)
    assert "audit entry 1: its signature does not match its content" in problems
    assert "audit head: its signature does not match its content" in problems
    with pytest.raises(RegistryError, match="its signature does not match"):
        store.set_alias(NAME, "champion", 2)  # nothing is written on top of a forged log


def test_an_alias_edited_by_hand_is_detected_and_not_trusted(tmp_path: Path) -> None:
    store = _store(tmp_path)
    (_folder(store) / "aliases.json").write_text(json.dumps({"champion": 2}))
    assert any("an alias was moved without an audit entry" in p for p in store.verify_audit(NAME))
    with pytest.raises(RegistryError, match="fails verification"):
        store.get(NAME, 2).verify()


def test_when_the_audit_entry_cannot_be_written_the_alias_does_not_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)
    folder = _folder(store)
    saved = {n: (folder / n).read_bytes() for n in ("aliases.json", "audit.jsonl", "audit.head")}
    real_open = Path.open

    def full_disk(self: Path, mode: str = "r", *args: object, **kwargs: object) -> object:
        if self.name == "audit.jsonl" and "a" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(self, mode, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", full_disk)
    with pytest.raises(OSError, match="No space left"):
        promote(store, NAME, actor="ops")
    monkeypatch.undo()
    assert {n: (folder / n).read_bytes() for n in saved} == saved
    assert store.aliases(NAME) == {"champion": 1, "challenger": 2}
    assert store.verify_all() == []


def test_when_the_alias_cannot_be_written_its_entry_is_taken_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import framework.store.registry as module

    store = _store(tmp_path)
    entries = store.audit(NAME)
    real = module._replace_atomic

    def failing(folder: Path, path: Path, data: bytes, prefix: str) -> None:
        if path.name == "aliases.json":
            raise OSError(errno.EIO, "I/O error")
        real(folder, path, data, prefix)

    monkeypatch.setattr(module, "_replace_atomic", failing)
    with pytest.raises(OSError, match="I/O error"):
        promote(store, NAME, actor="ops")
    monkeypatch.undo()
    assert store.audit(NAME) == entries
    assert store.verify_all() == []


def test_damaged_files_are_registry_errors_not_tracebacks(tmp_path: Path) -> None:
    store = _store(tmp_path)
    manifest = store.get(NAME, 1).file("manifest.json")
    manifest.write_text('{"name": "churn", "vers')
    with pytest.raises(RegistryError, match=r"manifest\.json: the manifest is not valid JSON"):
        store.get(NAME, 1)
    log = _folder(store) / "audit.jsonl"
    log.write_bytes(log.read_bytes() + b"\x00garbage\n")
    with pytest.raises(RegistryError, match="line 5 is not valid JSON"):
        store.audit(NAME)
    problems = store.verify_all()
    assert problems and all(p.startswith("churn") for p in problems)


def test_without_the_key_nothing_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _store(tmp_path)
    (tmp_path / "audit.key").unlink()
    store = ModelRegistry(tmp_path / "registry", audit_key_file=tmp_path / "audit.key")
    with pytest.raises(RegistryError, match="no audit key") as info:
        store.get(NAME, 1).verify()
    assert info.value.path == "security.audit_key_file"
    monkeypatch.setenv(AUDIT_KEY_ENV, "a different key of enough length")
    store = ModelRegistry(tmp_path / "registry", audit_key_file=tmp_path / "audit.key")
    assert "audit entry 1: its signature does not match its content" in store.verify_audit(NAME)
