"""Error printing and exit statuses shared by the CLI entry point and the Ray Tune sweeper.

Exit status: 0 done; 2 bad config or usage; 3 data failed a check; 4 model refused
(ONNX parity or a gate); 5 registry error; 6 drift found (task=monitor); 7 the Ray cluster
could not be joined, a job not submitted or serve.port is held by another process;
8 task=reproduce did not rebuild the version identically; 9 refused at infra validation,
10/11/12 task=pipeline's train, evaluate and alias stages (framework.shipping.pipeline.STAGES);
1 anything unexpected (with a traceback).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable

from rich.console import Console
from rich.text import Text

from framework.errors import ConfigError, FrameworkError

#: Exit status of every job (or sweep) run in this process.
statuses: list[int] = []


def run_guarded(job: Callable[[], int]) -> None:
    """Run ``job``; print a FrameworkError without a traceback; record the exit status."""
    err = Console(stderr=True, highlight=False)
    try:
        statuses.append(job())
    except ConfigError as exc:
        err.print(Text("error: ", style="red") + Text(exc.message), soft_wrap=True)
        statuses.append(exc.exit_code)
    except FrameworkError as exc:
        err.print(Text("error: ", style="red") + Text(str(exc)), soft_wrap=True)
        statuses.append(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        statuses.append(130)
    except Exception:
        err.print("[red]unexpected error[/] (please report it with the traceback below):")
        traceback.print_exc()
        statuses.append(1)
