"""Random forest classifier."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt

from framework.config.model import ModelConfig
from framework.registry import models
from framework.training.model import ModelPlugin


class RandomForestConfig(ModelConfig):
    type: Literal["random_forest"] = "random_forest"
    n_estimators: PositiveInt = Field(100, description="Number of trees.")
    max_depth: PositiveInt | None = Field(None, description="Maximum tree depth (null: unlimited).")
    min_samples_leaf: PositiveInt = Field(1, description="Minimum rows per leaf.")
    max_features: Literal["sqrt", "log2"] | float = Field("sqrt", description="Features per split.")
    n_jobs: PositiveInt = Field(1, description="Threads used to fit the trees.")


@models.register("random_forest", config=RandomForestConfig)
class RandomForestModel(ModelPlugin):
    task = "classification"
    scale_invariant = True

    def estimator(self, seed: int) -> Any:
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(random_state=seed, **self.params())
