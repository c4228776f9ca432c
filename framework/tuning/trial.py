"""One trial of a sweep, run by Ray Tune in a worker.

Imports only what a fit needs (not export or the registry), since every trial worker
process pays for its imports before the trial starts.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from framework import config as config_module
from framework.config import RootConfig
from framework.progress import Stages
from framework.training.evaluate import evaluate
from framework.training.fit import PreparedData, fit_inputs, fit_pipeline, prepare
from framework.training.pipeline import model_input
from framework.tuning.space import SearchSpace


@dataclass
class Base:
    """The composed config of one combination of swept config groups."""

    container: dict[str, Any]
    choices: dict[str, str]


def set_path(container: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dicts, creating levels as needed."""
    *parents, last = dotted.lstrip("+").split(".")
    node = container
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def data_key(cfg: RootConfig) -> str:
    return json.dumps(cfg.data.model_dump(mode="json"), sort_keys=True)


def run_trial(
    params: dict[str, Any],
    *,
    bases: dict[tuple[Any, ...], Base],
    space: SearchSpace,
    prepared: dict[str, PreparedData],
    every_epoch: bool,
) -> None:
    """One trial: compose its config, fit, report validation metrics.

    With ``every_epoch`` (an early-stopping scheduler) it reports after each epoch; else only
    at the end, since each report is a round trip to the Tune driver.
    """
    from ray import tune

    started_at = time.time()
    combo = tuple(params[p.key] for p in space.groups)
    container = copy.deepcopy(bases[combo].container)
    for p in space.values:
        set_path(container, p.key, params[p.key])
    cfg = config_module.validate(container)
    data = prepared.get(data_key(cfg))
    prepared_here = data is None
    if data is None:  # the sweep changes the data itself: this trial prepares its own
        data = prepare(cfg, Stages(Console(quiet=True)), Path(tune.get_context().get_trial_dir()))
    inputs = fit_inputs(cfg, data)
    columns = (cfg.data.numeric_features, cfg.data.categorical_features)
    X_val = model_input(data.splits.validation, *columns)
    y_val = data.splits.validation[cfg.data.target]
    planned = inputs.plugin.epochs()

    def on_epoch(epoch: int, pipeline: Any) -> None:
        if not every_epoch and epoch < planned:
            return
        metrics = evaluate(pipeline, X_val, y_val, data.task, "validation").metrics
        tune.report(
            {
                **{f"validation.{k}": v for k, v in metrics.items()},
                "epoch": epoch,
                "epochs_planned": planned,
                "data_prepared_in_trial": int(prepared_here),
                "started_at": started_at,
                "reported_at": time.time(),
            }
        )

    fit_pipeline(
        inputs.plugin,
        inputs.pipeline,
        inputs.X,
        inputs.y,
        inputs.weights,
        on_epoch,
        per_epoch=every_epoch,
    )
