"""CSV files, read as text so that the schema checks see every raw value."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from framework.config.data import SourceConfig
from framework.errors import FrameworkError
from framework.registry import sources

if TYPE_CHECKING:
    import pandas as pd


class CsvConfig(SourceConfig):
    type: Literal["csv"] = "csv"
    path: str = Field(description="Path of the CSV file.")
    separator: str = Field(",", description="Field separator.")
    encoding: str = Field("utf-8", description="Text encoding.")


@sources.register("csv", config=CsvConfig)
class CsvSource:
    """Reads a CSV file; every value arrives as text and is typed by the schema check."""

    def __init__(self, config: CsvConfig):
        self.config = config

    def load(self) -> pd.DataFrame:
        import pandas as pd  # imported when data loads, not when plugins load

        path = Path(self.config.path)
        if not path.is_file():
            raise FrameworkError(f"no such file: {path}", path="data.source.path")
        return pd.read_csv(
            path,
            sep=self.config.separator,
            encoding=self.config.encoding,
            dtype=str,
            keep_default_na=False,
            nrows=self.config.limit_rows,
        )
