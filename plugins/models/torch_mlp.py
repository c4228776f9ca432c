"""Tabular MLP in torch, trained data-parallel on Ray Train, exported into the pipeline's ONNX.

``torch_mlp`` classifies, ``torch_mlp_regressor`` regresses. The estimator follows the
scikit-learn contract so it sits at the end of the usual pipeline (cleaning, encoding,
scaling); its skl2onnx converter splices the network's own ONNX graph (from
``torch.onnx.export``) into the pipeline's graph, so serving runs one ONNX Runtime session.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from framework.config.model import ModelConfig
from framework.registry import models
from framework.training.model import ModelPlugin


class TorchMlpConfig(ModelConfig):
    type: Literal["torch_mlp"] = "torch_mlp"
    hidden_sizes: list[PositiveInt] = Field(
        default_factory=lambda: [256, 256], description="Units per hidden layer."
    )
    activation: Literal["relu", "tanh", "gelu"] = Field("relu", description="Activation.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout after each hidden layer.")
    batch_norm: bool = Field(False, description="Batch norm after each hidden linear layer.")
    optimizer: Literal["adam", "adamw", "sgd"] = Field("adam", description="Optimizer.")
    learning_rate: PositiveFloat = Field(1e-3, description="Learning rate.")
    weight_decay: NonNegativeFloat = Field(0.0, description="L2 penalty (weight decay).")
    batch_size: PositiveInt = Field(64, description="Rows per minibatch (per worker).")
    epochs: PositiveInt = Field(40, description="Most passes over the training split.")
    patience: PositiveInt | None = Field(
        8, description="Stop after this many epochs without a better validation loss."
    )


class TorchMlpRegressorConfig(TorchMlpConfig):
    type: Literal["torch_mlp_regressor"] = "torch_mlp_regressor"  # type: ignore[assignment]


class _TorchPlugin(ModelPlugin):
    estimator_kind = "TorchMLPClassifier"
    #: Fitted on Ray Train workers, so the fit itself runs in the driver, not a Ray task.
    distributed = True

    def estimator(self, seed: int) -> Any:
        from plugins.models import _torch_estimator

        estimator_class = getattr(_torch_estimator, self.estimator_kind)
        return estimator_class(
            params=self.params(),
            seed=seed,
            distributed=getattr(self, "distributed_config", None),
            run_prefix=self.config.type,
        )

    def epochs(self) -> int:
        return self.config.epochs  # type: ignore[attr-defined]

    def fit_epochs(
        self, estimator: Any, X: Any, y: Any, sample_weight: Any | None
    ) -> Iterator[int]:
        estimator.fit(X, y)
        yield len(estimator.history_)


@models.register("torch_mlp", config=TorchMlpConfig)
class TorchMlpModel(_TorchPlugin):
    task = "classification"
    estimator_kind = "TorchMLPClassifier"


@models.register("torch_mlp_regressor", config=TorchMlpRegressorConfig)
class TorchMlpRegressorModel(_TorchPlugin):
    task = "regression"
    estimator_kind = "TorchMLPRegressor"
