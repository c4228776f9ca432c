"""LIME: a local linear surrogate fitted around each row, through the ``lime`` package.

The surrogate is fitted on ``explain.samples`` perturbations of the row drawn from the
training reference sample's statistics, each scored by the ONNX Runtime session. Its
weights are the attributions and its intercept the base value. LIME is not additive: the
base plus the attributions approximates the output, and the answer says so.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from framework.explain.attributions import Attributions
from framework.explain.base import Context, Explainer, ExplainerConfig, ExplainerPlugin, Fitted
from framework.export.signature import CATEGORICAL_INPUT, NUMERIC_INPUT
from framework.registry import explainers

_TRAINING_ROWS = 500


class LimeConfig(ExplainerConfig):
    type: Literal["lime"] = "lime"


@explainers.register("lime", config=LimeConfig)
class Lime(ExplainerPlugin):
    def arrays(self, fitted: Fitted) -> dict[str, np.ndarray]:
        reference = fitted.reference
        if len(reference) > _TRAINING_ROWS:
            reference = reference.sample(n=_TRAINING_ROWS, random_state=fitted.seed)
        signature = fitted.signature
        numeric = reference[signature.numeric].to_numpy(dtype=np.float64)
        numeric = numeric.reshape(len(reference), -1)
        # LIME's statistics need complete rows: a missing value takes the column's median
        # (the model's own imputation still runs on every perturbation it scores).
        medians = np.zeros(numeric.shape[1])
        if numeric.size:
            medians = np.nan_to_num(np.nanmedian(numeric, axis=0))
        numeric = np.where(np.isnan(numeric), medians, numeric)
        out: dict[str, np.ndarray] = {"numeric": numeric, "medians": medians}
        codes = []
        for i, name in enumerate(signature.categorical):
            values = reference[name].astype(str).to_numpy()
            categories = np.unique(values)
            out[f"categories_{i}"] = categories.astype(str)
            codes.append(np.searchsorted(categories, values))
        out["codes"] = (
            np.stack(codes, axis=1).astype(np.float64) if codes else np.zeros((len(reference), 0))
        )
        return out

    def load(self, arrays: dict[str, np.ndarray], context: Context) -> Explainer:
        from lime.lime_tabular import LimeTabularExplainer

        signature = context.signature
        n_num, columns, outputs = len(signature.numeric), context.columns, context.outputs
        categories = [arrays[f"categories_{i}"] for i in range(len(signature.categorical))]
        training = np.concatenate([arrays["numeric"], arrays["codes"]], axis=1)
        classification = signature.classification
        explainer = LimeTabularExplainer(
            training,
            mode="classification" if classification else "regression",
            feature_names=columns,
            categorical_features=list(range(n_num, len(columns))),
            categorical_names={n_num + i: list(c) for i, c in enumerate(categories)},
            class_names=outputs if classification else None,
            discretize_continuous=True,
            random_state=context.seed,
        )
        predict = context.predict
        medians = arrays["medians"]

        def decode(matrix: np.ndarray) -> dict[str, np.ndarray]:
            feeds: dict[str, np.ndarray] = {}
            if n_num:
                feeds[NUMERIC_INPUT] = matrix[:, :n_num].astype(np.float32)
            if categories:
                codes = np.clip(np.rint(matrix[:, n_num:]).astype(int), 0, None)
                feeds[CATEGORICAL_INPUT] = (
                    np.stack(
                        [c[np.minimum(codes[:, i], len(c) - 1)] for i, c in enumerate(categories)],
                        axis=1,
                    )
                    .astype(object)
                    .astype(str)
                )
            return feeds

        def score(matrix: np.ndarray) -> np.ndarray:
            result = predict(decode(matrix))
            return result if classification else result[:, 0]

        def encode(feeds: dict[str, np.ndarray], r: int) -> np.ndarray:
            parts = []
            if n_num:
                row = feeds[NUMERIC_INPUT][r].astype(np.float64)
                parts.append(np.where(np.isnan(row), medians, row))
            for i, c in enumerate(categories):
                value = str(feeds[CATEGORICAL_INPUT][r, i])
                hit = np.flatnonzero(c == value)
                parts.append(np.array([hit[0] if len(hit) else 0], dtype=np.float64))
            return np.concatenate(parts)

        def explain(feeds: dict[str, np.ndarray]) -> Attributions:
            output = predict(feeds)
            rows = len(output)
            values = np.zeros((rows, len(outputs), len(columns)))
            base = np.zeros((rows, len(outputs)))
            labels = list(range(len(outputs)))
            for r in range(rows):
                found = explainer.explain_instance(
                    encode(feeds, r),
                    score,
                    labels=labels if classification else (0,),
                    num_features=len(columns),
                    num_samples=context.samples,
                )
                for o in range(len(outputs)):
                    key = o if classification else next(iter(found.local_exp))
                    for column, weight in found.local_exp[key]:
                        values[r, o, column] = weight
                    base[r, o] = found.intercept[key]
            notes = ["LIME is a local surrogate: base + attributions approximates the output"]
            return Attributions(
                "lime",
                "probability" if classification else "value",
                outputs,
                columns,
                values,
                base,
                output,
                additive=False,
                notes=notes,
            )

        return explain
