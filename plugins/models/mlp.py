"""Multi-layer perceptron classifier (scikit-learn), trained epoch by epoch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from framework.config.model import ModelConfig
from framework.registry import models
from framework.training.model import ModelPlugin


class MlpConfig(ModelConfig):
    type: Literal["mlp"] = "mlp"
    hidden_layer_sizes: list[PositiveInt] = Field(
        default_factory=lambda: [64, 32], description="Units per hidden layer."
    )
    activation: Literal["relu", "tanh", "logistic"] = Field("relu", description="Activation.")
    alpha: NonNegativeFloat = Field(1e-4, description="L2 penalty.")
    learning_rate_init: PositiveFloat = Field(1e-3, description="Adam learning rate.")
    batch_size: PositiveInt = Field(64, description="Rows per minibatch.")
    epochs: PositiveInt = Field(30, description="Passes over the training split.")


@models.register("mlp", config=MlpConfig)
class MlpModel(ModelPlugin):
    task = "classification"
    incremental = True

    def estimator(self, seed: int) -> Any:
        from sklearn.neural_network import MLPClassifier

        c: MlpConfig = self.config  # type: ignore[assignment]
        return MLPClassifier(
            hidden_layer_sizes=tuple(c.hidden_layer_sizes),
            activation=c.activation,
            alpha=c.alpha,
            learning_rate_init=c.learning_rate_init,
            batch_size=c.batch_size,
            random_state=seed,
        )

    def epochs(self) -> int:
        return self.config.epochs  # type: ignore[attr-defined]

    def fit_epochs(
        self, estimator: Any, X: Any, y: Any, sample_weight: Any | None
    ) -> Iterator[int]:
        """One ``partial_fit`` pass per epoch, so a sweep sees the learning curve."""
        classes = np.unique(y)
        params = {"sample_weight": sample_weight} if sample_weight is not None else {}
        for epoch in range(1, self.config.epochs + 1):  # type: ignore[attr-defined]
            estimator.partial_fit(X, y, classes=classes, **params)
            yield epoch
