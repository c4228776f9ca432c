"""Logistic regression classifier."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveFloat, PositiveInt

from framework.config.model import ModelConfig
from framework.registry import models
from framework.training.model import ModelPlugin


class LogisticRegressionConfig(ModelConfig):
    type: Literal["logistic_regression"] = "logistic_regression"
    C: PositiveFloat = Field(1.0, description="Inverse regularization strength.")
    max_iter: PositiveInt = Field(1000, description="Maximum solver iterations.")
    solver: Literal["lbfgs", "liblinear", "newton-cg", "saga"] = Field(
        "lbfgs", description="Solver."
    )


@models.register("logistic_regression", config=LogisticRegressionConfig)
class LogisticRegressionModel(ModelPlugin):
    task = "classification"

    def estimator(self, seed: int) -> Any:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(random_state=seed, **self.params())
