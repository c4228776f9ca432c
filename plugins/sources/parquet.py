"""Parquet files."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from framework.config.data import SourceConfig
from framework.registry import sources

if TYPE_CHECKING:
    import pandas as pd

    from framework.data.files import Chunk


class ParquetConfig(SourceConfig):
    type: Literal["parquet"] = "parquet"
    path: str = Field(description="A Parquet file, a folder of them, or a glob (data/*.parquet).")


@sources.register("parquet", config=ParquetConfig)
class ParquetSource:
    """Reads Parquet files with pyarrow, row group by row group when chunked."""

    def __init__(self, config: ParquetConfig):
        self.config = config

    def iter_chunks(self, chunk_rows: int) -> Iterator[Chunk]:
        from framework.data.files import PARQUET_SUFFIXES, iter_chunks, resolve_paths

        files = resolve_paths(self.config.path, "data.source.path", PARQUET_SUFFIXES)
        return iter_chunks(files, chunk_rows, limit_rows=self.config.limit_rows)

    def load(self) -> pd.DataFrame:
        import pandas as pd  # imported when data loads, not when plugins load

        frames = [c.frame for c in self.iter_chunks(1 << 20)]
        return pd.concat(frames, ignore_index=True)
