"""The loaded versions of one model and which of them answers a request.

Each version is an ONNX Runtime session on its registered ``model.onnx``, verified against
its manifest before it is loaded. The champion answers by default; a challenger answers its
weight of callers, chosen by a stable hash of the sticky header (one caller, one version);
a shadow is only mirrored (by the recorder, off the request path). Requests that arrive
while others are in flight are batched into one ONNX Runtime call per version.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray import serve

from framework.export.ood import OodScorer
from framework.export.predictor import OnnxPredictor, Prediction
from framework.export.signature import CATEGORICAL_INPUT, NUMERIC_INPUT, Signature
from framework.monitoring.protocol import Routing
from framework.serving.rules import Feeds
from framework.store.registry import ModelRegistry, ModelVersion

logger = logging.getLogger("ray.serve")


@dataclass
class LoadedVersion:
    """One version ready to answer: its session, signature and manifest."""

    number: int
    predictor: OnnxPredictor
    signature: Signature
    manifest: dict[str, Any]
    #: The version's out-of-distribution detector (None: registered without one).
    ood: OodScorer | None = None


def bucket(key: str) -> float:
    """A caller's fixed place in [0, 1): the same key lands on the same version everywhere."""
    return zlib.crc32(key.encode("utf-8", "replace")) / 4294967296.0


def rows_of(feeds: Feeds) -> int:
    return len(next(iter(feeds.values())))


def _warmup(signature: Signature) -> Feeds:
    feeds: Feeds = {}
    if signature.numeric:
        feeds[NUMERIC_INPUT] = np.zeros((1, len(signature.numeric)), dtype=np.float32)
    if signature.categorical:
        feeds[CATEGORICAL_INPUT] = np.full((1, len(signature.categorical)), "", dtype=object)
    return feeds


