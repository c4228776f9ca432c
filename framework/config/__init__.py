"""Typed configuration: Hydra composes it, these pydantic models validate it.

``load(cfg)`` is the one boundary where the composed ``DictConfig`` becomes a ``RootConfig``;
past it only typed config objects travel.
"""

from __future__ import annotations

from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import Field, PositiveInt, ValidationError, create_model, model_validator

from framework import registry
from framework.config.base import PluginConfig, StrictModel, plugin_union
from framework.config.card import CardConfig
from framework.config.data import ColumnSpec, DataConfig, SourceConfig
from framework.config.errors import problems_of
from framework.config.explain import ExplainConfig
from framework.config.gates import GatesConfig
from framework.config.kuberay import KubeRayConfig
from framework.config.model import ModelConfig
from framework.config.monitor import MonitorConfig
from framework.config.optimize import OptimizeConfig
from framework.config.pipeline import PipelineConfig
from framework.config.ray import RayConfig
from framework.config.score import ScoreConfig
from framework.config.security import SecurityConfig
from framework.config.serve import ServeConfig
from framework.config.store import StoreConfig
from framework.config.train import TrainConfig
from framework.config.tune import TuneConfig
from framework.errors import ConfigError

__all__ = [
    "ColumnSpec",
    "DataConfig",
    "ModelConfig",
    "MonitorConfig",
    "PluginConfig",
    "RayConfig",
    "RootConfig",
    "SecurityConfig",
    "ServeConfig",
    "SourceConfig",
    "StoreConfig",
    "StrictModel",
    "TrainConfig",
    "TuneConfig",
    "load",
    "root_model",
    "validate",
]

Task = Literal[
    "train",
    "registry",
    "serve",
    "build_serve_config",
    "api_key",
    "monitor",
    "promote",
    "rollback",
    "explain",
    "card",
    "reproduce",
    "update",
    "score",
    "init",
    "pipeline",
    "init_ci",
]


class RootConfig(StrictModel):
    """The whole validated configuration of one run."""

    task: Task = Field("train", description="What to run.")
    version: PositiveInt | None = Field(
        None,
        description="Model version (task=registry, promote, rollback, explain, card, reproduce, "
        "update, score).",
    )
    verify: bool = Field(
        False,
        description="task=registry: verify every version (or version=N): the audit log's "
        "signatures, chain and head, each manifest against its audited sha256 and each file "
        "against its manifest; exit 5 on any failure. `task=registry verify` is short for it.",
    )
    target: Literal["ray", "kuberay"] = Field(
        "ray",
        description="task=build_serve_config: a Ray Serve config file (ray), or a KubeRay "
        "RayService manifest with its volume claim and PodMonitor (kuberay).",
    )
    data: DataConfig
    model: ModelConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    optimize: OptimizeConfig = Field(default_factory=OptimizeConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    card: CardConfig = Field(default_factory=CardConfig)
    kuberay: KubeRayConfig = Field(default_factory=KubeRayConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)

    @model_validator(mode="after")
    def _model_fits_target(self) -> RootConfig:
        if self.model.type not in registry.models:
            return self
        task = registry.models.get(self.model.type).impl.task
        target = self.data.columns[self.data.target]
        if task == "regression" and target.dtype not in ("float", "int"):
            raise ValueError(
                f"model.type: {self.model.type!r} is a regressor but the target column "
                f"{self.data.target!r} has dtype {target.dtype!r}; use a classifier or a "
                "numeric target"
            )
        if task == "classification" and target.dtype == "float":
            raise ValueError(
                f"model.type: {self.model.type!r} is a classifier but the target column "
                f"{self.data.target!r} has dtype 'float'; use a regressor or dtype 'category'"
            )
        if task == "regression" and self.data.balance.method != "none":
            raise ValueError(
                f"data.balance.method: {self.data.balance.method!r} needs a classifier, but "
                f"model {self.model.type!r} is a regressor"
            )
        return self

    @model_validator(mode="after")
    def _trial_fits_the_cluster(self) -> RootConfig:
        # A joined cluster is checked once joined (tuning/sweep.py): it may be larger.
        local = self.ray.address == "local" and self.ray.num_cpus is not None
        if local and self.tune.cpus_per_trial > self.ray.num_cpus:  # type: ignore[operator]
            raise ValueError(
                f"tune.cpus_per_trial: {self.tune.cpus_per_trial} CPUs per trial cannot be "
                f"scheduled on a local Ray instance of ray.num_cpus={self.ray.num_cpus}"
            )
        return self

    @property
    def model_name(self) -> str:
        return self.store.model_name or self.data.name


_cache: dict[tuple[tuple[str, ...], tuple[str, ...]], type[RootConfig]] = {}


def root_model() -> type[RootConfig]:
    """The RootConfig class with ``data.source`` and ``model`` as unions of registered plugins."""
    key = (tuple(registry.sources.names()), tuple(registry.models.names()))
    if key not in _cache:
        data = create_model(
            "DataConfig",
            __base__=DataConfig,
            source=(
                plugin_union(registry.sources),
                Field(description=DataConfig.model_fields["source"].description),
            ),
        )
        _cache[key] = create_model(
            "RootConfig",
            __base__=RootConfig,
            data=(data, Field(description="The data set.")),
            model=(plugin_union(registry.models), Field(description="The model plugin.")),
        )
    return _cache[key]


def validate(container: dict[str, Any]) -> RootConfig:
    """Validate a plain config mapping; raise ConfigError listing every problem."""
    root = root_model()
    try:
        return root.model_validate(container)
    except ValidationError as exc:
        raise ConfigError(problems_of(exc, root)) from None


def _drop_missing(node: Any) -> Any:
    """Remove ``???`` values so that pydantic reports every missing value at once."""
    if isinstance(node, dict):
        return {k: _drop_missing(v) for k, v in node.items() if v != "???"}
    if isinstance(node, list):
        return [_drop_missing(v) for v in node]
    return node


def load(cfg: DictConfig) -> RootConfig:
    """Resolve a composed Hydra config and validate it into a RootConfig."""
    try:
        container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "(root)"
        raise ConfigError([f"{key}: {getattr(exc, 'msg', exc)}"]) from None
    assert isinstance(container, dict)
    container.pop("hydra", None)
    return validate(_drop_missing(container))
