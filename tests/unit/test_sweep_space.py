"""Hydra's sweep grammar translated into a Ray Tune search space."""

from __future__ import annotations

from typing import Any

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from ray.tune.search.sample import Categorical, Float, Integer

from framework.config.hydra_defaults import register_defaults
from framework.errors import ConfigError
from framework.tuning.space import parse_space
from tests.helpers import CONF


@pytest.fixture(scope="module")
def loader() -> Any:
    register_defaults()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        yield GlobalHydra.instance().config_loader()


def test_choice_range_interval_and_log_tags(loader: Any) -> None:
    space = parse_space(
        [
            "model.n_estimators=range(50,300,50)",
            "model.max_depth=choice(4,8,16)",
            "model.min_samples_leaf=tag(int, interval(1,5))",
            "model.max_features=tag(log, interval(0.1, 1.0))",
            "train.seed=7",
        ],
        {},
        loader,
    )
    assert space.fixed == ["train.seed=7"]
    params = {p.key: p for p in space.params}
    assert params["model.n_estimators"].values == [50, 100, 150, 200, 250]
    assert params["model.max_depth"].values == [4, 8, 16]
    assert params["model.min_samples_leaf"].integer and not params["model.min_samples_leaf"].log
    assert params["model.max_features"].log and not params["model.max_features"].integer
    tune_space = space.to_tune(grid=False)
    assert isinstance(tune_space["model.n_estimators"], Categorical)
    assert isinstance(tune_space["model.min_samples_leaf"], Integer)
    assert isinstance(tune_space["model.max_features"], Float)
    assert tune_space["model.max_features"].lower == 0.1


def test_group_choice_is_a_group_param(loader: Any) -> None:
    space = parse_space(["model=logistic_regression,random_forest"], {}, loader)
    (param,) = space.params
    assert param.group and param.values == ["logistic_regression", "random_forest"]
    assert space.to_tune(grid=True) == {"model": {"grid_search": param.values}}


def test_yaml_params_are_read_and_the_command_line_wins(loader: Any) -> None:
    space = parse_space(
        ["model.C=0.5,1.0"],
        {"model.C": "tag(log, interval(0.01, 10))", "model.max_iter": "choice(100, 200)"},
        loader,
    )
    params = {p.key: p for p in space.params}
    assert params["model.C"].values == [0.5, 1.0]
    assert params["model.max_iter"].values == [100, 200]


def test_bad_sweep_syntax_is_a_config_error(loader: Any) -> None:
    with pytest.raises(ConfigError) as info:
        parse_space(["model.C=interval(0.1"], {}, loader)
    assert info.value.problems[0].startswith("model.C=interval(0.1:")
    assert "sweep syntax" in (info.value.hint or "")


def test_grid_search_refuses_intervals(loader: Any) -> None:
    space = parse_space(["model.C=interval(0.1,1)"], {}, loader)
    with pytest.raises(ConfigError, match="grid search cannot sample interval"):
        space.to_tune(grid=True)
