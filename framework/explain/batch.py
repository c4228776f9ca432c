"""``task=explain``: attributions for every row of a CSV or Parquet file, as Parquet and HTML."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from framework.config import RootConfig
from framework.errors import FrameworkError
from framework.explain.attributions import Attributions
from framework.explain.features import feeds_of
from framework.explain.loader import load_explainer
from framework.export.predictor import OnnxPredictor
from framework.export.signature import Signature
from framework.store.registry import ModelVersion, open_registry
from framework.training.pipeline import model_input


@dataclass
class ExplainResult:
    """What ``task=explain`` wrote and how fast."""

    version: ModelVersion
    method: str
    rows: int
    seconds: float
    parquet: Path
    report: Path
    importance: dict[str, float]

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def input_files(pattern: str) -> list[Path]:
    """A file, a directory (its CSV and Parquet files) or a glob, in sorted order."""
    from framework.data.files import resolve_paths

    return resolve_paths(pattern, "explain.input")


def read_rows(files: list[Path]) -> pd.DataFrame:
    frames = [
        pd.read_parquet(f) if f.suffix in (".parquet", ".pq") else pd.read_csv(f) for f in files
    ]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def wide_frame(found: Attributions, ids: pd.DataFrame) -> pd.DataFrame:
    """One row per explained row: ids, then per output its output, base and attributions."""
    columns: dict[str, np.ndarray] = {c: ids[c].to_numpy() for c in ids.columns}
    for o, name in enumerate(found.outputs):
        columns[f"output.{name}"] = found.output[:, o]
        columns[f"base.{name}"] = found.base[:, o]
        for c, column in enumerate(found.columns):
            columns[f"attribution.{name}.{column}"] = found.values[:, o, c]
    return pd.DataFrame(columns)


def explain_file(cfg: RootConfig, output_dir: Path) -> ExplainResult:
    """Explain ``explain.input`` with the served (or ``version=N``) version."""
    settings = cfg.explain
    if not settings.input:
        raise FrameworkError(
            "task=explain needs explain.input (a CSV or Parquet file, directory or glob)",
            path="explain.input",
        )
    store = open_registry(cfg.store.path, cfg.security.audit_key_file)
    ref: str | int = cfg.version if cfg.version is not None else cfg.serve.alias
    version = store.resolve(cfg.model_name, ref)
    version.verify()
    signature = Signature.from_dict(version.manifest["signature"])
    raw = read_rows(input_files(settings.input))
    wanted = signature.numeric + signature.categorical
    missing = [c for c in wanted if c not in raw.columns]
    if missing:
        raise FrameworkError(
            f"{settings.input} lacks the model's input column(s) {', '.join(missing)}",
            path="explain.input",
        )
    ids = [n for n, spec in version.manifest.get("schema", {}).items() if spec.get("role") == "id"]
    if raw.empty:
        raise FrameworkError(f"{settings.input} holds no rows to explain", path="explain.input")
    frame = model_input(raw, signature.numeric, signature.categorical)
    predictor = OnnxPredictor(version.file("model.onnx").read_bytes(), signature)
    explainer = load_explainer(version, predictor, settings.method, settings.samples)
    started = time.perf_counter()
    parts: list[Attributions] = []
    for start in range(0, len(frame), settings.batch_rows):
        parts.append(
            explainer(feeds_of(frame.iloc[start : start + settings.batch_rows], signature))
        )
    seconds = time.perf_counter() - started
    found = Attributions.concat(parts)
    out = Path(settings.output) if settings.output else output_dir / "explanations.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    id_frame = raw[[c for c in ids if c in raw.columns]].reset_index(drop=True)
    id_frame.insert(0, "row", np.arange(len(raw)))
    import io

    from framework.data.files import write_atomic

    buffer = io.BytesIO()
    wide_frame(found, id_frame).to_parquet(buffer, index=False)
    write_atomic(out, buffer.getvalue())
    from framework.explain.report import write_report

    report = write_report(
        out.with_suffix(".html"),
        found,
        frame,
        f"{version.name} v{version.version}",
        settings.report_rows,
    )
    return ExplainResult(
        version, explainer.method, found.rows, seconds, out, report, found.importance()
    )
