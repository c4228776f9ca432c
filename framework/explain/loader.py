"""Explainers of a registered version, built from its ONNX files and ``explain.npz`` only."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from framework.errors import FrameworkError
from framework.explain.attributions import Attributions
from framework.explain.base import Context, Explainer
from framework.export.predictor import OnnxPredictor
from framework.export.signature import Signature
from framework.registry import explainers
from framework.store.registry import ModelVersion

ARRAYS, FEATURES = "explain.npz", "explain_features.onnx"


def read_arrays(data: bytes) -> dict[str, dict[str, np.ndarray]]:
    """``explain.npz`` as {explainer: {name: array}} (``allow_pickle=False``)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        for key in npz.files:
            plugin, _, name = key.partition("/")
            out.setdefault(plugin, {})[name] = npz[key]
    return out


def write_arrays(arrays: dict[str, dict[str, np.ndarray]]) -> bytes:
    flat = {f"{p}/{k}": v for p, block in arrays.items() for k, v in block.items()}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **flat)  # type: ignore[arg-type]
    return buffer.getvalue()


def output_function(predictor: OnnxPredictor):
    """feeds -> the model's output as float64 rows x outputs (probabilities or values)."""

    def predict(feeds: dict[str, np.ndarray]) -> np.ndarray:
        result = predictor.run(feeds)
        if result.scores is not None:
            return np.asarray(result.scores, dtype=np.float64)
        return np.asarray(result.labels, dtype=np.float64).reshape(-1, 1)

    return predict


@dataclass
class VersionExplainer:
    """One version's explainer: what it is, and the callable."""

    method: str
    exact: bool
    explain: Explainer

    def __call__(self, feeds: dict[str, np.ndarray]) -> Attributions:
        return self.explain(feeds)


def load_explainer(
    version: ModelVersion,
    predictor: OnnxPredictor,
    method: str | None = None,
    samples: int | None = None,
    threads: int = 1,
) -> VersionExplainer:
    """The version's registered explainer (or ``method``), ready to explain feeds."""
    files = version.manifest.get("files", {})
    info = version.manifest.get("explain")
    if not info or ARRAYS not in files:
        raise FrameworkError(
            f"{version.name} v{version.version} was registered without explanation files",
            hint="train it again with this version of the framework",
        )
    features = version.file(FEATURES).read_bytes() if FEATURES in files else None
    signature = Signature.from_dict(version.manifest["signature"])
    return build_explainer(
        info,
        version.file(ARRAYS).read_bytes(),
        features,
        predictor,
        signature,
        method,
        samples,
        threads,
        f"{version.name} v{version.version}",
    )


def build_explainer(
    info: dict,
    arrays_bytes: bytes,
    features_bytes: bytes | None,
    predictor: OnnxPredictor,
    signature: Signature,
    method: str | None = None,
    samples: int | None = None,
    threads: int = 1,
    what: str = "this version",
) -> VersionExplainer:
    """An explainer from a version's manifest block and file contents."""
    chosen = method if method not in (None, "auto") else info["method"]
    arrays = read_arrays(arrays_bytes)
    if chosen not in arrays:
        raise FrameworkError(
            f"explain.method: {chosen!r} is not available for {what}; "
            f"available: {', '.join(sorted(arrays))}"
        )
    features = source = None
    if features_bytes is not None and "source_columns" in info:
        from framework.explain.features import FeatureSession

        features = FeatureSession(features_bytes, threads)
        source = np.asarray(info["source_columns"], dtype=np.int64)
    context = Context(
        signature=signature,
        columns=signature.numeric + signature.categorical,
        predict=output_function(predictor),
        features=features,
        source=source,
        samples=int(samples or info.get("samples", 1024)),
        seed=int(info.get("seed", 0)),
    )
    plugin = explainers.get(chosen).impl()
    return VersionExplainer(chosen, plugin.exact, plugin.load(arrays[chosen], context))
