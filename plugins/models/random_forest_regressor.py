"""Random forest regressor."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt

from framework.config.model import ModelConfig
from framework.registry import models
from framework.training.model import ModelPlugin


class RandomForestRegressorConfig(ModelConfig):
    type: Literal["random_forest_regressor"] = "random_forest_regressor"
    n_estimators: PositiveInt = Field(100, description="Number of trees.")
    max_depth: PositiveInt | None = Field(None, description="Maximum tree depth (null: unlimited).")
    min_samples_leaf: PositiveInt = Field(1, description="Minimum rows per leaf.")
    n_jobs: PositiveInt = Field(1, description="Threads used to fit the trees.")


@models.register("random_forest_regressor", config=RandomForestRegressorConfig)
class RandomForestRegressorModel(ModelPlugin):
    task = "regression"
    scale_invariant = True

    def estimator(self, seed: int) -> Any:
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(random_state=seed, **self.params())
