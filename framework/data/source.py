"""The source plugin contract."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Protocol

from framework.config.data import SourceConfig

if TYPE_CHECKING:
    import pandas as pd


class Source(Protocol):
    """Loads the raw rows of a data set. ``__init__(config)`` only stores the config."""

    config: SourceConfig

    def load(self) -> pd.DataFrame:
        """Return the raw rows; values may still be strings, checks come later."""
        ...


def snake_case(name: str) -> str:
    """Column name as an identifier: ``'mean radius'`` -> ``'mean_radius'``."""
    name = re.sub(r"[^0-9a-zA-Z]+", "_", name.strip()).strip("_").lower()
    return name or "column"
