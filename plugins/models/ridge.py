"""Ridge regression."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeFloat

from framework.config.model import ModelConfig
from framework.registry import models
from framework.training.model import ModelPlugin


class RidgeConfig(ModelConfig):
    type: Literal["ridge"] = "ridge"
    alpha: NonNegativeFloat = Field(1.0, description="L2 regularization strength.")


@models.register("ridge", config=RidgeConfig)
class RidgeModel(ModelPlugin):
    task = "regression"

    def estimator(self, seed: int) -> Any:
        from sklearn.linear_model import Ridge

        return Ridge(random_state=seed, **self.params())
