"""The source plugin contract."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from framework.config.data import SourceConfig
from framework.data.files import FILE, ROW, Chunk, constant

if TYPE_CHECKING:
    import pandas as pd


class Source(Protocol):
    """Loads the raw rows of a data set. ``__init__(config)`` only stores the config."""

    config: SourceConfig

    def load(self) -> pd.DataFrame:
        """Return the raw rows; values may still be strings, checks come later."""
        ...

    def iter_chunks(self, chunk_rows: int) -> Iterator[Chunk]:
        """The raw rows in chunks of at most ``chunk_rows`` (file sources stream them)."""
        ...


def frame_chunks(frame: pd.DataFrame, chunk_rows: int, origin: str) -> Iterator[Chunk]:
    """Chunks of a frame already in memory (sources that generate their rows)."""
    import numpy as np

    for index, start in enumerate(range(0, len(frame), chunk_rows)):
        part = frame.iloc[start : start + chunk_rows].reset_index(drop=True)
        part[FILE] = constant(origin, len(part))
        part[ROW] = np.arange(start + 1, start + 1 + len(part), dtype=np.int64)
        yield Chunk(part, origin, index)


def source_of(config: SourceConfig) -> Source:
    from framework import registry

    return registry.sources.get(config.type).impl(config)


#: Rows per chunk when a source is streamed without ``chunk_rows`` (``task=update``).
DEFAULT_CHUNK_ROWS = 100_000


def source_chunks(config: SourceConfig, chunk_rows: int | None = None) -> Iterator[Chunk]:
    """The chunks of a configured source (``chunk_rows`` defaults to ``config.chunk_rows``)."""
    rows = chunk_rows or config.chunk_rows or DEFAULT_CHUNK_ROWS
    source = source_of(config)
    reader = getattr(source, "iter_chunks", None)
    if reader is not None:
        yield from reader(rows)
    else:  # a third-party source with only load()
        yield from frame_chunks(source.load(), rows, config.type)


def snake_case(name: str) -> str:
    """Column name as an identifier: ``'mean radius'`` -> ``'mean_radius'``."""
    name = re.sub(r"[^0-9a-zA-Z]+", "_", name.strip()).strip("_").lower()
    return name or "column"
