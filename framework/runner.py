"""Task -> graph: each ``task=`` value maps to the function that builds and runs its graph."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from framework.config import RootConfig
from framework.progress import Stages
from framework.store.registry import ModelRegistry
from framework.summary import print_registry, print_train_summary, print_version


def run_train(cfg: RootConfig, output_dir: Path, console: Console) -> int:
    from framework.training.job import train

    console.print(
        f"[bold]train[/] {cfg.model.type} on {cfg.data.name} -> registry {cfg.store.path}"
    )
    result = train(cfg, output_dir, Stages(console))
    print_train_summary(console, result)
    return 0


def run_registry(cfg: RootConfig, output_dir: Path, console: Console) -> int:
    store = ModelRegistry(cfg.store.path)
    if cfg.version is not None:
        version = store.get(cfg.model_name, cfg.version)
        version.verify()
        print_version(console, version)
    else:
        print_registry(console, store, cfg.store.model_name)
    return 0


TASKS: dict[str, Callable[[RootConfig, Path, Console], int]] = {
    "train": run_train,
    "registry": run_registry,
}


def run(cfg: RootConfig, output_dir: Path, console: Console) -> int:
    """Run the task named in ``cfg``; return the process exit status."""
    return TASKS[cfg.task](cfg, output_dir, console)
