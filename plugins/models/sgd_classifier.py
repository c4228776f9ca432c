"""Linear classifier fitted by stochastic gradient descent: trains over chunks (partial_fit)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from framework.config.model import ModelConfig
from framework.registry import models
from framework.training.model import ModelPlugin


class SgdClassifierConfig(ModelConfig):
    type: Literal["sgd_classifier"] = "sgd_classifier"
    alpha: NonNegativeFloat = Field(1e-3, description="Regularization strength.")
    penalty: Literal["l2", "l1", "elasticnet"] = Field("l2", description="Regularization.")
    l1_ratio: float = Field(
        0.15, ge=0, le=1, description="Elastic net mixing (penalty=elasticnet)."
    )
    learning_rate: Literal["optimal", "constant", "invscaling", "adaptive"] = Field(
        "optimal", description="Step size schedule."
    )
    eta0: PositiveFloat = Field(0.01, description="Initial step (constant/invscaling/adaptive).")
    epochs: PositiveInt = Field(5, description="Passes over the training rows.")


@models.register("sgd_classifier", config=SgdClassifierConfig)
class SgdClassifierModel(ModelPlugin):
    """Logistic loss, so it has probabilities (and log-odds the linear explainer reads)."""

    task = "classification"
    incremental = True

    def estimator(self, seed: int) -> Any:
        from sklearn.linear_model import SGDClassifier

        c: SgdClassifierConfig = self.config  # type: ignore[assignment]
        return SGDClassifier(
            loss="log_loss",
            alpha=c.alpha,
            penalty=c.penalty,
            l1_ratio=c.l1_ratio,
            learning_rate=c.learning_rate,
            eta0=c.eta0,
            max_iter=c.epochs,
            tol=None,
            random_state=seed,
        )

    def epochs(self) -> int:
        return self.config.epochs  # type: ignore[attr-defined]
