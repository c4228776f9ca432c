"""CSV files, read as text so that the schema checks see every raw value."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from framework.config.data import SourceConfig
from framework.registry import sources

if TYPE_CHECKING:
    import pandas as pd

    from framework.data.files import Chunk


class CsvConfig(SourceConfig):
    type: Literal["csv"] = "csv"
    path: str = Field(description="A CSV file, a folder of CSV files, or a glob (data/*.csv).")
    separator: str = Field(",", description="Field separator.")
    encoding: str = Field("utf-8", description="Text encoding.")


@sources.register("csv", config=CsvConfig)
class CsvSource:
    """Reads CSV files with pyarrow's streaming reader; every value arrives as text and is
    typed by the schema check. Unreadable lines become rows that name their reason."""

    def __init__(self, config: CsvConfig):
        self.config = config

    def iter_chunks(self, chunk_rows: int) -> Iterator[Chunk]:
        from framework.data.files import CSV_SUFFIXES, iter_chunks, resolve_paths

        files = resolve_paths(self.config.path, "data.source.path", CSV_SUFFIXES)
        return iter_chunks(
            files,
            chunk_rows,
            separator=self.config.separator,
            encoding=self.config.encoding,
            limit_rows=self.config.limit_rows,
        )

    def load(self) -> pd.DataFrame:
        import pandas as pd  # imported when data loads, not when plugins load

        frames = [c.frame for c in self.iter_chunks(1 << 20)]
        return pd.concat(frames, ignore_index=True)
