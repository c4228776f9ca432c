"""``python -m framework``: Hydra composes the config, the runner runs the task.

Exit status: 0 done; 2 bad config or usage; 3 data failed a check; 4 model refused
(ONNX parity or a gate); 5 registry error; 1 anything unexpected (with a traceback).
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from rich.console import Console
from rich.text import Text

from framework import config as config_module
from framework.config.hydra_defaults import register_defaults
from framework.errors import ConfigError, FrameworkError

register_defaults()

_status: list[int] = []


def _task(cfg: DictConfig) -> None:
    console = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    try:
        from framework.runner import run

        root = config_module.load(cfg)
        output_dir = Path(HydraConfig.get().runtime.output_dir)
        _status.append(run(root, output_dir, console))
    except ConfigError as exc:
        err.print(Text("error: ", style="red") + Text(exc.message), soft_wrap=True)
        _status.append(exc.exit_code)
    except FrameworkError as exc:
        err.print(Text("error: ", style="red") + Text(str(exc)), soft_wrap=True)
        _status.append(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        _status.append(130)
    except Exception:
        err.print("[red]unexpected error[/] (please report it with the traceback below):")
        traceback.print_exc()
        _status.append(1)


hydra_main = hydra.main(config_path="../conf", config_name="config", version_base="1.3")(_task)


def main() -> None:
    """Entry point of ``python -m framework`` and the ``framework`` command."""
    try:
        hydra_main()
    except SystemExit as exc:
        # Hydra exits with 1 on its own errors (unknown config group option, bad override):
        # those are config errors for our users.
        if exc.code not in (0, None):
            sys.exit(2)
        raise
    sys.exit(max(_status, default=0))


if __name__ == "__main__":
    main()
