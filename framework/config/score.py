"""``score``: batch scoring of files on Ray Data (``task=score``)."""

from __future__ import annotations

from pydantic import Field, PositiveFloat, PositiveInt

from framework.config.base import StrictModel


class ScoreConfig(StrictModel):
    """Batch scoring: files in, Parquet predictions and rejects out, drift as a by-product."""

    input: str | None = Field(
        None, description="A CSV or Parquet file, a folder of them, or a glob, to score."
    )
    output: str | None = Field(
        None,
        description="Folder the results go to (predictions.parquet, rejects.parquet, "
        "drift.json/html, summary.json); default: the run folder's scores/. Written beside "
        "it first and renamed into place when complete.",
    )
    batch_rows: PositiveInt = Field(
        65_536, description="Rows per read block and per predictor call (one Ray Data batch)."
    )
    pool_size: PositiveInt = Field(
        2, description="ONNX Runtime predictor actors in the Ray Data actor pool."
    )
    actor_cpus: PositiveFloat = Field(
        0.5,
        description="CPUs each predictor actor reserves. The pool and the read tasks must fit "
        "the cluster together, or the reads wait for CPUs the pool holds.",
    )
    read_cpus: PositiveFloat = Field(0.5, description="CPUs each file-read task reserves.")
    onnx_threads: PositiveInt = Field(1, description="ONNX Runtime threads per actor.")
    drift_rows: PositiveInt = Field(
        20_000, description="Uniform sample of scored rows the drift report is computed on."
    )
    separator: str = Field(",", description="CSV field separator.")
    encoding: str = Field("utf-8", description="CSV text encoding.")
