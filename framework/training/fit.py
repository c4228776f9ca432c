"""Fitting: prepare the data once, then balance, build and fit the pipeline.

Kept apart from the rest of the train graph (export, registry) so that a sweep's trial
workers import only what a fit needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from framework import registry
from framework.config import RootConfig
from framework.data.dataset import Dataset, Splits, oversample, split
from framework.data.guards import SUSPECT, guard_after_split, guard_before_split
from framework.data.noise import inject_noise
from framework.data.validation import validate_frame
from framework.errors import DataValidationError, FrameworkError
from framework.progress import Stages
from framework.training.model import ModelPlugin
from framework.training.pipeline import build_pipeline, model_input
from framework.training.stream import labels_as_text

logger = logging.getLogger(__name__)


def fit_pipeline(
    plugin: ModelPlugin,
    pipeline: Pipeline,
    X: pd.DataFrame,
    y: pd.Series,
    weights: np.ndarray | None,
    on_epoch: Callable[[int, Pipeline], None] | None = None,
    validation: tuple[pd.DataFrame, pd.Series] | None = None,
    per_epoch: bool = True,
) -> Pipeline:
    """Fit the preprocessing, then the model epoch by epoch; call ``on_epoch`` after each.

    Without ``on_epoch``, or with ``per_epoch=False`` (only the last epoch is reported), the
    model fits in one go (``plugin.fit_once``) and ``on_epoch`` is called once at the end.
    ``validation`` rows, run through the fitted preprocessing, are handed to estimators that
    stop early on them (as ``validation_data``).
    """
    Xt = pipeline[:-1].fit_transform(X, y)
    if validation is not None and len(validation[0]):
        pipeline.steps[-1][1].validation_data = (
            pipeline[:-1].transform(validation[0]),
            validation[1],
        )
    if on_epoch is None or not per_epoch:
        plugin.fit_once(pipeline.steps[-1][1], Xt, y, weights)
        if on_epoch is not None:
            on_epoch(plugin.epochs(), pipeline)
        return pipeline
    for epoch in plugin.fit_epochs(pipeline.steps[-1][1], Xt, y, weights):
        on_epoch(epoch, pipeline)
    return pipeline


@dataclass
class PreparedData:
    """Checked, split data: prepared once and shared (e.g. by every trial of a sweep)."""

    dataset: Dataset
    splits: Splits
    task: str


@dataclass
class FitInputs:
    """Everything a fit needs: the plugin, the unfitted pipeline and the training rows."""

    plugin: ModelPlugin
    pipeline: Pipeline
    X: pd.DataFrame
    y: pd.Series
    weights: np.ndarray | None
    validation: tuple[pd.DataFrame, pd.Series] | None = None


def fit_inputs(cfg: RootConfig, prepared: PreparedData, stages: Stages | None = None) -> FitInputs:
    """Balance the training split as declared and build the unfitted pipeline."""
    data = cfg.data
    train_frame = prepared.splits.train
    weights = None
    if prepared.task == "classification" and data.balance.method == "oversample":
        with stages.stage("oversample minority classes") if stages else nullcontext():
            train_frame = oversample(train_frame, data.target, data.balance.seed)
    elif prepared.task == "classification" and data.balance.method == "class_weight":
        from sklearn.utils.class_weight import compute_sample_weight

        weights = compute_sample_weight("balanced", train_frame[data.target])
    plugin = registry.models.get(cfg.model.type).impl(cfg.model)
    if plugin.distributed:
        plugin.distributed_config = cfg.train.distributed  # type: ignore[attr-defined]
    pipeline = build_pipeline(
        data, plugin.estimator(cfg.train.seed), scale=not plugin.scale_invariant
    )
    X = model_input(train_frame, data.numeric_features, data.categorical_features)
    validation = None
    if plugin.distributed and len(prepared.splits.validation):
        frame = prepared.splits.validation
        validation = (
            model_input(frame, data.numeric_features, data.categorical_features),
            frame[data.target],
        )
    return FitInputs(plugin, pipeline, X, train_frame[data.target], weights, validation)


def prepare(cfg: RootConfig, stages: Stages, output_dir: Path) -> PreparedData:
    """Load, corrupt (if declared), check and split the data; return dataset, splits, task."""
    data = cfg.data
    plugin = registry.models.get(cfg.model.type).impl
    task = plugin.task
    source = registry.sources.get(data.source.type).impl(data.source)
    with stages.stage(f"load {data.source.type} source"):
        raw = source.load()
    with stages.stage("inject production noise", skip=not data.noise.enabled):
        raw, noise = inject_noise(raw, data)
    with stages.stage("check data against the schema"):
        try:
            frame, report = validate_frame(raw, data.columns, data.checks)
        except DataValidationError as exc:
            partial = getattr(exc, "report", None)
            if partial is not None:
                partial.save(output_dir / "validation_report.json")
            raise
        report.save(output_dir / "validation_report.json")
    frame = labels_as_text(frame, data, task)
    with stages.stage("guard against duplicates, leakage and label errors"):
        try:
            frame, _ = guard_before_split(frame, data, task, previous_labels(cfg), report.guards)
        except DataValidationError:
            report.save(output_dir / "validation_report.json")
            raise
        for name in ("duplicates", "near_duplicates"):
            dropped = report.guards.get(name, {}).get("dropped", 0)
            if dropped:
                report.dropped_rows[name] = dropped
                report.rows_out -= dropped
    dataset = Dataset(frame.drop(columns=SUSPECT), data, report, noise)
    with stages.stage("split train/validation/test"):
        parts = split(Dataset(frame, data, report, noise), task == "classification")
        try:
            train, held = guard_after_split(
                parts.train,
                {"validation": parts.validation, "test": parts.test},
                data,
                report.guards,
            )
        finally:
            report.save(output_dir / "validation_report.json")
        parts = Splits(train, held["validation"], held["test"])
    return PreparedData(dataset, parts, task)


def previous_labels(cfg: RootConfig) -> tuple[int, dict[str, Any]] | None:
    """The label distribution of the champion (else the latest version), if it verifies."""
    from framework.store.registry import open_registry

    if cfg.data.guards.label_shift == "off":
        return None
    store = open_registry(cfg.store.path, cfg.security.audit_key_file)
    name = cfg.model_name
    try:
        number = store.aliases(name).get("champion")
        versions = store.versions(name) if number is None else [store.get(name, number)]
        if not versions:
            return None
        version = versions[-1]
        version.verify()
    except FrameworkError as exc:
        logger.warning("label shift not checked: the previous version cannot be read: %s", exc)
        return None
    labels = version.manifest.get("data", {}).get("labels")
    return (version.version, labels) if labels else None
