"""Hydra's sweep grammar -> a Ray Tune search space.

``choice(a,b)`` / ``a,b`` and ``range(start,stop,step)`` become ``tune.choice`` (or
``tune.grid_search`` for grid search); ``interval(lo,hi)`` becomes ``tune.uniform`` or
``tune.randint`` (``tag(int, interval(...))``), and ``tag(log, ...)`` their log-scale forms.
A choice over a config group (``model=logistic_regression,random_forest``) is a choice like
any other; each value selects that group's option.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from framework.errors import ConfigError


@dataclass
class Param:
    """One swept key: a config path (``model.C``) or a config group (``model``)."""

    key: str
    group: bool
    values: list[Any] = field(default_factory=list)  # discrete choices
    low: float | None = None  # interval bounds
    high: float | None = None
    log: bool = False
    integer: bool = False

    @property
    def discrete(self) -> bool:
        return self.low is None

    def to_tune(self, grid: bool) -> Any:
        from ray import tune

        if self.discrete:
            return tune.grid_search(self.values) if grid else tune.choice(self.values)
        assert self.low is not None and self.high is not None
        if self.integer:
            sampler = tune.lograndint if self.log else tune.randint
            return sampler(int(self.low), int(self.high) + 1)
        return (tune.loguniform if self.log else tune.uniform)(self.low, self.high)

    def probes(self) -> list[Any]:
        """Values that, validated up front, show a bad key or value before any trial starts."""
        if self.discrete:
            return list(self.values)
        bounds = [self.low, self.high]
        return [int(b) for b in bounds] if self.integer else bounds  # type: ignore[arg-type]


@dataclass
class SearchSpace:
    """The swept params and the fixed overrides of a sweep."""

    fixed: list[str]
    params: list[Param]

    @property
    def groups(self) -> list[Param]:
        return [p for p in self.params if p.group]

    @property
    def values(self) -> list[Param]:
        return [p for p in self.params if not p.group]

    def to_tune(self, grid: bool) -> dict[str, Any]:
        if grid:
            continuous = [p.key for p in self.params if not p.discrete]
            if continuous:
                raise ConfigError(
                    [
                        f"tune.search: grid search cannot sample interval(...) of "
                        f"{', '.join(continuous)}; use choice/range or search=random|optuna"
                    ]
                )
        return {p.key: p.to_tune(grid) for p in self.params}


def parse_space(
    arguments: list[str], yaml_params: dict[str, str], config_loader: Any
) -> SearchSpace:
    """Split command-line overrides into fixed ones and swept params (YAML params first,
    then the command line, which wins for the same key). Bad syntax is a ConfigError."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from hydra.errors import HydraException

    parser = OverridesParser.create(config_loader=config_loader)
    lines = [f"{key}={value}" for key, value in yaml_params.items()] + list(arguments)
    problems: list[str] = []
    fixed: list[str] = []
    params: dict[str, Param] = {}
    for line in lines:
        try:
            (override,) = parser.parse_overrides([line])
        except HydraException as exc:
            problems.append(f"{line}: {str(exc).splitlines()[0]}")
            continue
        key = override.get_key_element()
        if not override.is_sweep_override():
            fixed.append(line)
            params.pop(key, None)
            continue
        if key.startswith("hydra"):
            problems.append(f"{key}: Hydra's own settings cannot be swept")
            continue
        group = bool(config_loader.get_group_options(key.lstrip("+")))
        value = override.value()
        try:
            if isinstance(value, IntervalSweep):
                # Hydra reads interval bounds as floats; `tag(int, ...)` asks for integers.
                integer = "int" in value.tags
                params[key] = Param(
                    key,
                    group,
                    low=value.start,
                    high=value.end,
                    log="log" in value.tags,
                    integer=integer,
                )
            elif isinstance(value, ChoiceSweep | RangeSweep) or override.is_discrete_sweep():
                choices = list(override.sweep_iterator())
                if not choices:
                    raise ValueError("the sweep has no values")
                params[key] = Param(key, group, values=choices)
        except (HydraException, ValueError) as exc:
            problems.append(f"{line}: {exc}")
        if group and key in params and not params[key].discrete:
            problems.append(f"{key}: a config group can only be swept over choices")
    if problems:
        raise ConfigError(
            problems,
            hint="sweep syntax: a,b | choice(a,b) | range(1,10,2) | "
            "interval(0.1,1) | tag(log, interval(1e-3,1))",
        )
    return SearchSpace(fixed, list(params.values()))
