"""Import Ray in the background while Hydra composes the config.

Joining a running cluster is then mostly the join itself. Nothing else may import Ray until
``ray_imported`` returned: two threads importing one package at once can each see the
other's half-initialised modules.
"""

from __future__ import annotations

import contextlib
import threading

_warming: list[threading.Thread] = []


def start() -> None:
    def warm() -> None:
        with contextlib.suppress(Exception):  # the task that needs Ray reports a failure
            import ray  # noqa: F401

    thread = threading.Thread(target=warm, name="import-ray", daemon=True)
    thread.start()
    _warming.append(thread)


def ray_imported() -> None:
    """Wait until the background import is done (at once when none was started)."""
    while _warming:
        _warming.pop().join()
