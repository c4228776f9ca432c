"""``task=monitor``: check a batch of new data for drift against the served model version."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from framework import registry
from framework.config import RootConfig
from framework.config.monitor import DriftConfig
from framework.data.noise import inject_noise
from framework.data.validation import ValidationReport, validate_frame
from framework.errors import RegistryError
from framework.export.onnx import Signature
from framework.export.predictor import OnnxPredictor
from framework.monitoring.drift import DriftDetector, DriftReport, FeatureDrift
from framework.monitoring.report import write_report
from framework.store.registry import ModelVersion, open_registry

#: Exit status of ``task=monitor`` when drift passes the threshold.
DRIFT_EXIT = 6


@dataclass
class MonitorResult:
    version: ModelVersion
    report: DriftReport
    json_path: Path
    html_path: Path


def detector_for(version: ModelVersion, config: DriftConfig) -> DriftDetector:
    """The drift detector of a version, from its ``reference.npz``."""
    path = version.file("reference.npz")
    if not path.is_file():
        raise RegistryError(
            f"{version.name} v{version.version} has no drift reference (reference.npz)",
            hint="versions registered by this framework's task=train carry one; retrain",
        )
    categorical = {
        name
        for name, spec in version.manifest.get("schema", {}).items()
        if spec.get("dtype") in ("category", "str", "bool")
    }
    return DriftDetector.from_bytes(path.read_bytes(), config, categorical)


def load_new_data(cfg: RootConfig) -> tuple[pd.DataFrame, str, ValidationReport]:
    """The rows to check: ``monitor.data_path``, or the data/ source after its noise block."""
    data = cfg.data
    path = cfg.monitor.data_path
    if path is not None:
        from framework.data.files import read_all, resolve_paths

        raw = read_all(resolve_paths(path, "monitor.data_path"))
        origin = path
    else:
        raw = registry.sources.get(data.source.type).impl(data.source).load()
        origin = f"{data.source.type} source of data/{data.name}"
        if data.noise.enabled:
            raw, _ = inject_noise(raw, data)
            origin += " (after the noise simulator)"
    columns = {n: s for n, s in data.columns.items() if n in raw.columns or n != data.target}
    frame, report = validate_frame(raw, columns, data.checks)
    return frame, origin, report


def flag_repaired(
    report: DriftReport, checks: ValidationReport, rows: int, max_share: float
) -> None:
    """A feature the data checks emptied or mostly repaired is drifted, with their reason:
    its values were set missing before any test saw them."""
    repaired: dict[str, list[tuple[str, int]]] = {}
    for failure in checks.failures:
        # a value that arrived missing (a token such as '' or 'NA') was not emptied by the
        # checks: the missing-share test speaks for it
        if failure.action.startswith("repair") and failure.kind not in ("missing_token",
                                                                         "missing"):  # fmt: skip
            repaired.setdefault(failure.column, []).append((failure.kind, failure.count))
    for feature in report.features:
        found = repaired.get(feature.name)
        if not found or not rows:
            continue
        count = sum(n for _, n in found)
        if count / rows > max_share:
            kinds = ", ".join(f"{kind} ({n})" for kind, n in found)
            feature.flag(
                f"the data checks repaired {count} of {rows} values ({count / rows:.0%}): {kinds}"
            )


def drift_of(
    detector: DriftDetector,
    frame: pd.DataFrame,
    prediction: np.ndarray | None,
    checks: ValidationReport,
    config: DriftConfig,
) -> DriftReport:
    """Drift of checked rows (and their predictions) against a version's reference, with
    the features the checks emptied or mostly repaired flagged."""
    current: dict[str, np.ndarray] = {}
    for name in detector.order:
        if name not in frame.columns:
            continue
        column = frame[name]
        if name in detector.numeric:
            current[name] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        else:
            current[name] = column.astype(object).where(column.notna(), None).to_numpy()
    report = detector.check(current, prediction)
    flag_repaired(report, checks, checks.rows_in or len(frame), config.max_repaired_share)
    report.recount(config.max_drifted_share)
    return report


def monitor_batch(cfg: RootConfig, output_dir: Path) -> MonitorResult:
    store = open_registry(cfg.store.path, cfg.security.audit_key_file)
    version = store.resolve(cfg.model_name, cfg.serve.alias)
    version.verify()
    detector = detector_for(version, cfg.monitor.drift)
    frame, origin, checks = load_new_data(cfg)
    signature = Signature.from_dict(version.manifest["signature"])
    predictor = OnnxPredictor(version.file("model.onnx").read_bytes(), signature)
    prediction = predictor.predict_frame(frame).labels
    report = drift_of(detector, frame, prediction, checks, cfg.monitor.drift)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    context = {
        "model": version.name,
        "version": version.version,
        "alias": cfg.serve.alias,
        "data": origin,
    }
    folder = Path(cfg.monitor.report_dir)
    if not folder.is_absolute():
        folder = output_dir / folder
    json_path, html_path = write_report(
        report, folder, f"drift-{version.name}-v{version.version}-{stamp}", context
    )
    return MonitorResult(version, report, json_path, html_path)


def _verdict(f: FeatureDrift) -> str:
    if f.drifted:
        return "[red]drifted[/]"
    return "[yellow]untestable[/]" if f.status == "untestable" else "ok"


def print_result(console: Console, result: MonitorResult) -> None:
    report = result.report
    table = Table(title=f"drift of {result.version.name} v{result.version.version} inputs")
    for column in ("feature", "test", "statistic", "p adjusted", "PSI", "verdict"):
        table.add_column(column)
    shown = list(report.features) + ([report.prediction] if report.prediction else [])
    for f in shown:
        table.add_row(
            f.name,
            f.test,
            f"{f.statistic:.4f}",
            f"{f.p_adjusted:.2e}",
            f"{f.psi:.4f}",
            _verdict(f),
        )
    console.print(table)
    drifted = ", ".join(report.drifted) or "none"
    console.print(f"Drifted features ({len(report.drifted)}/{len(report.features)}): {drifted}")
    for f in shown:
        if f.reason:
            console.print(f"  {f.name}: {f.reason}", markup=False, soft_wrap=True)
    if report.untestable:
        console.print(
            "[yellow]Untestable[/] (no statistic could be computed): "
            + ", ".join(report.untestable)
        )
    console.print(f"Report: {result.json_path}\n        {result.html_path}")
    if report.drift:
        console.print(f"[bold red]DRIFT[/]: exit status {DRIFT_EXIT}")
    else:
        console.print("[green]no drift[/] past the threshold")