class VersionRouter:
    """Holds the served versions and routes each request to one of them."""

    def __init__(
        self,
        registry: ModelRegistry,
        model_name: str,
        alias: str,
        onnx_threads: int,
        batch_rows: int,
        batch_wait_ms: float,
        providers: list[str] | None = None,
    ):
        self.registry = registry
        self.threads = onnx_threads
        self.providers = providers
        version = registry.resolve(model_name, alias)
        self.model_name = version.name
        first = self.load(version)
        self.first = first  # the version whose schema the app validates against
        self.versions: dict[int, LoadedVersion] = {first.number: first}
        self.routing = Routing(champion=first.number)
        self.batch_rows = batch_rows
        self.active = 0  # prediction requests in this replica right now
        self.call_rows: list[int] = []  # rows of each ONNX Runtime call, drained by the recorder
        self.explainers: dict[int, Any] = {}
        self._explainer_lock = asyncio.Lock()
        self._batched.set_max_batch_size(max(batch_rows, 1))
        self._batched.set_batch_wait_timeout_s(batch_wait_ms / 1000.0)

    @property
    def champion(self) -> LoadedVersion:
        return self.versions[self.routing.champion or self.first.number]

    def load(self, version: ModelVersion) -> LoadedVersion:
        """Verify a version's files against its manifest and start its ONNX Runtime session."""
        version.verify()
        signature = Signature.from_dict(version.manifest["signature"])
        predictor = OnnxPredictor(
            version.file("model.onnx").read_bytes(), signature, self.threads, self.providers
        )
        predictor.run(_warmup(signature))
        ood = None
        if version.manifest.get("ood") and "detector.onnx" in version.manifest.get("files", {}):
            ood = OodScorer(
                version.file("detector.onnx").read_bytes(), version.manifest["ood"], self.threads
            )
            if NUMERIC_INPUT in _warmup(signature):
                ood.score(_warmup(signature)[NUMERIC_INPUT])
        return LoadedVersion(version.version, predictor, signature, version.manifest, ood)

    async def explainer(self, version: LoadedVersion, samples: int | None) -> Any:
        """The version's explainer, loaded off the event loop on first use (None: it has none).

        Built from ``explain.npz`` and ONNX files only; verified with the version's files."""
        if version.number in self.explainers:
            return self.explainers[version.number]
        async with self._explainer_lock:
            if version.number not in self.explainers:
                found = None
                if version.manifest.get("explain") and "explain.npz" in version.manifest.get(
                    "files", {}
                ):
                    from framework.explain.loader import load_explainer

                    stored = self.registry.get(self.model_name, version.number)
                    found = await asyncio.to_thread(
                        load_explainer, stored, version.predictor, None, samples, self.threads
                    )
                self.explainers[version.number] = found
        return self.explainers[version.number]

    def choose(self, sticky: str | None, fallback: str) -> LoadedVersion:
        routing = self.routing
        challenger = routing.challenger
        if challenger is not None and bucket(sticky or fallback) < routing.weight:
            return self.versions[challenger]
        return self.champion

    def get(self, number: int) -> LoadedVersion | None:
        return self.versions.get(number)

    @property
    def shadow(self) -> LoadedVersion | None:
        number = self.routing.shadow
        return self.versions.get(number) if number is not None else None

    async def follow(self, wanted: Routing) -> None:
        """Serve what the monitor says; versions not loaded yet load off the event loop."""
        if wanted.generation == self.routing.generation or wanted.champion is None:
            return
        loaded = dict(self.versions)
        for number in wanted.versions():
            if number in loaded:
                continue
            try:
                version = self.registry.get(self.model_name, number)
                candidate = await asyncio.to_thread(self.load, version)
            except Exception as exc:
                logger.error("cannot load %s v%s: %s", self.model_name, number, exc)
                return
            problem = self.incompatible(candidate)
            if problem:
                logger.error("not serving %s v%s: %s", self.model_name, number, problem)
                return
            loaded[number] = candidate
        self.versions = {n: loaded[n] for n in wanted.versions()}
        self.routing = wanted
        logger.info("routing of %s is now %s", self.model_name, wanted)

    def incompatible(self, candidate: LoadedVersion) -> str | None:
        mine, theirs = self.first.signature, candidate.signature
        if (mine.numeric, mine.categorical, mine.task, list(mine.classes)) != (
            theirs.numeric,
            theirs.categorical,
            theirs.task,
            list(theirs.classes),
        ):
            return "its inputs, task or classes differ from the version this app validates for"
        return None

    async def predict(self, feeds: Feeds, rows: int, version: LoadedVersion) -> Prediction:
        """One version's prediction; joins a batch when other requests are in flight."""
        self.active += 1
        try:
            if 0 < rows < self.batch_rows and self.active > 1:
                return await self._batched(feeds, version.number)
            self.call_rows.append(rows)
            return version.predictor.run(feeds)
        finally:
            self.active -= 1

    @serve.batch(max_batch_size=512, batch_size_fn=lambda items: sum(rows_of(f) for f, _ in items))
    async def _batched(self, items: list[tuple[Feeds, int]]) -> list[Prediction]:
        out: list[Prediction | None] = [None] * len(items)
        for number in {n for _, n in items}:  # one ONNX Runtime call per version
            positions = [i for i, (_, n) in enumerate(items) if n == number]
            served = self.versions.get(number) or self.champion
            group = [items[i][0] for i in positions]
            self.call_rows.append(sum(rows_of(f) for f in group))
            if len(group) == 1:
                out[positions[0]] = served.predictor.run(group[0])
                continue
            result = served.predictor.run(
                {k: np.concatenate([f[k] for f in group]) for k in group[0]}
            )
            start = 0
            for i, f in zip(positions, group, strict=True):
                stop = start + rows_of(f)
                scores = None if result.scores is None else result.scores[start:stop]
                out[i] = Prediction(labels=result.labels[start:stop], scores=scores)
                start = stop
        return out  # type: ignore[return-value]
