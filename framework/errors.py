"""The framework's error hierarchy.

Every error a user can cause is a ``FrameworkError`` carrying a dotted ``path`` to what is
wrong and a ``hint`` on how to fix it. The CLI prints them without a traceback and maps each
class to an exit status. They are plain picklable exceptions so they survive Ray workers.
"""

from __future__ import annotations


class FrameworkError(Exception):
    """Base class for errors the user can act on."""

    exit_code: int = 1

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None):
        super().__init__(message, path, hint)
        self.message = message
        self.path = path
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ConfigError(FrameworkError):
    """The composed configuration is invalid; ``problems`` lists every problem found."""

    exit_code = 2

    def __init__(self, problems: list[str], *, hint: str | None = None):
        self.problems = list(problems)
        message = f"{len(self.problems)} problem(s) in the configuration:\n" + "\n".join(
            f"  - {p}" for p in self.problems
        )
        super().__init__(message, hint=hint)
        self.args = (problems, hint)

    def __reduce__(self):  # keep pickling across Ray workers faithful
        return (type(self), (self.problems,), {"hint": self.hint})


class PluginError(FrameworkError):
    """A plugin could not be registered or found."""

    exit_code = 2


class InputPathError(FrameworkError):
    """A file, folder or glob the configuration names holds nothing to read."""

    exit_code = 2


class DataValidationError(FrameworkError):
    """The data broke a check whose declared policy is ``fail``."""

    exit_code = 3


class ModelRefusedError(FrameworkError):
    """A trained model failed a check (ONNX parity, a gate) and was not registered."""

    exit_code = 4


class RegistryError(FrameworkError):
    """The model registry was asked for something it does not hold, or is damaged."""

    exit_code = 5


class ReproductionError(FrameworkError):
    """task=reproduce did not rebuild the version identically (or its data changed)."""

    exit_code = 8


class ClusterError(FrameworkError):
    """The Ray cluster named or found cannot be joined (not there, other versions), a
    submitted job could not run, or the serving port is held by another process."""

    exit_code = 7


class InfraValidationError(FrameworkError):
    """A candidate deployed as a staging application did not serve as required (it did not
    start, answered differently from its offline predictions, erred or broke its p99 budget)."""

    exit_code = 9
