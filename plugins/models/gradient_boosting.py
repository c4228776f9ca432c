"""Gradient boosting classifier (scikit-learn's GradientBoostingClassifier, ONNX-exportable)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveFloat, PositiveInt

from framework.config.model import ModelConfig
from framework.registry import models
from framework.training.model import ModelPlugin


class GradientBoostingConfig(ModelConfig):
    type: Literal["gradient_boosting"] = "gradient_boosting"
    n_estimators: PositiveInt = Field(100, description="Number of boosting stages.")
    learning_rate: PositiveFloat = Field(0.1, description="Shrinkage of each stage.")
    max_depth: PositiveInt = Field(3, description="Depth of each tree.")
    subsample: float = Field(1.0, gt=0, le=1, description="Share of rows per stage.")


@models.register("gradient_boosting", config=GradientBoostingConfig)
class GradientBoostingModel(ModelPlugin):
    task = "classification"
    scale_invariant = True

    def estimator(self, seed: int) -> Any:
        from sklearn.ensemble import GradientBoostingClassifier

        return GradientBoostingClassifier(random_state=seed, **self.params())
