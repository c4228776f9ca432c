"""What the two stochastic gradient descent plugins share."""

from __future__ import annotations

from typing import Any

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from framework.config.model import ModelConfig
from framework.training.model import ModelPlugin


class SgdConfig(ModelConfig):
    """Hyperparameters of both SGD plugins."""

    alpha: NonNegativeFloat = Field(1e-3, description="Regularization strength.")
    penalty: str = Field("l2", description="Regularization: l2, l1 or elasticnet.")
    eta0: PositiveFloat = Field(0.01, description="Initial step (constant/invscaling/adaptive).")
    epochs: PositiveInt = Field(5, description="Passes over the training rows.")


class SgdModel(ModelPlugin):
    """Learns chunk by chunk (``partial_fit``); one epoch is one pass over the rows."""

    incremental = True

    def sgd_params(self) -> dict[str, Any]:
        """The estimator's arguments: the config without ``type`` and ``epochs``."""
        params = self.config.model_dump(exclude={"type", "epochs"})
        return {**params, "max_iter": self.epochs(), "tol": None}

    def epochs(self) -> int:
        return self.config.epochs  # type: ignore[attr-defined]
