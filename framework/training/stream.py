"""Training over a source read in chunks (``data.source.chunk_rows``), never all at once.

1. **Scan** (one streaming pass, in a Ray task): each chunk goes through the noise simulator
   (seeded per chunk), the schema checks (their reports merged) and a seeded split draw per
   row. Exact and cheap, hence exact: row counts per split, class counts, the check report,
   a sha256 over every checked row. Bounded, hence sampled: a uniform sample of training rows
   (``data.stream.sample_rows``, bottom-k random keys) and of validation and test rows
   (``data.stream.holdout_rows``).
2. **Fit** (in a Ray task): the cleaning steps (imputation, clipping fences, scaling,
   encoding) are fitted on the training sample; the model then learns chunk by chunk
   (``partial_fit``) for its epochs, re-reading the source each epoch.

What is approximate, and said so in the manifest: the cleaning statistics, the reference
profile's quantiles and the drift reference come from the sample; metrics are computed on the
held-out sample; the split is a per-row draw, not stratified; class balancing uses weights
from the exact class counts (``oversample`` is weighted, not resampled); outlier flags in the
check report use each chunk's own fences.
"""

from __future__ import annotations

import hashlib
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from framework import registry
from framework.config import RootConfig
from framework.config.data import DataConfig
from framework.data.noise import NoiseReport, inject_noise
from framework.data.profile import StreamingProfile
from framework.data.source import source_chunks
from framework.data.validation import ValidationReport, validate_frame
from framework.errors import ConfigError
from framework.training.pipeline import build_pipeline, model_input

#: Split labels drawn per row.
TRAIN, VALIDATION, TEST = 0, 1, 2


def labels_as_text(frame: pd.DataFrame, data: DataConfig, task: str) -> pd.DataFrame:
    """Classification targets as the text labels the model and registry use."""
    if task != "classification":
        return frame
    spec = data.columns[data.target]
    labels = frame[data.target]
    if spec.dtype == "bool":
        frame[data.target] = labels.map({1.0: "true", 0.0: "false"})
    elif spec.dtype == "int":
        frame[data.target] = labels.astype(np.int64).astype(str)
    else:
        frame[data.target] = labels.astype(str)
    return frame


@dataclass
class CheckedChunk:
    index: int
    frame: pd.DataFrame  # checked rows, declared columns only
    split: np.ndarray  # TRAIN / VALIDATION / TEST per row
    report: ValidationReport
    noise: NoiseReport


def checked_chunks(
    cfg: RootConfig, task: str, chunk_rows: int | None = None
) -> Iterator[CheckedChunk]:
    """Every chunk of ``data.source``, corrupted as declared, checked and split (seeded, so
    every pass over the source sees the same rows in the same split)."""
    data = cfg.data
    for chunk in source_chunks(data.source, chunk_rows):
        raw = chunk.frame
        noise = NoiseReport(len(raw), len(raw))
        if data.noise.enabled:
            seeded = data.model_copy(
                update={
                    "noise": data.noise.model_copy(update={"seed": data.noise.seed + chunk.index})
                }
            )
            raw, noise = inject_noise(raw, seeded)
        frame, report = validate_frame(raw, data.columns, data.checks, whole=False)
        frame = labels_as_text(frame, data, task)
        rng = np.random.default_rng([data.split.seed, chunk.index])
        draw = rng.random(len(frame))
        split = np.full(len(frame), TRAIN, dtype=np.int8)
        split[draw < data.split.test_size + data.split.validation_size] = VALIDATION
        split[draw < data.split.test_size] = TEST
        yield CheckedChunk(chunk.index, frame, split, report, noise)


