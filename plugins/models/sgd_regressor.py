"""Linear regressor fitted by stochastic gradient descent: trains over chunks (partial_fit)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from framework.registry import models
from plugins.models._sgd import SgdConfig, SgdModel


class SgdRegressorConfig(SgdConfig):
    type: Literal["sgd_regressor"] = "sgd_regressor"
    loss: Literal["squared_error", "huber", "epsilon_insensitive"] = Field(
        "squared_error", description="Loss; huber is robust to outlying targets."
    )
    penalty: Literal["l2", "l1", "elasticnet"] = Field("l2", description="Regularization.")
    learning_rate: Literal["constant", "invscaling", "adaptive"] = Field(
        "invscaling", description="Step size schedule."
    )


@models.register("sgd_regressor", config=SgdRegressorConfig)
class SgdRegressorModel(SgdModel):
    task = "regression"

    def estimator(self, seed: int) -> Any:
        from sklearn.linear_model import SGDRegressor

        return SGDRegressor(random_state=seed, **self.sgd_params())
