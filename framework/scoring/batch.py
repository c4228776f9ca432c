"""``task=score``: score files in bulk on Ray Data with a pool of ONNX Runtime actors.

The graph: a Ray Data read of the input files (one read task per file, streaming chunks of
``score.batch_rows`` rows that name their file and row; Parquet as Arrow) -> ``map_batches``
over an actor pool of ``Scorer``: the version's request checks, its ONNX model, and the
block's predictions and rejects written as Parquet parts. Only counts, the block's check
report and a small drift sample travel back to the driver.

Nothing is dropped silently: every row read comes back either scored or rejected with its
reason (a value the served API would refuse: not a number, out of range, an unknown
category, a missing required value, a line that could not be read), and the summary checks
``rows in = scored + rejected``. The drift report of the scored data against the version's
reference comes from the samples.

Results are written into a folder beside the output and renamed into place only when the run
completed, so a failed run never leaves output that looks complete. On a multi-node cluster
the read tasks and actors spread over the nodes; input and output must be on storage every
node reaches (a shared file system).
"""

from __future__ import annotations

import json
import pickle
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from framework.config import RootConfig
from framework.config.data import ChecksConfig, ColumnSpec, OutlierCheck
from framework.data.files import (
    FILE,
    ROW,
    arrow_chunks,
    check_readable,
    file_format,
    framework_cause,
    iter_chunks,
    resolve_paths,
)
from framework.data.validation import REJECT, ValidationReport, validate_frame
from framework.errors import ConfigError, DataValidationError, FrameworkError
from framework.store.registry import ModelVersion, open_registry

#: Checks of a row to score: every failure rejects the row, as the served API refuses it.
STRICT = ChecksConfig(
    type="drop",
    missing="drop",
    range="drop",
    category="drop",
    outliers=OutlierCheck(method="none"),
)


def scoring_columns(version: ModelVersion) -> tuple[dict[str, ColumnSpec], list[str]]:
    """The version's feature columns (to check) and its id columns (carried to the output)."""
    schema = {n: ColumnSpec(**s) for n, s in version.manifest["schema"].items()}
    features = {n: s for n, s in schema.items() if s.role == "feature"}
    ids = [n for n, s in schema.items() if s.role == "id"]
    return features, ids


