"""The plugin registry: register together, refuse duplicates, list options on a miss."""

from __future__ import annotations

from typing import Literal

import pytest

from framework.config.model import ModelConfig
from framework.errors import PluginError
from framework.registry import Registry, models, sources


class DemoConfig(ModelConfig):
    type: Literal["demo"] = "demo"


def test_register_stores_config_and_implementation_under_one_name() -> None:
    kinds: Registry[object] = Registry("widget")

    @kinds.register("demo", config=DemoConfig)
    class Demo:
        pass

    entry = kinds.get("demo")
    assert entry.config is DemoConfig and entry.impl is Demo
    assert "demo" in kinds.names()


def test_duplicate_name_raises() -> None:
    kinds: Registry[object] = Registry("widget")
    kinds.add("demo", config=DemoConfig, impl=object)
    with pytest.raises(PluginError, match="widget plugin 'demo' is already registered"):
        kinds.add("demo", config=DemoConfig, impl=object)


def test_config_type_literal_must_match_the_name() -> None:
    kinds: Registry[object] = Registry("widget")
    with pytest.raises(PluginError, match=r"must declare `type: Literal\['other'\]`"):
        kinds.add("other", config=DemoConfig, impl=object)


def test_unknown_name_lists_options_and_suggests_closest() -> None:
    with pytest.raises(PluginError) as info:
        models.get("random_forrest")
    message = str(info.value)
    assert "unknown model 'random_forrest'" in message
    assert "gradient_boosting, logistic_regression, mlp, random_forest" in message
    assert "did you mean 'random_forest'?" in message


def test_builtin_plugins_are_registered() -> None:
    assert {"csv", "parquet", "sklearn_dataset"} <= set(sources.names())
    assert {
        "logistic_regression",
        "random_forest",
        "gradient_boosting",
        "ridge",
        "random_forest_regressor",
        "mlp",
    } <= set(models.names())
    for entry in models:
        assert entry.impl.task in ("classification", "regression")