class Reservoir:
    """A uniform sample without replacement of at most ``size`` rows of a stream (bottom-k
    random keys): memory stays at ``size`` rows plus one chunk."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.sample: pd.DataFrame | None = None
        self.keys = np.empty(0)
        self.seen = 0

    def add(self, frame: pd.DataFrame) -> None:
        if not len(frame):
            return
        self.seen += len(frame)
        keys = self.rng.random(len(frame))
        if self.sample is None:
            joined, all_keys = frame.reset_index(drop=True), keys
        else:
            joined = pd.concat([self.sample, frame], ignore_index=True)
            all_keys = np.concatenate([self.keys, keys])
        if len(joined) > self.size:
            keep = np.argpartition(all_keys, self.size)[: self.size]
            keep.sort()
            joined, all_keys = joined.iloc[keep].reset_index(drop=True), all_keys[keep]
        self.sample, self.keys = joined, all_keys

    def frame(self, columns: list[str]) -> pd.DataFrame:
        if self.sample is None:
            return pd.DataFrame(columns=columns)
        return self.sample.reset_index(drop=True)


@dataclass
class Scan:
    """What one streaming pass over the source found."""

    report: ValidationReport
    noise: NoiseReport
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    counts: dict[str, int]
    classes: dict[str, int] = field(default_factory=dict)
    digest: str = ""
    chunks: int = 0
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    profile: dict[str, Any] | None = None


def scan(cfg: RootConfig, task: str) -> Scan:
    """The streaming pass: merged check report, split counts, samples, fingerprint."""
    from framework.data.dataset import fingerprint

    started = time.perf_counter()
    data = cfg.data
    stream = data.stream
    seed = cfg.train.seed
    report = ValidationReport(rows_in=0)
    noise = NoiseReport(0, 0)
    injected: dict[str, int] = {}
    samples = {
        TRAIN: Reservoir(stream.sample_rows, seed),
        VALIDATION: Reservoir(stream.holdout_rows, seed + 1),
        TEST: Reservoir(stream.holdout_rows, seed + 2),
    }
    counts = {"train": 0, "validation": 0, "test": 0}
    classes: dict[str, int] = {}
    digest = hashlib.sha256()
    chunks = 0
    streamed = StreamingProfile(data, task)
    for part in checked_chunks(cfg, task):
        chunks += 1
        report.merge(part.report, data.checks.max_examples)
        noise.rows_before += part.noise.rows_before
        noise.rows_after += part.noise.rows_after
        for key, value in part.noise.injected.items():
            injected[key] = injected.get(key, 0) + value
        digest.update(fingerprint(part.frame, data).encode())
        for label, name in ((TRAIN, "train"), (VALIDATION, "validation"), (TEST, "test")):
            rows = part.frame[part.split == label]
            counts[name] += len(rows)
            samples[label].add(rows)
            if label == TRAIN:
                streamed.add(rows)
            if label == TRAIN and task == "classification":
                for cls, n in rows[data.target].value_counts().items():
                    classes[str(cls)] = classes.get(str(cls), 0) + int(n)
    if chunks == 0:
        from framework.errors import DataValidationError

        raise DataValidationError("the source has no rows", path="data.source")
    noise.injected = injected
    report.raise_if_failed()
    if counts["train"] == 0:
        from framework.errors import DataValidationError

        raise DataValidationError("no training rows after the checks", path="data.checks")
    columns = list(data.columns)
    train_sample = samples[TRAIN].frame(columns)
    return Scan(
        report=report,
        noise=noise,
        train=train_sample,
        validation=samples[VALIDATION].frame(columns),
        test=samples[TEST].frame(columns),
        counts=counts,
        classes=classes,
        digest=digest.hexdigest(),
        chunks=chunks,
        seconds=time.perf_counter() - started,
        peak_rss_mb=peak_rss_mb(),
        profile=streamed.finish(train_sample),
    )


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def class_weights(classes: dict[str, int], method: str) -> dict[str, float] | None:
    """Balanced weights ``n / (k * n_c)`` from exact class counts (``balance`` declared)."""
    if method == "none" or not classes:
        return None
    total, k = sum(classes.values()), len(classes)
    return {c: total / (k * n) for c, n in classes.items()}


@dataclass
class StreamFit:
    pipeline: Any
    chunks: int
    rows: int
    epochs: int
    seconds: float
    peak_rss_mb: float


def check_incremental(cfg: RootConfig) -> Any:
    """The model plugin, refused by name when it cannot learn chunk by chunk."""
    entry = registry.models.get(cfg.model.type)
    if not getattr(entry.impl, "incremental", False):
        able = sorted(
            n
            for n in registry.models.names()
            if getattr(registry.models.get(n).impl, "incremental", False)
        )
        raise ConfigError(
            [
                f"model.type: {cfg.model.type!r} cannot train over chunks "
                f"(data.source.chunk_rows is set) because it has no partial_fit; models "
                f"that can: {', '.join(able)}"
            ]
        )
    plugin = entry.impl(cfg.model)
    return plugin


def fit_stream(
    cfg: RootConfig,
    task: str,
    train_sample: pd.DataFrame,
    classes: list[str] | None,
    weights: dict[str, float] | None,
    pipeline: Any | None = None,
) -> StreamFit:
    """Fit the cleaning on the sample (unless ``pipeline`` is a fitted one to continue),
    then the model chunk by chunk for its epochs."""
    started = time.perf_counter()
    data = cfg.data
    plugin = check_incremental(cfg)
    numeric, categorical = data.numeric_features, data.categorical_features
    if pipeline is None:
        pipeline = build_pipeline(
            data, plugin.estimator(cfg.train.seed), scale=not plugin.scale_invariant
        )
        pipeline[:-1].fit(
            model_input(train_sample, numeric, categorical), train_sample[data.target]
        )
    epochs = plugin.epochs()
    estimator = pipeline.steps[-1][1]
    known = np.array(sorted(classes)) if classes is not None else None
    rng = np.random.default_rng(cfg.train.seed)
    rows = chunks = 0
    for _ in range(epochs):
        for part in checked_chunks(cfg, task):
            train_rows = part.frame[part.split == TRAIN]
            if not len(train_rows):
                continue
            train_rows = train_rows.iloc[rng.permutation(len(train_rows))]
            X = pipeline[:-1].transform(model_input(train_rows, numeric, categorical))
            y = train_rows[data.target].to_numpy()
            if task == "regression":
                y = y.astype(np.float64)
            w = None
            if weights is not None:
                w = np.array([weights.get(str(v), 1.0) for v in y], dtype=np.float64)
            plugin.partial_fit(estimator, X, y, known, w)
            rows += len(train_rows)
            chunks += 1
    return StreamFit(pipeline, chunks, rows, epochs, time.perf_counter() - started, peak_rss_mb())
