"""``python -m framework``: Hydra composes the config, the runner runs the task.

Exit statuses are listed in :mod:`framework.cli`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from rich.console import Console

from framework import config as config_module
from framework import warmup
from framework.cli import run_guarded, statuses
from framework.config.hydra_defaults import register_defaults

register_defaults()

#: The bundled config, shipped inside the package (``framework/conf``, the top-level
#: ``conf/`` of the checkout), so that an installed framework finds it from any folder. A
#: ``conf/`` in the working directory, or ``--config-dir``, comes before it.
CONFIG_PATH = "pkg://framework.conf"


def _task(cfg: DictConfig) -> None:
    def job() -> int:
        from framework.runner import run

        root = config_module.load(cfg)
        warmup.ray_imported()
        output_dir = Path(HydraConfig.get().runtime.output_dir)
        overrides = list(HydraConfig.get().overrides.task)
        return run(root, output_dir, Console(highlight=False), overrides)

    run_guarded(job)


hydra_main = hydra.main(config_path=CONFIG_PATH, config_name="config", version_base="1.3")(_task)


def main() -> None:
    """Entry point of ``python -m framework`` and the ``framework`` command."""
    if "task=init" in sys.argv[1:]:  # profiles a file: no config to compose yet
        from framework.data.infer import main as init_main

        sys.exit(init_main(sys.argv[1:]))
    if "task=registry" in sys.argv[1:] and "verify" in sys.argv[1:]:  # task=registry verify
        sys.argv[sys.argv.index("verify")] = "verify=true"
    warmup.start()
    try:
        hydra_main()
    except SystemExit as exc:
        # Hydra exits with 1 when it fails before any of our code ran (unknown config group
        # option, bad override syntax): for our users those are config errors.
        if exc.code not in (0, None) and not statuses:
            sys.exit(2)
        raise
    sys.exit(max(statuses, default=0))


if __name__ == "__main__":
    main()
