"""Run a Hydra multirun as one Ray Tune experiment.

The driver composes and validates every configuration the sweep can produce before any trial
starts, prepares the data once per distinct data config and shares it with the trials
through Ray's object store, then lets Ray Tune schedule the trials. Each trial runs the train
path's own balancing, fitting and evaluation, reporting validation metrics per epoch (so ASHA
can stop lagging trials). At the end the trials are tabulated, the best configuration is
written as an experiment file, and (optionally) retrained and registered.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from framework import config as config_module
from framework.config import RootConfig
from framework.errors import ConfigError, FrameworkError
from framework.progress import Stages
from framework.training.job import (
    PreparedData,
    prepare,
    train,
)
from framework.tuning.space import SearchSpace, parse_space
from framework.tuning.trial import Base, data_key, run_trial, set_path


def _compose(master: DictConfig, config_loader: Any, overrides: list[str]) -> Base:
    from hydra.errors import HydraException

    try:
        cfg = config_loader.load_sweep_config(master_config=master, sweep_overrides=overrides)
    except HydraException as exc:
        raise ConfigError([str(exc).splitlines()[0]]) from None
    choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra")}
    task_keys = [str(k) for k in cfg if k != "hydra"]
    container = OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, task_keys), resolve=True, throw_on_missing=False
    )
    assert isinstance(container, dict)
    return Base(container, choices)


def build(master: DictConfig, config_loader: Any, arguments: list[str]):
    """Compose and validate the sweep: bases per group combination and the search space."""
    fixed = parse_space(arguments, {}, config_loader).fixed
    base_cfg = config_module.validate(_compose(master, config_loader, fixed).container)
    space = parse_space(arguments, base_cfg.tune.params, config_loader)
    groups = space.groups
    bases: dict[tuple[Any, ...], Base] = {}
    problems: list[str] = []
    for combo in itertools.product(*(p.values for p in groups)):
        overrides = space.fixed + [f"{p.key}={v}" for p, v in zip(groups, combo, strict=True)]
        try:
            bases[combo] = _compose(master, config_loader, overrides)
        except ConfigError as exc:
            problems += exc.problems
            continue
        # Validate every probe value of every swept key against this base.
        probes = [[]] + [[(p.key, v)] for p in space.values for v in p.probes()]
        for probe in probes:
            container = copy.deepcopy(bases[combo].container)
            for key, value in probe:
                set_path(container, key, value)
            try:
                cfg = config_module.validate(container)
            except ConfigError as exc:
                problems += exc.problems
                continue
            if cfg.data.split.validation_size == 0:
                problems.append("data.split.validation_size: a sweep needs a validation split")
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    return base_cfg, space, bases


def run_sweep(master: DictConfig, config_loader: Any, arguments: list[str]) -> dict[str, Any]:
    """Run the sweep described by ``arguments``; return a summary (also printed and saved)."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from framework.cluster import announce, ensure_ray

    console = Console(highlight=False)
    stages = Stages(console)
    started = time.perf_counter()
    base_cfg, space, bases = build(master, config_loader, arguments)
    settings = base_cfg.tune
    sweep_dir = Path(master.hydra.sweep.dir).resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(master, sweep_dir / "multirun.yaml")  # as Hydra's basic sweeper does
    name = settings.name or _sweep_name(base_cfg, space)
    console.print(
        f"[bold]sweep[/] {name}: {len(space.params)} swept key(s), search={settings.search}, "
        f"scheduler={settings.scheduler}, metric={settings.metric} ({settings.mode})"
    )
    with stages.stage("join or start Ray"):
        conn = ensure_ray(base_cfg.ray)
    announce(console, conn)
    _check_trial_fits(settings.cpus_per_trial)

    prepared: dict[str, PreparedData] = {}
    # Data configs fixed per group combination are prepared here, once each; a sweep over
    # data.* values changes the data per trial, so those trials prepare their own.
    data_values_swept = any(p.key.lstrip("+").split(".")[0] == "data" for p in space.values)
    if not data_values_swept:
        for base in bases.values():
            cfg = config_module.validate(base.container)
            key = data_key(cfg)
            if key not in prepared:
                prepared[key] = prepare(cfg, stages, sweep_dir)
    prepared_in_driver = len(prepared)

    search = settings.search
    if search == "auto":
        search = "grid" if all(p.discrete for p in space.params) else "random"
    concurrency = settings.max_concurrent_trials
    if search == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        search_alg: Any = ConcurrencyLimiter(OptunaSearch(seed=settings.seed), concurrency)
    else:
        search_alg = BasicVariantGenerator(max_concurrent=concurrency, random_state=settings.seed)
    scheduler: Any = (
        ASHAScheduler(
            time_attr="training_iteration",
            max_t=settings.asha.max_t,
            grace_period=settings.asha.grace_period,
            reduction_factor=settings.asha.reduction_factor,
        )
        if settings.scheduler == "asha"
        else FIFOScheduler()
    )
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
            bases=bases,
            space=space,
            prepared=prepared,
            every_epoch=settings.scheduler != "fifo",
        ),
        {"cpu": settings.cpus_per_trial},
    )
    # Ray Tune's automatic TensorBoard logger costs ~2.5 s of start-up here (tensorboardX);
    # keep the JSON and CSV result files and skip it, unless the user asks for it.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    loggers = [JsonLoggerCallback(), CSVLoggerCallback()]
    tuner = tune.Tuner(
        trainable,
        param_space=space.to_tune(grid=search == "grid"),
        tune_config=tune.TuneConfig(
            metric=settings.metric,
            mode=settings.mode,
            search_alg=search_alg,
            scheduler=scheduler,
            num_samples=1 if search == "grid" else settings.num_samples,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(sweep_dir / "ray_results"),
            verbose=0,
            callbacks=loggers,
        ),
    )
    with stages.stage(f"run trials on Ray Tune ({settings.max_concurrent_trials} at a time)"):
        fit_started_at = time.time()
        grid = tuner.fit()
        trials_wall_s = time.time() - fit_started_at

    table = trial_table(grid, space, settings.metric, settings.mode)
    table.to_csv(sweep_dir / "trials.csv", index=False)
    console.print(rich_table(table, settings.metric))
    ok = table[table["error"] == ""]
    if ok.empty:
        raise FrameworkError(
            f"every trial failed; the first error: {table.iloc[0]['error']}",
            hint=f"see {sweep_dir / 'trials.csv'} and the trial logs under ray_results/",
        )
    best = ok.iloc[0]
    best_params = {p.key: _plain(best[p.key]) for p in space.params}
    combo = tuple(best_params[p.key] for p in space.groups)
    best_container = copy.deepcopy(bases[combo].container)
    for p in space.values:
        set_path(best_container, p.key, best_params[p.key])
    best_cfg = config_module.validate(best_container)
    experiment = write_best_experiment(
        Path(settings.best_experiment_dir),
        name,
        bases[combo].choices,
        best_cfg,
        settings.metric,
        float(best[settings.metric]),
    )
    console.print(f"Best trial: {best_params} {settings.metric}={best[settings.metric]:.4f}")
    console.print(
        f"Best configuration written to {experiment} "
        f"(reproduce: python -m framework +experiment={experiment.stem})"
    )
    data_runs = prepared_in_driver + int(table["data_prepared_in_trial"].sum())
    summary: dict[str, Any] = {
        "name": name,
        "trials": len(table),
        "stopped_early": int(table["stopped_early"].sum()),
        "best": best_params,
        "best_metric": float(best[settings.metric]),
        "experiment": str(experiment),
        "data_preparations": data_runs,
        "trials_wall_s": trials_wall_s,
        "trial_time_sum_s": float(table["time_s"].sum()),
        "concurrency": settings.max_concurrent_trials,
        "nodes": sorted(n for n in table["node_ip"].unique() if n),
    }
    if settings.register_best:
        best_data = prepared.get(data_key(best_cfg))
        result = train(best_cfg, sweep_dir / "best", stages, prepared=best_data)
        if best_data is None:
            summary["data_preparations"] += 1
        if result.version is not None:
            summary["registered"] = {
                "name": result.version.name,
                "version": result.version.version,
                "alias": result.alias,
            }
            alias = f" as {result.alias}" if result.alias else ""
            console.print(
                f"Registered the best model: {result.version.name} version "
                f"{result.version.version}{alias} at {result.version.path}"
            )
    summary["wall_s"] = time.perf_counter() - started
    summary["first_trial_start_s"] = float(table["started_at"].min() - fit_started_at)
    summary["after_last_trial_s"] = float(fit_started_at + trials_wall_s - table["ended_at"].max())
    console.print(
        f"Data preparation ran {summary['data_preparations']} time(s) for "
        f"{len(table)} trial(s); {summary['stopped_early']} trial(s) stopped early; "
        f"trials ran on {len(summary['nodes'])} node(s): {', '.join(summary['nodes'])}."
    )
    (sweep_dir / "sweep.json").write_text(json.dumps(summary, indent=2, default=str))
    console.print(f"Sweep reports: {sweep_dir}")
    return summary


