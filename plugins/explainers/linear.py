"""Exact attributions of linear models, in closed form from their coefficients.

For a model ``f(z) = w . z + b`` on encoded inputs ``z`` (independent features), feature
``j``'s Shapley value is ``w_j (z_j - E[z_j])`` with the expectation over the training
reference sample; encoded features are summed back onto their source column. Classifiers
are explained in their decision space (log-odds, or per-class logits for several classes).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from framework.explain.attributions import Attributions, sum_to_columns
from framework.explain.base import Context, Explainer, ExplainerConfig, ExplainerPlugin, Fitted
from framework.registry import explainers


class LinearConfig(ExplainerConfig):
    type: Literal["linear"] = "linear"


@explainers.register("linear", config=LinearConfig)
class LinearShap(ExplainerPlugin):
    exact = True

    def supports(self, estimator: Any) -> bool:
        module = type(estimator).__module__
        return module.startswith("sklearn.linear_model") and hasattr(estimator, "coef_")

    def arrays(self, fitted: Fitted) -> dict[str, np.ndarray]:
        from framework.explain.features import preprocessing

        estimator = fitted.pipeline.steps[-1][1]
        encoded = np.asarray(preprocessing(fitted.pipeline).transform(fitted.reference))
        coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64))
        intercept = np.atleast_1d(np.asarray(estimator.intercept_, dtype=np.float64))
        classes = len(getattr(estimator, "classes_", []))
        space = ("log_odds" if classes == 2 else "logit") if classes else "value"
        return {
            "coef": coef,
            "intercept": np.broadcast_to(intercept, (coef.shape[0],)).copy(),
            "mean": encoded.astype(np.float64).mean(axis=0),
            "space": np.array(space),
            "binary": np.array(classes == 2 and coef.shape[0] == 1),
        }

    def load(self, arrays: dict[str, np.ndarray], context: Context) -> Explainer:
        if context.features is None or context.source is None:
            raise ValueError("the linear explainer needs explain_features.onnx")
        coef, intercept, mean = arrays["coef"], arrays["intercept"], arrays["mean"]
        base = mean @ coef.T + intercept
        binary, space = bool(arrays["binary"]), str(arrays["space"])
        if binary:  # one log-odds output stands for both classes
            coef, base = np.concatenate([-coef, coef]), np.concatenate([-base, base])
        features, source, columns = context.features, context.source, context.columns
        outputs = context.outputs

        def explain(feeds: dict[str, np.ndarray]) -> Attributions:
            encoded = features(feeds)
            per_feature = (encoded - mean)[:, None, :] * coef[None, :, :]
            values = sum_to_columns(per_feature, source, len(columns))
            rows = len(encoded)
            b = np.broadcast_to(base, (rows, len(base))).copy()
            return Attributions("linear", space, outputs, columns, values, b, b + values.sum(-1))

        return explain
