"""Parquet files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from framework.config.data import SourceConfig
from framework.errors import FrameworkError
from framework.registry import sources

if TYPE_CHECKING:
    import pandas as pd


class ParquetConfig(SourceConfig):
    type: Literal["parquet"] = "parquet"
    path: str = Field(description="Path of the Parquet file or folder of files.")


@sources.register("parquet", config=ParquetConfig)
class ParquetSource:
    """Reads a Parquet file (or a folder of them) with pyarrow."""

    def __init__(self, config: ParquetConfig):
        self.config = config

    def load(self) -> pd.DataFrame:
        import pandas as pd  # imported when data loads, not when plugins load

        path = Path(self.config.path)
        if not path.exists():
            raise FrameworkError(f"no such file or folder: {path}", path="data.source.path")
        frame = pd.read_parquet(path)
        if self.config.limit_rows is not None:
            frame = frame.head(self.config.limit_rows)
        return frame.reset_index(drop=True)
