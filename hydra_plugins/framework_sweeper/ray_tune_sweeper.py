"""``hydra/sweeper=ray_tune``: Hydra's multirun (``-m``) as one Ray Tune experiment.

Hydra instantiates sweepers only from the ``hydra_plugins`` namespace package; the work is
done by :mod:`framework.tuning.sweep`.
"""

from __future__ import annotations

import sys
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
        from rich.console import Console
        from rich.text import Text

        from framework.errors import FrameworkError
        from framework.tuning.sweep import run_sweep

        assert self.hydra_context is not None and self.config is not None
        try:
            return run_sweep(self.config, self.hydra_context.config_loader, arguments)
        except FrameworkError as exc:
            # The same clear errors as a single run, and the same exit statuses.
            Console(stderr=True).print(Text("error: ", style="red") + Text(str(exc)))
            sys.exit(exc.exit_code)
