"""Expose the pydantic defaults to Hydra, so that every default can be overridden by name.

Hydra composes configs in struct mode: ``train.onnx_threads=2`` is refused unless the key
exists. The defaults live once, in the pydantic models; this module turns them into a config
node (``framework_defaults``) that ``conf/config.yaml`` lists first in its defaults.
"""

from __future__ import annotations

from typing import Any

from hydra.core.config_store import ConfigStore

from framework.config.data import DataConfig
from framework.config.explain import ExplainConfig
from framework.config.gates import GatesConfig
from framework.config.kuberay import KubeRayConfig
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

NODE_NAME = "framework_defaults"
_DATA_BLOCKS = ("checks", "guards", "cleaning", "noise", "balance", "split", "stream")


def defaults_node() -> dict[str, Any]:
    """Every default of the fixed config blocks, as plain data."""
    data = {}
    for block in _DATA_BLOCKS:
        factory = DataConfig.model_fields[block].default_factory
        assert factory is not None
        data[block] = factory().model_dump(mode="json")  # type: ignore[call-arg]
    # the fields every source plugin has, so `data.source.chunk_rows=N` works on any of them
    data["source"] = {"limit_rows": None, "chunk_rows": None}
    return {
        "task": "train",
        "version": None,
        "verify": False,
        "target": "ray",
        "data": data,
        "train": TrainConfig().model_dump(mode="json"),
        "ray": RayConfig().model_dump(mode="json"),
        "store": StoreConfig().model_dump(mode="json"),
        "tune": TuneConfig().model_dump(mode="json"),
        "optimize": OptimizeConfig().model_dump(mode="json"),
        "serve": ServeConfig().model_dump(mode="json"),
        "security": SecurityConfig().model_dump(mode="json"),
        "monitor": MonitorConfig().model_dump(mode="json"),
        "explain": ExplainConfig().model_dump(mode="json"),
        "gates": GatesConfig().model_dump(mode="json"),
        "score": ScoreConfig().model_dump(mode="json"),
        "kuberay": KubeRayConfig().model_dump(mode="json"),
        "pipeline": PipelineConfig().model_dump(mode="json"),
    }


SWEEPER = "hydra_plugins.framework_sweeper.ray_tune_sweeper.RayTuneSweeper"


def register_defaults() -> None:
    """Store the defaults node and the Ray Tune sweeper in Hydra's ConfigStore (idempotent)."""
    store = ConfigStore.instance()
    store.store(name=NODE_NAME, node=defaults_node())
    store.store(group="hydra/sweeper", name="ray_tune", node={"_target_": SWEEPER})
