"""Config composition and validation: every shipped YAML validates; bad configs say why."""

from __future__ import annotations

import pytest

from framework import registry
from framework.config import RootConfig
from tests.helpers import CONF, EXPERIMENTS, load_config, problems


def _compatible(group: str, option: str) -> list[str]:
    """Overrides that select ``group=option`` with options that fit it."""
    overrides = [f"{group}={option}"]
    if group == "model" and registry.models.get(option).impl.task == "regression":
        overrides.append("data=diabetes")
    if group == "data" and option == "diabetes":
        overrides.append("model=ridge")
    return overrides


GROUP_OPTIONS = sorted(
    (path.parent.name, path.stem)
    for path in CONF.glob("*/*.yaml")
    if path.parent.name != "experiment"
)


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_every_group_option_composes_and_validates(group: str, option: str) -> None:
    cfg = load_config(_compatible(group, option))
    assert isinstance(cfg, RootConfig)


@pytest.mark.parametrize("name", sorted(p.stem for p in EXPERIMENTS.glob("*.yaml")))
def test_every_experiment_composes_and_validates(name: str) -> None:
    cfg = load_config([f"+experiment={name}"])
    assert isinstance(cfg, RootConfig)


def test_default_config_is_the_noisy_breast_cancer_random_forest() -> None:
    cfg = load_config()
    assert cfg.task == "train"
    assert cfg.data.source.type == "sklearn_dataset"
    assert cfg.data.noise.enabled
    assert cfg.model.type == "random_forest"
    assert cfg.ray.address is None and cfg.ray.num_cpus == 2


def test_pydantic_defaults_can_be_overridden_by_name() -> None:
    cfg = load_config(["train.onnx_threads=2", "data.split.seed=7", "data.cleaning.scaling=robust"])
    assert cfg.train.onnx_threads == 2
    assert cfg.data.split.seed == 7
    assert cfg.data.cleaning.scaling == "robust"


def test_experiment_overrides_groups_and_values() -> None:
    cfg = load_config(["+experiment=wine_gradient_boosting"])
    assert cfg.data.name == "wine"
    assert cfg.model.type == "gradient_boosting"
    assert cfg.model.n_estimators == 50  # type: ignore[attr-defined]
    assert cfg.data.balance.method == "class_weight"


BAD = [
    # (overrides, expected line)
    (["model.n_estimators=-5"], "model.n_estimators: got -5; expected an integer > 0"),
    (["model.n_estimators=abc"], "model.n_estimators: got 'abc'; expected an integer"),
    (
        ["+model.n_estimatorz=5"],
        "model.n_estimatorz: unknown key; valid keys here: max_depth, max_features, "
        "min_samples_leaf, n_estimators, n_jobs, type; did you mean 'n_estimators'?",
    ),
    (
        ["model.type=randm_forest"],
        "model.type: unknown plugin 'randm_forest'; valid: gradient_boosting, "
        "logistic_regression, mlp, random_forest, random_forest_regressor, ridge, "
        "sgd_classifier, sgd_regressor, torch_mlp, torch_mlp_regressor; did you mean "
        "'random_forest'?",
    ),
    (
        ["data.source.name=breast_cancr"],
        "data.source.name: got 'breast_cancr'; expected one of: breast_cancer, iris, wine, "
        "diabetes; did you mean 'breast_cancer'?",
    ),
    (
        ["data.split.test_size=0.5", "data.split.validation_size=0.45"],
        "data.split: test_size (0.5) + validation_size (0.45) = 0.95 leaves too little to "
        "train on; it must be < 0.9",
    ),
    (
        ["+data.columns.mean_radius.max=-1"],
        "data.columns.mean_radius: min (0.0) must be <= max (-1.0)",
    ),
    (
        ["data.columns.target.role=feature"],
        "data: columns must declare exactly one column with role 'target'; found 0",
    ),
    (
        ["model=ridge"],
        "model.type: 'ridge' is a regressor but the target column 'target' has dtype "
        "'category'; use a classifier or a numeric target",
    ),
    (["data.source.type=csv"], "data.source.path: missing required value"),
    (["~data.source.name"], "data.source.name: missing required value"),
    (
        ["data.checks.range=ignore"],
        "data.checks.range: got 'ignore'; expected one of: fail, drop, repair",
    ),
    (
        ["task=scor"],
        "task: got 'scor'; expected one of: train, registry, serve, build_serve_config, "
        "api_key, monitor, promote, rollback, explain, card, reproduce, update, score, init, "
        "pipeline, init_ci; did you mean 'score'?",
    ),
    (
        ["+trian.seed=1"],
        "trian: unknown key; valid keys here: card, data, explain, gates, kuberay, model, "
        "monitor, optimize, pipeline, ray, score, security, serve, store, target, task, train, "
        "tune, verify, version; did you mean 'train'?",
    ),
    (["data.noise.missing_rate=1.5"], "data.noise.missing_rate: got 1.5; expected a number < 1"),
    (["pipeline.infra.p99_ms=0"], "pipeline.infra.p99_ms: got 0; expected a number > 0"),
    (["version=0"], "version: got 0; expected an integer > 0"),
    (
        ["ray.address=auto", "ray.object_store_memory_mb=100"],
        "ray: object_store_memory_mb applies only to a local instance (address: null/local)",
    ),
    (["train.seed=1.5"], "train.seed: got 1.5; expected an integer"),
    (
        ["tune.cpus_per_trial=4", "ray.address=local"],
        "tune.cpus_per_trial: 4.0 CPUs per trial cannot be scheduled on a local Ray instance "
        "of ray.num_cpus=2",
    ),
    (
        ["tune.metric=accuracy"],
        "tune: metric 'accuracy' must name a validation metric, e.g. 'validation.f1_macro' or "
        "'validation.rmse' (the test split stays held out)",
    ),
]


@pytest.mark.parametrize(("overrides", "expected"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_config_names_path_given_and_expected(overrides: list[str], expected: str) -> None:
    assert expected in problems(overrides)


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        ["model.n_estimators=-5", "ray.num_cpus=0", "+train.sed=1", "data.split.test_size=2"]
    )
    assert len(found) == 4, found
    assert {line.split(":")[0] for line in found} == {
        "model.n_estimators",
        "ray.num_cpus",
        "train.sed",
        "data.split.test_size",
    }


def test_missing_value_marker_is_reported_with_other_problems() -> None:
    found = problems(["data.source.type=csv", "model.max_depth=0"])
    assert "data.source.path: missing required value" in found
    assert "model.max_depth: got 0; expected an integer > 0" in found
