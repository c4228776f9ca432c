"""``task=reproduce version=N``: rebuild a version from its manifest and compare.

The recorded config is validated again (with this command's Ray and registry settings), the
data is prepared and its fingerprint checked before anything is fitted, then the model is
trained as before (not registered) and compared with the registered version: test metrics,
the ONNX predictions on the test split, and the package versions it was built with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from framework.config import RootConfig, validate
from framework.errors import ReproductionError
from framework.export.predictor import OnnxPredictor
from framework.export.signature import Signature
from framework.progress import Stages
from framework.store.registry import ModelVersion, open_registry
from framework.versions import code_version, package_versions


@dataclass
class Reproduction:
    """How a rebuilt version compares with the registered one."""

    version: ModelVersion
    metrics: dict[str, tuple[float, float]]
    label_agreement: float
    max_score_diff: float
    packages: dict[str, tuple[str | None, str | None]]
    code: tuple[str | None, str]
    differences: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differences


def recorded_config(version: ModelVersion, current: RootConfig) -> RootConfig:
    """The version's config, validated again, run here: this command's Ray and registry."""
    recorded: dict[str, Any] = dict(version.manifest.get("config") or {})
    if not recorded:
        raise ReproductionError(
            f"{version.name} v{version.version} has no recorded config in its manifest"
        )
    recorded["ray"] = current.ray.model_dump(mode="json")
    recorded["store"] = current.store.model_dump(mode="json")
    recorded["task"] = "train"
    recorded["version"] = None
    recorded["train"] = {**recorded.get("train", {}), "dry_run": True}
    return validate(recorded)


def reproduce(cfg: RootConfig, output_dir: Path, stages: Stages) -> Reproduction:
    from framework.training.fit import prepare
    from framework.training.job import train

    store = open_registry(cfg.store.path, cfg.security.audit_key_file)
    version = store.resolve(cfg.model_name, cfg.version or cfg.serve.alias)
    version.verify()
    rebuilt = recorded_config(version, cfg)
    prepared = prepare(rebuilt, stages, output_dir)
    recorded_print = (version.manifest.get("data") or {}).get("fingerprint")
    if prepared.dataset.fingerprint != recorded_print:
        raise ReproductionError(
            f"the data changed: its fingerprint is {prepared.dataset.fingerprint[:16]}, "
            f"{version.name} v{version.version} was trained on {str(recorded_print)[:16]}",
            path="data.source",
            hint="reproduce needs the data the version was trained on",
        )
    result = train(rebuilt, output_dir, stages, prepared)
    tolerance = rebuilt.train.reproduce_tolerance
    differences: list[str] = []
    recorded = (version.manifest.get("metrics") or {}).get("test") or {}
    metrics: dict[str, tuple[float, float]] = {}
    for name in sorted(set(recorded) | set(result.evaluation.metrics)):
        old, new = recorded.get(name, float("nan")), result.evaluation.metrics.get(name, np.nan)
        metrics[name] = (old, new)
        if not abs(old - new) <= tolerance:
            differences.append(f"test {name}: {new:.6g} now, {old:.6g} recorded")
    signature = Signature.from_dict(version.manifest["signature"])
    assert result.test_frame is not None
    rows = result.test_frame[signature.numeric + signature.categorical]
    pairs = [("model.onnx", result.optimized or result.exported.onnx_bytes)]
    if "parent.onnx" in version.manifest.get("files", {}):  # an optimized version: both files
        pairs.append(("parent.onnx", result.exported.onnx_bytes))
    agreement, score_diff = 1.0, 0.0
    for name, rebuilt_bytes in pairs:
        theirs = OnnxPredictor(version.file(name).read_bytes(), signature)
        ours = OnnxPredictor(rebuilt_bytes, result.exported.signature)
        a, b = theirs.predict_frame(rows), ours.predict_frame(rows)
        agree = float(np.mean(np.asarray(a.labels) == np.asarray(b.labels))) if len(rows) else 1.0
        if a.scores is not None and b.scores is not None:
            diff = float(np.max(np.abs(a.scores - b.scores))) if len(rows) else 0.0
        else:
            diff = float(np.max(np.abs(np.asarray(a.labels, float) - np.asarray(b.labels, float))))
        if agree < 1.0:
            differences.append(f"{name}: labels agree on {agree:.2%} of the test split")
        if not diff <= tolerance:
            differences.append(f"{name}: scores differ by up to {diff:.3g} on the test split")
        agreement, score_diff = min(agreement, agree), max(score_diff, diff)
    then = version.manifest.get("packages") or {}
    now = package_versions()
    packages = {
        k: (then.get(k), now.get(k))
        for k in sorted(set(then) | set(now))
        if then.get(k) != now.get(k)
    }
    return Reproduction(
        version=version,
        metrics=metrics,
        label_agreement=agreement,
        max_score_diff=score_diff,
        packages=packages,
        code=(version.manifest.get("code_version"), code_version()),
        differences=differences,
    )
