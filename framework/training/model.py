"""The model plugin contract."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from framework.config.model import ModelConfig

TaskKind = Literal["classification", "regression"]


class ModelPlugin:
    """Builds an unfitted scikit-learn compatible estimator from its config.

    Subclasses set ``task`` and implement ``estimator``; ``__init__`` only stores the config.
    The estimator must be convertible to ONNX by skl2onnx (or register its own converter).
    """

    task: ClassVar[TaskKind]
    #: Tree models split on thresholds and gain nothing from scaling; skipping it also keeps
    #: float32 (ONNX) and float64 (scikit-learn) arithmetic from flipping a split.
    scale_invariant: ClassVar[bool] = False
    #: The estimator distributes its own fit (e.g. on Ray Train): the framework calls it from
    #: the driver rather than inside a Ray task, and hands it ``distributed_config``.
    distributed: ClassVar[bool] = False
    #: The estimator learns from one chunk of rows at a time (``partial_fit``): it can train
    #: over a source read in chunks (``data.source.chunk_rows``) and continue a registered
    #: version on new rows (``task=update``).
    incremental: ClassVar[bool] = False

    def __init__(self, config: ModelConfig):
        self.config = config

    def params(self) -> dict[str, Any]:
        """The config's hyperparameters, without ``type``."""
        return self.config.model_dump(exclude={"type"})

    def estimator(self, seed: int) -> Any:
        raise NotImplementedError

    def epochs(self) -> int:
        """How many epochs ``fit_epochs`` runs (1 for models fitted in one go)."""
        return 1

    def fit_epochs(
        self, estimator: Any, X: Any, y: Any, sample_weight: Any | None
    ) -> Iterator[int]:
        """Fit ``estimator`` on preprocessed rows, yielding the epoch number after each epoch.

        Iterative models override this so that sweeps can report per epoch (and ASHA can
        stop a lagging trial); others fit once and yield 1.
        """
        params = {"sample_weight": sample_weight} if sample_weight is not None else {}
        estimator.fit(X, y, **params)
        yield 1

    def fit_once(self, estimator: Any, X: Any, y: Any, sample_weight: Any | None) -> None:
        """Fit when nobody needs per-epoch reports (a training run, a FIFO sweep).

        Runs ``fit_epochs`` to its end; a model whose epochs cost more than one fit (a
        warm-started ensemble refit stage by stage) overrides it to fit in one call.
        """
        for _ in self.fit_epochs(estimator, X, y, sample_weight):
            pass

    def partial_fit(
        self, estimator: Any, X: Any, y: Any, classes: Any | None, sample_weight: Any | None
    ) -> None:
        """Learn from one chunk of preprocessed rows (models with ``incremental = True``)."""
        params: dict[str, Any] = {}
        if sample_weight is not None:
            params["sample_weight"] = sample_weight
        if classes is not None:
            params["classes"] = classes
        estimator.partial_fit(X, y, **params)