def _sweep_name(cfg: RootConfig, space: SearchSpace) -> str:
    """``<data>_<model>_sweep``, naming every option where a group is swept."""
    parts = []
    for group, default in (("data", cfg.data.name), ("model", cfg.model.type)):
        swept = next((p for p in space.groups if p.key == group), None)
        parts.append("-".join(map(str, swept.values)) if swept else default)
    return "_".join(parts) + "_sweep"


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _check_trial_fits(cpus_per_trial: float) -> None:
    """Refuse a trial no node of the cluster can hold (Tune would wait for it forever)."""
    import ray

    from framework.errors import ConfigError

    largest = max(
        (n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")), default=0.0
    )
    if cpus_per_trial > largest:
        raise ConfigError(
            [
                f"tune.cpus_per_trial: {cpus_per_trial:g} CPUs per trial cannot be scheduled: "
                f"the largest node of the Ray cluster has {largest:g}"
            ]
        )


def trial_table(grid: Any, space: SearchSpace, metric: str, mode: str) -> pd.DataFrame:
    """One row per trial: swept values, metric, epochs run, early stop, time; best first."""
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        planned = metrics.get("epochs_planned", 1)
        iterations = metrics.get("training_iteration", 0)
        row = {p.key: result.config.get(p.key) for p in space.params}
        row.update(
            trial=str(metrics.get("trial_id", "?")),
            **{metric: metrics.get(metric, float("nan"))},
            epochs=iterations,
            stopped_early=bool(result.error is None and iterations < planned),
            time_s=float(metrics.get("time_total_s", 0.0)),
            started_at=float(metrics.get("started_at", float("nan"))),
            ended_at=float(metrics.get("reported_at", float("nan"))),
            data_prepared_in_trial=int(metrics.get("data_prepared_in_trial", 0)),
            node_ip=str(metrics.get("node_ip", "")),
            error="" if result.error is None else str(result.error).splitlines()[0][:120],
        )
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.sort_values(metric, ascending=mode == "min", na_position="last").reset_index(
        drop=True
    )


def rich_table(frame: pd.DataFrame, metric: str) -> Table:
    table = Table(title=f"Trials by {metric}", title_justify="left")
    hidden = ("error", "data_prepared_in_trial", "started_at", "ended_at", "node_ip")
    shown = [c for c in frame.columns if c not in hidden]
    for column in shown:
        table.add_column(column, justify="left" if column == "trial" else "right")
    for _, row in frame.iterrows():
        cells = []
        for column in shown:
            value = row[column]
            cells.append(f"{value:.4g}" if isinstance(value, float) else str(value))
        table.add_row(*cells, style="red" if row["error"] else None)
    return table


def write_best_experiment(
    folder: Path, name: str, choices: dict[str, str], cfg: RootConfig, metric: str, value: float
) -> Path:
    """Write the best configuration as a ``# @package _global_`` experiment file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}_best.yaml"
    groups = [g for g in ("data", "model") if choices.get(g)]
    body = {
        "defaults": [{f"override /{g}": choices[g]} for g in groups],
        "data": cfg.data.model_dump(mode="json"),
        "model": cfg.model.model_dump(mode="json"),
        "train": cfg.train.model_dump(mode="json"),
    }
    header = (
        "# @package _global_\n"
        f"# Best trial of sweep {name}: {metric}={value:.4f}, written "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}.\n"
        f"# Reproduce: python -m framework +experiment={path.stem}\n"
    )
    path.write_text(header + yaml.safe_dump(body, sort_keys=False))
    return path
