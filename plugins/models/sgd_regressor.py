"""Linear regressor fitted by stochastic gradient descent: trains over chunks (partial_fit)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from framework.config.model import ModelConfig
from framework.registry import models
from framework.training.model import ModelPlugin


class SgdRegressorConfig(ModelConfig):
    type: Literal["sgd_regressor"] = "sgd_regressor"
    loss: Literal["squared_error", "huber", "epsilon_insensitive"] = Field(
        "squared_error", description="Loss; huber is robust to outlying targets."
    )
    alpha: NonNegativeFloat = Field(1e-3, description="Regularization strength.")
    penalty: Literal["l2", "l1", "elasticnet"] = Field("l2", description="Regularization.")
    learning_rate: Literal["constant", "invscaling", "adaptive"] = Field(
        "invscaling", description="Step size schedule."
    )
    eta0: PositiveFloat = Field(0.01, description="Initial step.")
    epochs: PositiveInt = Field(5, description="Passes over the training rows.")


@models.register("sgd_regressor", config=SgdRegressorConfig)
class SgdRegressorModel(ModelPlugin):
    task = "regression"
    incremental = True

    def estimator(self, seed: int) -> Any:
        from sklearn.linear_model import SGDRegressor

        c: SgdRegressorConfig = self.config  # type: ignore[assignment]
        return SGDRegressor(
            loss=c.loss,
            alpha=c.alpha,
            penalty=c.penalty,
            learning_rate=c.learning_rate,
            eta0=c.eta0,
            max_iter=c.epochs,
            tol=None,
            random_state=seed,
        )

    def epochs(self) -> int:
        return self.config.epochs  # type: ignore[attr-defined]
