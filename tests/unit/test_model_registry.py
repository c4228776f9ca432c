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
        "version": 2,
        "previous": 1,
        "actor": "ops",
    }


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
