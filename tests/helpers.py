"""Helpers shared by the test suites."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from framework import config
from framework.config.hydra_defaults import register_defaults

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
EXPERIMENTS = ROOT / "experiments"


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """Compose conf/config.yaml with overrides, as `python -m framework` would."""
    register_defaults()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides or [])


def load_config(overrides: list[str] | None = None) -> config.RootConfig:
    return config.load(compose_config(overrides))


def problems(overrides: list[str]) -> list[str]:
    """The problems a bad config reports (fails the test if it validates)."""
    from framework.errors import ConfigError

    try:
        load_config(overrides)
    except ConfigError as exc:
        return exc.problems
    raise AssertionError(f"config with {overrides} validated, expected problems")


def small_frame(rows: int = 240, seed: int = 0) -> Any:
    """A small classification table with numeric, categorical, sensitive and id columns."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows)
    income = rng.normal(50_000, 15_000, rows).round(2)
    plan = rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2])
    region = rng.choice(["north", "south"], rows)
    score = (income - 50_000) / 15_000 + (plan == "pro") * 1.5 - (age - 50) / 30
    churn = np.where(score + rng.normal(0, 0.5, rows) > 0.3, "yes", "no")
    return pd.DataFrame(
        {
            "customer_id": np.arange(rows),
            "age": age,
            "income": income,
            "plan": plan,
            "region": region,
            "churn": churn,
        }
    )


SMALL_SCHEMA = {
    "customer_id": {"dtype": "int", "role": "id"},
    "age": {"dtype": "int", "min": 0, "max": 120},
    "income": {"dtype": "float", "min": 0},
    "plan": {"dtype": "category", "categories": ["basic", "plus", "pro"]},
    "region": {"dtype": "category", "role": "sensitive"},
    "churn": {"dtype": "category", "role": "target", "nullable": False},
}
