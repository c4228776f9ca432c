"""Gradient boosting classifier (scikit-learn's GradientBoostingClassifier, ONNX-exportable)."""

from __future__ import annotations

from collections.abc import Iterator
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
    stages_per_epoch: PositiveInt = Field(
        10, description="Boosting stages added per epoch (one progress report in a sweep)."
    )


@models.register("gradient_boosting", config=GradientBoostingConfig)
class GradientBoostingModel(ModelPlugin):
    task = "classification"
    scale_invariant = True

    def estimator(self, seed: int) -> Any:
        from sklearn.ensemble import GradientBoostingClassifier

        params = self.params()
        params.pop("stages_per_epoch")
        return GradientBoostingClassifier(random_state=seed, warm_start=True, **params)

    def epochs(self) -> int:
        config: GradientBoostingConfig = self.config  # type: ignore[assignment]
        return -(-config.n_estimators // config.stages_per_epoch)

    def fit_once(self, estimator: Any, X: Any, y: Any, sample_weight: Any | None) -> None:
        """All stages in one call: the same ensemble without a refit per epoch."""
        estimator.set_params(n_estimators=self.config.n_estimators)  # type: ignore[attr-defined]
        estimator.fit(X, y, sample_weight=sample_weight)

    def fit_epochs(
        self, estimator: Any, X: Any, y: Any, sample_weight: Any | None
    ) -> Iterator[int]:
        """Grow the ensemble ``stages_per_epoch`` stages at a time (warm start)."""
        total = self.config.n_estimators  # type: ignore[attr-defined]
        step = self.config.stages_per_epoch  # type: ignore[attr-defined]
        for epoch, stages in enumerate(range(step, total + step, step), start=1):
            estimator.set_params(n_estimators=min(stages, total))
            estimator.fit(X, y, sample_weight=sample_weight)
            yield epoch
