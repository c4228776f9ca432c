"""KernelSHAP over the ONNX Runtime session: model-agnostic, for any model a plugin adds.

A column is "absent" when it takes a background row's value instead of the explained row's.
The background is a weighted k-means summary of the training reference sample (real rows
nearest each centre, so categories stay valid). Coalitions of columns are enumerated by
size, smallest and largest first, while the budget (``explain.samples``) allows, and the rest
are sampled from the Shapley kernel; the attributions solve the kernel-weighted least squares
with the constraint that they add up to the model output exactly.
"""

from __future__ import annotations

from math import comb
from typing import Any, Literal

import numpy as np

from framework.explain.attributions import Attributions
from framework.explain.base import Context, Explainer, ExplainerConfig, ExplainerPlugin, Fitted
from framework.export.signature import CATEGORICAL_INPUT, NUMERIC_INPUT
from framework.registry import explainers


class KernelConfig(ExplainerConfig):
    type: Literal["kernel"] = "kernel"


def kmeans_background(fitted: Fitted, rows: int) -> dict[str, np.ndarray]:
    """``rows`` reference rows nearest the k-means centres of the encoded, standardized
    reference sample, weighted by their cluster's share."""
    from sklearn.cluster import KMeans

    from framework.explain.features import preprocessing

    reference = fitted.reference.reset_index(drop=True)
    encoded = np.asarray(preprocessing(fitted.pipeline).transform(reference), dtype=np.float64)
    spread = encoded.std(axis=0)
    scaled = (encoded - encoded.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    k = min(rows, len(reference))
    km = KMeans(n_clusters=k, n_init=4, random_state=fitted.seed).fit(scaled)
    counts = np.bincount(km.labels_, minlength=k).astype(np.float64)
    nearest = [
        int(np.argmin(((scaled - centre) ** 2).sum(axis=1))) for centre in km.cluster_centers_
    ]
    chosen = reference.iloc[nearest]
    signature = fitted.signature
    return {
        "numeric": chosen[signature.numeric].to_numpy(dtype=np.float32).reshape(k, -1),
        "categorical": chosen[signature.categorical].to_numpy(dtype=str).reshape(k, -1),
        "weights": counts / counts.sum(),
    }


def coalitions(
    columns: int, budget: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Coalition masks (present columns) and their Shapley kernel weights, within ``budget``."""
    m = columns
    if m < 2:
        return np.ones((0, m), dtype=bool), np.zeros(0)
    if 2**m - 2 <= budget:  # every coalition: exact Shapley values for this background
        masks = ((np.arange(1, 2**m - 1)[:, None] >> np.arange(m)) & 1).astype(bool)
        sizes = masks.sum(1)
        weights = (m - 1) / (np.array([comb(m, s) for s in sizes]) * sizes * (m - sizes))
        return masks, weights / weights.sum()
    mass = np.array([(m - 1) / (s * (m - s)) for s in range(1, m)])
    mass /= mass.sum()  # kernel weight of each coalition size 1..m-1
    masks_: list[np.ndarray] = []
    weights_: list[np.ndarray] = []
    left, done = budget, set()
    for s in range(1, m // 2 + 1):  # sizes s and m-s together while they fit whole
        pair = {s, m - s}
        need = sum(comb(m, t) for t in pair)
        if need > left:
            break
        for t in pair:
            from itertools import combinations

            block = np.zeros((comb(m, t), m), dtype=bool)
            for i, idx in enumerate(combinations(range(m), t)):
                block[i, list(idx)] = True
            masks_.append(block)
            weights_.append(np.full(comb(m, t), mass[t - 1] / comb(m, t)))
            done.add(t)
        left -= need
    rest = [t for t in range(1, m) if t not in done]
    if rest and left >= 2:
        p = mass[[t - 1 for t in rest]]
        remaining = p.sum()
        draws = left // 2
        sizes = rng.choice(rest, size=draws, p=p / remaining)
        block = np.zeros((draws * 2, m), dtype=bool)
        for i, s in enumerate(sizes):
            block[2 * i, rng.choice(m, size=s, replace=False)] = True
            block[2 * i + 1] = ~block[2 * i]  # its complement: halves the variance
        masks_.append(block)
        weights_.append(np.full(draws * 2, remaining / (draws * 2)))
    return np.concatenate(masks_), np.concatenate(weights_)


def solve(
    masks: np.ndarray, weights: np.ndarray, values: np.ndarray, base: np.ndarray, output: np.ndarray
) -> np.ndarray:
    """Kernel-weighted least squares with ``sum(phi) == output - base`` (per output)."""
    total = output - base  # (K,)
    m = masks.shape[1]
    z = masks.astype(np.float64)
    target = values - base[None, :] - z[:, -1:] * total[None, :]
    design = z[:, :-1] - z[:, -1:]
    sw = np.sqrt(weights)[:, None]
    head, *_ = np.linalg.lstsq(design * sw, target * sw, rcond=None)  # (m-1, K)
    last = total - head.sum(axis=0)
    return np.concatenate([head, last[None, :]], axis=0).T.reshape(-1, m)


@explainers.register("kernel", config=KernelConfig)
class KernelShap(ExplainerPlugin):
    def arrays(self, fitted: Fitted) -> dict[str, np.ndarray]:
        return kmeans_background(fitted, fitted.background_rows)

    def load(self, arrays: dict[str, np.ndarray], context: Context) -> Explainer:
        signature = context.signature
        n_num = len(signature.numeric)
        bg_num = arrays["numeric"].astype(np.float32)
        bg_cat = arrays["categorical"].astype(object)
        weights = arrays["weights"]
        predict, columns, outputs = context.predict, context.columns, context.outputs
        background_feeds = _feeds(bg_num, bg_cat, n_num, len(columns))
        base = weights @ predict(background_feeds)  # (K,)
        masks, kernel = coalitions(
            len(columns), context.samples, np.random.default_rng(context.seed)
        )
        space = "probability" if signature.classification else "value"
        b = len(weights)

        def explain(feeds: dict[str, np.ndarray]) -> Attributions:
            output = predict(feeds)  # (R, K)
            rows = len(output)
            values = np.zeros((rows, len(outputs), len(columns)))
            for r in range(rows):
                if not len(masks):
                    values[r, :, 0] = output[r] - base
                    continue
                x_num = feeds[NUMERIC_INPUT][r] if n_num else np.zeros(0, np.float32)
                x_cat = feeds[CATEGORICAL_INPUT][r] if n_num < len(columns) else None
                num = np.where(masks[:, None, :n_num], x_num[None, None, :], bg_num[None, :, :])
                cat = None
                if x_cat is not None:
                    cat = np.where(masks[:, None, n_num:], x_cat[None, None, :], bg_cat[None, :, :])
                masked = _feeds(
                    num.reshape(-1, n_num),
                    None if cat is None else cat.reshape(len(masks) * b, -1),
                    n_num,
                    len(columns),
                )
                v = predict(masked).reshape(len(masks), b, -1)
                v = np.einsum("sbk,b->sk", v, weights)
                values[r] = solve(masks, kernel, v, base, output[r])
            bases = np.broadcast_to(base, (rows, len(base))).copy()
            return Attributions("kernel", space, outputs, columns, values, bases, output)

        return explain


def _feeds(num: np.ndarray, cat: Any, n_num: int, columns: int) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {}
    if n_num:
        feeds[NUMERIC_INPUT] = np.ascontiguousarray(num, dtype=np.float32)
    if columns > n_num:
        feeds[CATEGORICAL_INPUT] = np.asarray(cat, dtype=object).astype(str)
    return feeds
