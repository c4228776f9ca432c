"""The model registry: versions are atomic, aliases move atomically, hashes are checked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from framework.errors import RegistryError
from framework.store.registry import ModelRegistry

FILES = {"model.onnx": b"onnx-bytes", "profile.json": b"{}"}


def test_register_writes_a_version_folder_with_hashed_manifest(tmp_path: Path) -> None:
    store = ModelRegistry(tmp_path)
    v1 = store.register("churn", FILES, {"metrics": {"f1": 0.9}}, alias="champion", actor="t")
    assert v1.version == 1 and v1.aliases == ["champion"]
    assert (v1.path / "model.onnx").read_bytes() == b"onnx-bytes"
    manifest = json.loads((v1.path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.onnx", "profile.json"}
    assert manifest["version"] == 1 and manifest["metrics"] == {"f1": 0.9}
    v1.verify()


def test_versions_count_up_and_aliases_move(tmp_path: Path) -> None:
    store = ModelRegistry(tmp_path)
    store.register("churn", FILES, {}, alias="champion")
    v2 = store.register("churn", FILES, {}, alias="challenger")
    assert [v.version for v in store.versions("churn")] == [1, 2]
    assert store.aliases("churn") == {"champion": 1, "challenger": 2}
    store.set_alias("churn", "champion", 2, actor="ops")
    assert store.resolve("churn", "champion").version == 2
    assert v2.version == store.resolve("churn", "2").version
    moves = [e for e in store.audit("churn") if e["action"] == "alias"]
    assert moves[-1] == {
        **moves[-1],
        "alias": "champion",
        "from": 1,
        "to": 2,
        "actor": "ops",
    }
    assert store.verify_audit("churn") == []


def test_audit_log_is_signed_and_chained(tmp_path: Path) -> None:
    store = ModelRegistry(tmp_path)
    store.register("churn", FILES, {}, alias="champion")
    store.register("churn", FILES, {}, alias="challenger")
    store.move_aliases(
        "churn",
        {"champion": 2, "challenger": None, "previous": 1},
        "ops",
        action="promote",
        reason="manual",
    )
    store.record("churn", "rollout_step", "policy", version=2, **{"from": 0.1, "to": 0.25})
    entries = store.audit("churn")
    promote = [e for e in entries if e["action"] == "promote"]
    assert {(e["alias"], e["from"], e["to"]) for e in promote} == {
        ("champion", 1, 2),
        ("challenger", 2, None),
        ("previous", None, 1),
    }
    assert store.aliases("churn") == {"champion": 2, "previous": 1}
    assert store.verify_audit("churn") == []
    path = tmp_path / "churn" / "audit.jsonl"
    lines = path.read_text().splitlines()
    edited = json.loads(lines[2])
    edited["actor"] = "someone-else"
    lines[2] = json.dumps(edited)
    path.write_text("\n".join(lines) + "\n")
    assert store.verify_audit("churn") == [
        "audit entry 3: its signature does not match its content"
    ]
    del lines[2]
    path.write_text("\n".join(lines) + "\n")
    problems = store.verify_audit("churn")
    assert "audit entry 3: does not follow entry 2" in problems
    assert any("the signed head records 8 entries" in p for p in problems), problems


def test_crash_mid_registration_leaves_no_half_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelRegistry(tmp_path)
    store.register("churn", FILES, {})

    def crash(src: str, dst: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(OSError, match="disk gone"):
        store.register("churn", FILES, {})
    monkeypatch.undo()
    assert [v.version for v in store.versions("churn")] == [1]
    leftovers = [p.name for p in (tmp_path / "churn").iterdir() if p.name.startswith(".staging")]
    assert leftovers == []
    assert store.register("churn", FILES, {}).version == 2


def test_tampered_file_fails_verification(tmp_path: Path) -> None:
    store = ModelRegistry(tmp_path)
    version = store.register("churn", FILES, {})
    (version.path / "model.onnx").write_bytes(b"something else")
    with pytest.raises(RegistryError, match=r"sha256 of model\.onnx"):
        store.get("churn", 1).verify()


def test_unknown_version_and_alias_say_what_exists(tmp_path: Path) -> None:
    store = ModelRegistry(tmp_path)
    store.register("churn", FILES, {})
    with pytest.raises(RegistryError) as info:
        store.get("churn", 7)
    assert "has no version 7" in str(info.value) and "registered versions: [1]" in str(info.value)
    with pytest.raises(RegistryError, match="has no alias 'champion'"):
        store.resolve("churn", "champion")
    with pytest.raises(RegistryError):
        store.set_alias("churn", "champion", 9)
