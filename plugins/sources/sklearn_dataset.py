"""Data sets bundled with scikit-learn (nothing is downloaded)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from framework.config.data import SourceConfig
from framework.data.source import snake_case
from framework.registry import sources

Bundled = Literal["breast_cancer", "iris", "wine", "diabetes"]


if TYPE_CHECKING:
    import pandas as pd


class SklearnDatasetConfig(SourceConfig):
    type: Literal["sklearn_dataset"] = "sklearn_dataset"
    name: Bundled = Field(description="Which bundled data set to load.")
    target_column: str = Field("target", description="Name given to the target column.")
    class_names: bool = Field(
        True, description="Use class names (e.g. 'malignant') instead of class numbers."
    )


@sources.register("sklearn_dataset", config=SklearnDatasetConfig)
class SklearnDatasetSource:
    """Loads a data set that ships inside scikit-learn; column names become snake_case."""

    def __init__(self, config: SklearnDatasetConfig):
        self.config = config

    def load(self) -> pd.DataFrame:
        import pandas as pd  # imported when data loads, not when plugins load
        from sklearn import datasets

        loader = getattr(datasets, f"load_{self.config.name}")
        bunch = loader(as_frame=False)
        frame = pd.DataFrame(bunch.data, columns=[snake_case(c) for c in bunch.feature_names])
        target = pd.Series(bunch.target)
        names = getattr(bunch, "target_names", None)
        if self.config.class_names and names is not None and self.config.name != "diabetes":
            target = target.map(dict(enumerate(str(n) for n in names)))
        frame[self.config.target_column] = target
        if self.config.limit_rows is not None:
            frame = frame.head(self.config.limit_rows)
        return frame
