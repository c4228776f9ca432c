"""``hydra/sweeper=ray_tune``: Hydra's multirun (``-m``) as one Ray Tune experiment.

Hydra instantiates sweepers only from the ``hydra_plugins`` namespace package; the work is
done by :mod:`framework.tuning.sweep`.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class RayTuneSweeper(Sweeper):
    """Translates the sweep overrides into a Ray Tune search space and runs it."""

    def __init__(self, **_: Any) -> None:
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context = hydra_context
        self.config = config

    def sweep(self, arguments: list[str]) -> Any:
        from framework import warmup

        warmup.ray_imported()  # before anything here imports Ray
        from framework.cli import run_guarded
        from framework.tuning.sweep import run_sweep

        assert self.hydra_context is not None and self.config is not None
        config, loader = self.config, self.hydra_context.config_loader

        def job() -> int:
            run_sweep(config, loader, arguments)
            return 0

        # The same clear errors and exit statuses as a single run.
        run_guarded(job)