class Scorer:
    """An actor of the pool: checks a block's rows and predicts the good ones."""

    def __init__(
        self,
        model: bytes,
        signature: dict[str, Any],
        version: int,
        columns: dict[str, ColumnSpec],
        ids: list[str],
        threads: int,
        missing_tokens: list[str],
        seed: int,
        drift_rows_per_block: int,
        folder: str,
    ):
        import uuid

        from framework.export.predictor import OnnxPredictor
        from framework.export.signature import Signature

        self.signature = Signature.from_dict(signature)
        self.predictor = OnnxPredictor(model, self.signature, threads)
        self.version = version
        self.columns = columns
        self.ids = ids
        self.checks = STRICT.model_copy(update={"missing_tokens": missing_tokens})
        self.rng = np.random.default_rng(seed)
        self.drift_rows_per_block = drift_rows_per_block
        self.folder = Path(folder)
        self.schema = output_schema(self.signature, ids)
        self.name = uuid.uuid4().hex[:12]
        self.written = 0

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:

        try:
            checked, report = validate_frame(
                batch, self.columns, self.checks, whole=False, reasons=True
            )
        except DataValidationError as exc:  # a required column absent from this file
            checked = pd.DataFrame(
                {name: np.nan for name in self.columns}, index=batch.index
            ).assign(**{REJECT: exc.message})
            report = ValidationReport(rows_in=len(batch), rows_out=0)
        good = checked[REJECT].isna().to_numpy()
        out = pd.DataFrame(
            {
                "source_file": batch[FILE].to_numpy()
                if not isinstance(batch[FILE].dtype, pd.CategoricalDtype)
                else batch[FILE].array,
                "source_row": batch[ROW].to_numpy(dtype=np.int64),
            }
        )
        for name in self.ids:
            # as read (text or typed); written as text by Arrow
            out[name] = batch[name].to_numpy() if name in batch.columns else None
        signature = self.signature
        n = len(batch)
        labels = (
            np.full(n, None, dtype=object)
            if signature.classification
            else np.full(n, np.nan, dtype=np.float64)
        )
        scores = (
            np.full((n, len(signature.classes)), np.nan, dtype=np.float64)
            if signature.classification
            else None
        )
        if good.any():
            names = signature.numeric + signature.categorical
            features = checked[names] if good.all() else checked.loc[good, names]
            predicted = self.predictor.run(self.feeds(features))
            if signature.classification:
                labels[good] = np.asarray(predicted.labels).astype(str)
                scores[good] = predicted.scores  # type: ignore[index]
            else:
                labels[good] = predicted.labels
            # a random part of every block for the drift report (blocks are of equal size,
            # so the collector's sample is close to uniform over the scored rows)
            take = self.rng.permutation(len(features))[: self.drift_rows_per_block]
            sample = features.iloc[take].assign(__prediction=np.asarray(predicted.labels)[take])
        else:
            sample = pd.DataFrame()
        out["prediction"] = labels
        if scores is not None:
            for j, cls in enumerate(signature.classes):
                out[f"score_{cls}"] = scores[:, j]
        out["version"] = np.full(n, self.version, dtype=np.int64)
        out["reject_reason"] = checked[REJECT].to_numpy()
        return self.write(out, report, sample.reset_index(drop=True))

    def feeds(self, features: pd.DataFrame) -> dict[str, np.ndarray]:
        """The model's two inputs from checked columns (floats, and text with NaN missing)."""
        from framework.export.signature import CATEGORICAL_INPUT, MISSING_CATEGORY, NUMERIC_INPUT

        feeds: dict[str, np.ndarray] = {}
        if self.signature.numeric:
            feeds[NUMERIC_INPUT] = np.column_stack(
                [features[c].to_numpy(dtype=np.float32, na_value=np.nan)
                 for c in self.signature.numeric]
            )  # fmt: skip
        if self.signature.categorical:
            feeds[CATEGORICAL_INPUT] = np.column_stack(
                [features[c].fillna(MISSING_CATEGORY).to_numpy(dtype=object)
                 for c in self.signature.categorical]
            )  # fmt: skip
        return feeds

    def write(
        self, out: pd.DataFrame, report: ValidationReport, sample: pd.DataFrame
    ) -> pd.DataFrame:
        """Write a block's predictions and rejects as Parquet parts; return one row: the
        counts, the block's check report and its drift sample (pickled: they go only from
        these actors to the driver that started them)."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = conform(pa.Table.from_pandas(out, preserve_index=False), self.schema)
        bad = pc.is_valid(table["reject_reason"])
        good = table.filter(pc.invert(bad)).drop_columns(["reject_reason"])
        rejected = table.filter(bad).select(rejects_names(self.schema))
        part = f"part-{self.name}-{self.written:05d}.parquet"
        self.written += 1
        # dictionary pages only where values repeat (scores and ids would only pay for them)
        dictionary = ["source_file", "prediction"]
        if good.num_rows:
            pq.write_table(good, self.folder / PREDICTIONS / part, use_dictionary=dictionary)
        reasons: dict[str, int] = {}
        if rejected.num_rows:
            pq.write_table(rejected, self.folder / REJECTS / part, use_dictionary=dictionary)
            for reason in rejected["reject_reason"].to_pylist():
                kind = reason_kind(reason)
                reasons[kind] = reasons.get(kind, 0) + 1
        return pd.DataFrame(
            {
                "rows": [table.num_rows],
                "scored": [good.num_rows],
                "rejected": [rejected.num_rows],
                "reasons": [json.dumps(reasons)],
                "report": [pickle.dumps(report)],
                "sample": [pickle.dumps(sample)],
            }
        )


@dataclass
class ScoreResult:
    """What ``task=score`` read, scored, rejected and wrote."""

    version: ModelVersion
    files: int
    rows_in: int
    scored: int
    rejected: int
    seconds: float
    output: Path
    reject_reasons: dict[str, int] = field(default_factory=dict)
    drift: Any = None

    @property
    def rows_per_s(self) -> float:
        return self.rows_in / self.seconds if self.seconds > 0 else float("inf")


class TableFiles:
    """A Ray Data datasource over table files: one read task per file, streaming blocks of
    ``rows`` rows (a file's chunks, with ``__file``/``__row``/``__error``)."""

    def __init__(
        self, files: list[Path], rows: int, separator: str, encoding: str, columns: list[str]
    ):
        self.files = [str(f) for f in files]
        self.rows = rows
        self.separator = separator
        self.encoding = encoding
        self.columns = columns

    def datasource(self) -> Any:
        from ray.data import Datasource, ReadTask
        from ray.data.block import BlockMetadata

        outer = self

        class _Files(Datasource):  # type: ignore[misc]
            def estimate_inmemory_data_size(self) -> int | None:
                return sum(Path(f).stat().st_size for f in outer.files) * 4

            def get_read_tasks(
                self, parallelism: int, per_task_row_limit: int | None = None, **_: Any
            ) -> list[Any]:
                tasks = []
                for file in outer.files:
                    meta = BlockMetadata(
                        num_rows=None,
                        size_bytes=Path(file).stat().st_size,
                        exec_stats=None,
                        input_files=(file,),
                    )
                    tasks.append(ReadTask(lambda file=file: outer.read(file), meta))
                return tasks

            def get_name(self) -> str:
                return "TableFiles"

        return _Files()

    def read(self, file: str) -> Any:
        if file_format(Path(file)) == "parquet":  # Arrow blocks: no pandas round trip here
            yield from arrow_chunks(Path(file), self.rows, self.columns)
            return
        for chunk in iter_chunks(
            [Path(file)],
            self.rows,
            separator=self.separator,
            encoding=self.encoding,
            columns=self.columns,
        ):
            yield chunk.frame


#: Folders of Parquet parts in the output, one part per scored block.
PREDICTIONS, REJECTS = "predictions", "rejects"


def rejects_names(schema: Any) -> list[str]:
    ids = [f.name for f in schema if f.name not in ("source_file", "source_row", "prediction",
                                                    "version", "reject_reason")
           and not f.name.startswith("score_")]  # fmt: skip
    return ["source_file", "source_row", *ids, "version", "reject_reason"]


def output_schema(signature: Any, ids: list[str]) -> Any:
    import pyarrow as pa

    text = pa.dictionary(pa.int32(), pa.string())  # a few distinct values, stored once each
    fields = [pa.field("source_file", text), pa.field("source_row", pa.int64())]
    fields += [pa.field(name, pa.string()) for name in ids]
    if signature.classification:
        fields.append(pa.field("prediction", text))
        fields += [pa.field(f"score_{c}", pa.float64()) for c in signature.classes]
    else:
        fields.append(pa.field("prediction", pa.float64()))
    fields += [pa.field("version", pa.int64()), pa.field("reject_reason", pa.string())]
    return pa.schema(fields)


def reason_kind(reason: str) -> str:
    """A rejection reason without its value: ``range check failed in column 'x'``."""
    return reason.split(": value", 1)[0] if ": value" in reason else reason


def score(cfg: RootConfig, output_dir: Path) -> ScoreResult:
    """Score ``score.input`` with ``version`` (or ``serve.alias``); see the module docs."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    from framework.export.signature import Signature
    from framework.monitoring.job import detector_for, drift_of
    from framework.monitoring.report import write_report
    from framework.training.stream import Reservoir

    settings = cfg.score
    if settings.input is None:
        raise ConfigError(["score.input: required for task=score (a file, folder or glob)"])
    files = resolve_paths(settings.input, "score.input")
    check_readable(files, settings.separator, settings.encoding)
    store = open_registry(cfg.store.path, cfg.security.audit_key_file)
    version = store.resolve(cfg.model_name, cfg.version or cfg.serve.alias)
    version.verify()
    signature = Signature.from_dict(version.manifest["signature"])
    columns, ids = scoring_columns(version)
    final = Path(settings.output) if settings.output else output_dir / "scores"
    partial = final.with_name(f".{final.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / PREDICTIONS).mkdir(parents=True)
    (partial / REJECTS).mkdir()
    started = time.perf_counter()
    try:
        reader = TableFiles(
            files, settings.batch_rows, settings.separator, settings.encoding, [*columns, *ids]
        )
        dataset = ray.data.read_datasource(
            reader.datasource(), num_cpus=settings.read_cpus, override_num_blocks=len(files)
        )
        per_block = max(1, settings.drift_rows // 8)
        scored = dataset.map_batches(
            Scorer,
            batch_size=None,
            batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(size=settings.pool_size),
            num_cpus=settings.actor_cpus,
            fn_constructor_kwargs={
                "model": version.file("model.onnx").read_bytes(),
                "signature": signature.to_dict(),
                "version": version.version,
                "columns": columns,
                "ids": ids,
                "threads": settings.onnx_threads,
                "missing_tokens": list(cfg.data.checks.missing_tokens),
                "seed": cfg.train.seed,
                "drift_rows_per_block": per_block,
                "folder": str(partial),
            },
        )
        rows_in = good_rows = bad_rows = 0
        reasons: dict[str, int] = {}
        report = ValidationReport(rows_in=0)
        drift_sample = Reservoir(settings.drift_rows, cfg.train.seed)
        for counts in scored.iter_batches(batch_size=None, batch_format="pandas"):
            for blob in counts["report"]:
                report.merge(pickle.loads(blob), cfg.data.checks.max_examples)
            for blob in counts["sample"]:
                drift_sample.add(pickle.loads(blob))
            rows_in += int(counts["rows"].sum())
            good_rows += int(counts["scored"].sum())
            bad_rows += int(counts["rejected"].sum())
            for text in counts["reasons"]:
                for kind, count in json.loads(text).items():
                    reasons[kind] = reasons.get(kind, 0) + count
        schema = output_schema(signature, ids)
        for folder, names in (
            (PREDICTIONS, [n for n in schema.names if n != "reject_reason"]),
            (REJECTS, rejects_names(schema)),
        ):
            if not any((partial / folder).iterdir()):  # an empty result is still a table
                pq.write_table(
                    pa.schema([schema.field(n) for n in names]).empty_table(),
                    partial / folder / "part-empty.parquet",
                )
        sample = drift_sample.sample
        if rows_in != good_rows + bad_rows or rows_in != report.rows_in:
            raise FrameworkError(
                f"rows read ({report.rows_in}) != scored ({good_rows}) + rejected ({bad_rows})"
            )
        seconds = time.perf_counter() - started
        drift = None
        if sample is not None and len(sample):
            detector = detector_for(version, cfg.monitor.drift)
            drift = drift_of(
                detector,
                sample,
                sample["__prediction"].to_numpy(),
                report,
                cfg.monitor.drift,
            )
            write_report(
                drift,
                partial,
                "drift",
                {
                    "model": version.name,
                    "version": version.version,
                    "data": settings.input,
                    "rows": f"a sample of {len(sample)} of {good_rows} scored rows",
                },
            )
        summary = {
            "model": version.name,
            "version": version.version,
            "input": settings.input,
            "files": [str(f) for f in files],
            "rows_in": rows_in,
            "scored": good_rows,
            "rejected": bad_rows,
            "reject_reasons": reasons,
            "seconds": round(seconds, 3),
            "rows_per_s": round(rows_in / seconds, 1) if seconds else None,
            "pool_size": settings.pool_size,
            "batch_rows": settings.batch_rows,
            "checks": report.to_dict(),
            "drift": None
            if drift is None
            else {"drift": drift.drift, "drifted": drift.drifted, "untestable": drift.untestable},
        }
        (partial / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        cause = framework_cause(exc)
        if cause is not None and cause is not exc:
            raise cause from None  # a bad file found mid-read: its own message and status
        raise
    _replace(partial, final)
    return ScoreResult(
        version=version,
        files=len(files),
        rows_in=rows_in,
        scored=good_rows,
        rejected=bad_rows,
        seconds=seconds,
        output=final,
        reject_reasons=reasons,
        drift=drift,
    )


def conform(batch: Any, schema: Any) -> Any:
    """A result block in the fixed output schema (a block with no rejects types its reason
    column as null; ids may arrive typed)."""
    import pyarrow as pa

    arrays = []
    for field_ in schema:
        column = batch.column(field_.name) if field_.name in batch.column_names else None
        if column is None:
            arrays.append(pa.nulls(batch.num_rows, field_.type))
        else:
            arrays.append(column.cast(field_.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _replace(partial: Path, final: Path) -> None:
    """Move the complete results into place; an older result folder goes only after."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    partial.rename(final)
    shutil.rmtree(old, ignore_errors=True)
