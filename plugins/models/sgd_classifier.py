"""Linear classifier fitted by stochastic gradient descent: trains over chunks (partial_fit)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from framework.registry import models
from plugins.models._sgd import SgdConfig, SgdModel


class SgdClassifierConfig(SgdConfig):
    type: Literal["sgd_classifier"] = "sgd_classifier"
    penalty: Literal["l2", "l1", "elasticnet"] = Field("l2", description="Regularization.")
    l1_ratio: float = Field(0.15, ge=0, le=1, description="Elastic net mixing.")
    learning_rate: Literal["optimal", "constant", "invscaling", "adaptive"] = Field(
        "optimal", description="Step size schedule."
    )


@models.register("sgd_classifier", config=SgdClassifierConfig)
class SgdClassifierModel(SgdModel):
    """Logistic loss, so it has probabilities (and log-odds the linear explainer reads)."""

    task = "classification"

    def estimator(self, seed: int) -> Any:
        from sklearn.linear_model import SGDClassifier

        return SGDClassifier(loss="log_loss", random_state=seed, **self.sgd_params())
