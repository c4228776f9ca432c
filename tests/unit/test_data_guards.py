"""Poisoning and leakage guards on the bundled breast cancer data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer

from framework import registry
from framework.config import DataConfig
from framework.data.dataset import Dataset, split
from framework.data.guards import (
    SUSPECT,
    guard_after_split,
    guard_before_split,
    label_summary,
    row_hashes,
)
from framework.data.noise import inject_noise
from framework.data.source import snake_case
from framework.data.validation import ValidationReport
from framework.errors import DataValidationError

ROOT = Path(__file__).resolve().parents[2]


def _config(**guards: object) -> DataConfig:
    registry.load_plugins()
    spec = yaml.safe_load((ROOT / "conf" / "data" / "breast_cancer.yaml").read_text())
    spec["noise"] = {"enabled": False}
    spec["guards"] = guards
    source = registry.sources.get("sklearn_dataset")
    spec["source"] = source.config.model_validate(spec["source"])
    return DataConfig.model_validate(spec)


def _frame() -> pd.DataFrame:
    data = load_breast_cancer()
    frame = pd.DataFrame(data.data, columns=[snake_case(n) for n in data.feature_names])
    frame["target"] = [str(data.target_names[t]) for t in data.target]
    return frame


def _splits(frame: pd.DataFrame, data: DataConfig, guards: dict) -> tuple:
    parts = split(Dataset(frame, data, ValidationReport(len(frame))), True)
    train, held = guard_after_split(
        parts.train, {"validation": parts.validation, "test": parts.test}, data, guards
    )
    return train, held


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_label_flips_are_found_with_precision_and_recall_of_08(seed: int) -> None:
    clean = _frame()
    data = _config()
    noisy = data.model_copy(
        update={
            "noise": data.noise.model_copy(
                update={"enabled": True, "seed": seed, "label_flip_rate": 0.2}
            )
        }
    )
    flipped, report = inject_noise(clean, noisy)
    truth = (flipped["target"] != clean["target"]).to_numpy()
    assert report.injected["flipped_label"] == truth.sum() and 0.15 < truth.mean() < 0.25
    frame, guards = guard_before_split(flipped, data, "classification", None)
    found = frame[SUSPECT].to_numpy()
    precision = (found & truth).sum() / found.sum()
    recall = (found & truth).sum() / truth.sum()
    assert precision >= 0.8 and recall >= 0.8, (precision, recall)
    entry = guards["label_errors"]
    assert entry["suspected"] == found.sum() and entry["policy"] == "flag"
    assert {e["given"] for e in entry["examples"]} <= {"benign", "malignant"}
    train, _ = _splits(frame, data, guards)
    assert SUSPECT not in train.columns and len(train) > 300  # flag keeps them

    dropping = _config(label_errors="drop")
    frame, guards = guard_before_split(flipped, dropping, "classification", None)
    train, held = _splits(frame, dropping, guards)
    suspects_in_train = guards["label_errors"]["dropped_from_train"]
    assert suspects_in_train > 0 and SUSPECT not in held["test"].columns
    with pytest.raises(DataValidationError, match="look wrong by confident learning") as info:
        guard_before_split(flipped, _config(label_errors="fail"), "classification", None)
    assert info.value.path == "data.guards.label_errors"


def test_duplicates_are_found_and_none_straddle_the_splits() -> None:
    clean = _frame()
    data = _config()
    copied, report = inject_noise(
        clean,
        data.model_copy(
            update={"noise": data.noise.model_copy(update={"enabled": True, "duplicate_rate": 0.2})}
        ),
    )
    copies = report.injected["duplicated_row"]
    assert copies == round(0.2 * len(clean))
    repeated = int(pd.Series(row_hashes(copied, list(copied.columns))).duplicated().sum())
    features = data.features

    for policy in ("drop", "flag"):
        frame, guards = guard_before_split(
            copied, _config(duplicates=policy), "classification", None
        )
        assert guards["duplicates"]["rows"] == repeated
        assert len(frame) == (len(clean) if policy == "drop" else len(copied))
        train, held = _splits(frame, _config(duplicates=policy), guards)
        seen = set(row_hashes(train, features).tolist())
        for part in held.values():
            assert not seen & set(row_hashes(part, features).tolist())
        leaked = guards["leakage"]["test"]
        if policy == "flag":  # the copies kept straddle the split, and leakage drops them
            assert leaked["exact"] > 10 and leaked["dropped"] == leaked["exact"] + leaked["near"]
        else:
            assert leaked["exact"] == 0

    with pytest.raises(DataValidationError, match="repeat another row exactly") as info:
        guard_before_split(copied, _config(duplicates="fail"), "classification", None)
    assert info.value.path == "data.guards.duplicates"
    frame, _ = guard_before_split(copied, _config(duplicates="flag"), "classification", None)
    with pytest.raises(DataValidationError, match="duplicate a training row"):
        _splits(frame, _config(duplicates="flag", leakage="fail"), {})


def test_near_duplicates_are_flagged_or_dropped() -> None:
    clean = _frame()
    nudged = clean.sample(30, random_state=1).copy()
    nudged["mean_radius"] = nudged["mean_radius"] * 1.0001
    frame = pd.concat([clean, nudged], ignore_index=True)
    _, guards = guard_before_split(frame, _config(), "classification", None)
    assert guards["near_duplicates"]["rows"] == 60 and guards["duplicates"]["rows"] == 0
    kept, guards = guard_before_split(
        frame, _config(near_duplicates="drop"), "classification", None
    )
    assert guards["near_duplicates"]["dropped"] == 30 and len(kept) == len(clean)


def test_a_targeted_relabel_is_seen_by_the_label_shift_guard() -> None:
    """150 malignant rows with worst_area > 1000 relabelled benign: confident learning sees
    few of them (the region is relabelled consistently), the label shift guard sees it."""
    clean = _frame()
    data = _config()
    before = label_summary(clean, "target", "classification")
    poisoned = clean.copy()
    region = poisoned.index[(poisoned["target"] == "malignant") & (poisoned["worst_area"] > 1000)]
    assert len(region) == 150
    poisoned.loc[region, "target"] = "benign"
    frame, guards = guard_before_split(poisoned, data, "classification", (1, before))
    seen = int(frame.loc[region, SUSPECT].sum())
    assert seen < 75  # not caught as label errors: what the guard sees is in the card
    shift = guards["label_shift"]
    assert shift["shifted"] is True and shift["against_version"] == 1
    assert shift["distance"] == pytest.approx(150 / len(clean), abs=1e-6)
    with pytest.raises(DataValidationError, match=r"label distribution moved by 0\.264") as info:
        guard_before_split(poisoned, _config(label_shift="fail"), "classification", (1, before))
    assert info.value.path == "data.guards.label_shift"
    _, same = guard_before_split(clean, data, "classification", (1, before))
    assert same["label_shift"]["shifted"] is False


def test_regression_labels_shift_by_their_mean() -> None:
    frame = pd.DataFrame({"y": np.arange(100.0)})
    moved = label_summary(frame.assign(y=frame["y"] + 29.0), "y", "regression")
    from framework.data.guards import label_shift

    assert label_shift(moved, label_summary(frame, "y", "regression")) == pytest.approx(1.0, 0.01)


def test_categorical_features_with_missing_values_are_compared() -> None:
    from framework.config.data import ColumnSpec

    data = _config().model_copy(
        update={
            "columns": {
                "x": ColumnSpec(dtype="float"),
                "plan": ColumnSpec(dtype="category", categories=["a", "b"]),
                "target": ColumnSpec(dtype="category", role="target"),
            }
        }
    )
    frame = pd.DataFrame(
        {
            "x": [1.0, 1.0, 2.0, 3.0, 4.0, 5.0] * 5,
            "plan": pd.Series(["a", None, "b", "a", None, "b"] * 5, dtype="category"),
            "target": ["y", "n"] * 15,
        }
    )
    kept, guards = guard_before_split(frame, data, "classification", None)
    assert guards["duplicates"]["rows"] == 24 and len(kept) == 6
    assert guards["near_duplicates"]["rows"] == 0  # 'a' and a missing plan are not near
