"""The plugin registry: one ``Registry`` per extension kind.

A plugin registers its config class and its implementation together under one name::

    @models.register("random_forest", config=RandomForestConfig)
    class RandomForest: ...

Built-in plugins live in the ``plugins`` package; third-party packages add theirs through the
``framework.plugins`` entry-point group. Both are imported lazily by :func:`load_plugins`.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from framework.errors import PluginError

T = TypeVar("T")
ENTRY_POINT_GROUP = "framework.plugins"


def closest(name: str, options: list[str]) -> str | None:
    """Return the option closest to ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return matches[0] if matches else None


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered plugin: its name, config class and implementation."""

    name: str
    config: type[BaseModel]
    impl: T


class Registry(Generic[T]):
    """Named plugins of one kind (sources, models, ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, *, config: type[BaseModel]) -> Callable[[T], T]:
        """Class decorator registering ``impl`` with its ``config`` under ``name``."""

        def decorator(impl: T) -> T:
            self.add(name, config=config, impl=impl)
            return impl

        return decorator

    def add(self, name: str, *, config: type[BaseModel], impl: T) -> None:
        """Register ``impl`` and ``config`` under ``name``; duplicate names raise."""
        if name in self._entries:
            existing = self._entries[name].impl
            raise PluginError(
                f"{self.kind} plugin {name!r} is already registered "
                f"(by {getattr(existing, '__module__', '?')}.{getattr(existing, '__name__', '?')})",
                hint="pick another name for the new plugin",
            )
        type_field = config.model_fields.get("type")
        literal = getattr(type_field, "annotation", None)
        if type_field is None or getattr(literal, "__args__", None) != (name,):
            raise PluginError(
                f"{self.kind} plugin {name!r}: config class {config.__name__} must declare "
                f"`type: Literal[{name!r}]`",
                hint="the YAML option name, the registry key and the `type` literal are one word",
            )
        self._entries[name] = Entry(name=name, config=config, impl=impl)

    def get(self, name: str) -> Entry[T]:
        """Look up a plugin; an unknown name lists the options and suggests the closest."""
        load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            raise PluginError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        names = self.names()
        message = f"unknown {self.kind} {name!r}; valid: {', '.join(names) or '(none)'}"
        suggestion = closest(name, names)
        if suggestion:
            message += f"; did you mean {suggestion!r}?"
        return message

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)

    def configs(self) -> list[type[BaseModel]]:
        load_plugins()
        return [self._entries[n].config for n in sorted(self._entries)]

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        load_plugins()
        return iter([self._entries[n] for n in sorted(self._entries)])


sources: Registry[Any] = Registry("source")
models: Registry[Any] = Registry("model")
drift_tests: Registry[Any] = Registry("drift test")
explainers: Registry[Any] = Registry("explainer")

_loaded = False
_loading = False


def load_plugins() -> None:
    """Import the built-in plugins and every ``framework.plugins`` entry point, once."""
    global _loaded, _loading
    if _loaded or _loading:
        return
    _loading = True
    try:
        import plugins

        for module in pkgutil.walk_packages(plugins.__path__, prefix="plugins."):
            if not module.name.rpartition(".")[2].startswith("_"):  # helpers load on demand
                importlib.import_module(module.name)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                loaded = ep.load()
            except Exception as exc:  # a broken third-party plugin must name itself
                raise PluginError(
                    f"could not load plugin entry point {ep.name!r} ({ep.value}): {exc}",
                    hint=f"check the package that declares it in [{ENTRY_POINT_GROUP}]",
                ) from exc
            if callable(loaded) and not isinstance(loaded, type):
                loaded()
        _loaded = True
    finally:
        _loading = False
