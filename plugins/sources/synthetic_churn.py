"""A generated customer-churn table with numeric, categorical, id and sensitive columns.

Nothing ships with scikit-learn that has categorical features, so this source generates one,
deterministically from a seed, for experiments and tests that need categories.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field, PositiveInt

from framework.config.data import SourceConfig
from framework.registry import sources

if TYPE_CHECKING:
    import pandas as pd


class SyntheticChurnConfig(SourceConfig):
    type: Literal["synthetic_churn"] = "synthetic_churn"
    rows: PositiveInt = Field(2000, description="Number of customers to generate.")
    seed: int = Field(0, description="Seed of the generator.")
    churn_rate: float = Field(0.25, gt=0, lt=1, description="Approximate share of churners.")


@sources.register("synthetic_churn", config=SyntheticChurnConfig)
class SyntheticChurnSource:
    """Customers with age, income, tenure, plan, contract, region; target ``churn`` (yes/no)."""

    def __init__(self, config: SyntheticChurnConfig):
        self.config = config

    def load(self) -> pd.DataFrame:
        import pandas as pd  # imported when data loads, not when plugins load

        rng = np.random.default_rng(self.config.seed)
        n = self.config.rows
        age = rng.integers(18, 85, n)
        income = rng.lognormal(10.8, 0.45, n).round(2)
        tenure = rng.integers(0, 120, n)
        plan = rng.choice(["basic", "plus", "pro"], n, p=[0.55, 0.3, 0.15])
        contract = rng.choice(["monthly", "yearly"], n, p=[0.6, 0.4])
        region = rng.choice(["north", "south", "east", "west"], n)
        support_calls = rng.poisson(1.5, n)
        logit = (
            -0.03 * tenure
            + 0.45 * support_calls
            + np.where(contract == "monthly", 1.2, -0.6)
            + np.where(plan == "basic", 0.4, np.where(plan == "pro", -0.5, 0.0))
            - 0.015 * (age - 45)
            - 0.3 * (np.log(income) - 10.8)
        )
        logit += np.log(self.config.churn_rate / (1 - self.config.churn_rate)) - np.median(logit)
        churn = rng.random(n) < 1 / (1 + np.exp(-(logit + rng.normal(0, 0.5, n))))
        frame = pd.DataFrame(
            {
                "customer_id": np.arange(1, n + 1),
                "age": age,
                "income": income,
                "tenure_months": tenure,
                "support_calls": support_calls,
                "plan": plan,
                "contract": contract,
                "region": region,
                "churn": np.where(churn, "yes", "no"),
            }
        )
        if self.config.limit_rows is not None:
            frame = frame.head(self.config.limit_rows)
        return frame
