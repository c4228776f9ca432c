"""Stage-by-stage progress on the console: a spinner while a stage runs, its time when done."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from rich.console import Console


class Stages:
    """Prints each stage of a run with its wall time; keeps the timings."""

    def __init__(self, console: Console):
        self.console = console
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str, skip: bool = False) -> Iterator[None]:
        if skip:
            yield
            return
        started = time.perf_counter()
        try:
            with self.console.status(f"[bold]{name}[/] ...", spinner="dots"):
                yield
        except BaseException:
            self.console.print(f"[red]✗[/] {name}")
            raise
        elapsed = time.perf_counter() - started
        self.timings[name] = elapsed
        self.console.print(f"[green]✓[/] {name} [dim]{elapsed:.2f} s[/]")
