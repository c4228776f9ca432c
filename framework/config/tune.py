"""Config of the ``tune/`` group: how a sweep (``-m``) runs on Ray Tune."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from framework.config.base import StrictModel


class AshaConfig(StrictModel):
    """Asynchronous successive halving: stops trials whose metric lags at each rung."""

    max_t: PositiveInt = Field(20, description="Most epochs (reports) a trial may run.")
    grace_period: PositiveInt = Field(2, description="Epochs every trial runs before a stop.")
    reduction_factor: float = Field(2.0, gt=1, description="Share of trials kept per rung: 1/x.")


class TuneConfig(StrictModel):
    """Search algorithm, scheduler and budget of a sweep; the search space comes from the
    command line (Hydra sweep syntax) and/or ``params``."""

    search: Literal["auto", "random", "grid", "optuna"] = Field(
        "auto",
        description="auto: grid when every swept key is a choice or range (as Hydra's basic "
        "sweeper), else random; random or grid (Ray Tune's variant generator); optuna (TPE).",
    )
    scheduler: Literal["fifo", "asha"] = Field("fifo", description="Trial scheduler.")
    asha: AshaConfig = Field(default_factory=AshaConfig)
    num_samples: PositiveInt = Field(
        4, description="Trials to sample (random/optuna); a grid runs each combination once."
    )
    max_concurrent_trials: PositiveInt = Field(2, description="Trials running at once.")
    cpus_per_trial: PositiveFloat = Field(1.0, description="CPUs reserved by each trial.")
    metric: str = Field(
        "validation.f1_macro",
        description="Metric to optimise: `validation.<name>` from the evaluation report.",
    )
    mode: Literal["max", "min"] = Field("max", description="Maximise or minimise the metric.")
    seed: int = Field(0, description="Seed of the search algorithm.")
    params: dict[str, str] = Field(
        default_factory=dict,
        description="Search space in Hydra sweep syntax, keyed by config path, e.g. "
        "{model.C: 'tag(log, interval(0.01, 10))'}.",
    )
    register_best: bool = Field(True, description="Retrain and register the best configuration.")
    best_experiment_dir: str = Field(
        "experiments", description="Folder the best configuration is written to, as an experiment."
    )
    name: str | None = Field(None, description="Sweep name (default: <data>_<model>_sweep).")

    @model_validator(mode="after")
    def _metric_has_a_split(self) -> TuneConfig:
        if not self.metric.startswith("validation."):
            raise ValueError(
                f"metric {self.metric!r} must name a validation metric, e.g. "
                "'validation.f1_macro' or 'validation.rmse' (the test split stays held out)"
            )
        return self
