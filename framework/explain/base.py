"""The explainer plugin contract.

An explainer plugin works in two places:

- at registration, ``arrays(fitted)`` returns the arrays it needs later (tree structure,
  coefficients, a background sample). They are written to ``explain.npz`` beside the model:
  plain arrays, read back with ``allow_pickle=False``;
- at serving (and in ``task=explain``), ``load(arrays, context)`` returns an ``Explainer``,
  a callable from ONNX input feeds to ``Attributions``. Only ONNX Runtime and those arrays
  are used: the fitted scikit-learn objects are never loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from framework.config.base import StrictModel
from framework.explain.attributions import Attributions
from framework.export.signature import Signature

Feeds = dict[str, np.ndarray]
Explainer = Callable[[Feeds], Attributions]


class ExplainerConfig(StrictModel):
    """Base class of an explainer plugin's config; subclasses fix ``type``."""

    type: str


@dataclass
class Fitted:
    """What an explainer may read at registration: the fitted pipeline and training rows."""

    pipeline: Any
    signature: Signature
    columns: list[str]
    #: Model-input rows (numeric float64, categories as text) sampled from the training split.
    reference: Any
    seed: int = 0
    #: How many weighted k-means rows summarize the reference for model-agnostic explainers.
    background_rows: int = 10


@dataclass
class Context:
    """What an explainer may use at serving: the version's ONNX sessions and its arrays."""

    signature: Signature
    columns: list[str]
    #: Model output (probabilities or values, float64 rows x outputs) of feeds.
    predict: Callable[[Feeds], np.ndarray]
    #: Encoded model inputs of feeds (``explain_features.onnx``), when registered.
    features: Callable[[Feeds], np.ndarray] | None
    #: For every encoded feature, the index of its source column (with ``features``).
    source: np.ndarray | None
    samples: int
    seed: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def outputs(self) -> list[str]:
        return list(self.signature.classes) if self.signature.classification else ["value"]


class ExplainerPlugin:
    """Base class of explainer plugins (``plugins/explainers``)."""

    #: Exact attributions (additive to 1e-5); model-agnostic ones are estimates.
    exact: ClassVar[bool] = False
    #: The space the attributions add up in, e.g. ``probability`` or ``log_odds``.
    output_space: ClassVar[str] = "probability"

    def supports(self, estimator: Any) -> bool:
        """Whether this explainer can explain ``estimator`` (the pipeline's last step)."""
        return True

    def arrays(self, fitted: Fitted) -> dict[str, np.ndarray]:
        """Arrays to write to ``explain.npz`` at registration (plain arrays only)."""
        return {}

    def load(self, arrays: dict[str, np.ndarray], context: Context) -> Explainer:
        raise NotImplementedError
