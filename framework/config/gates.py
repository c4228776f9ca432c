"""``gates``: what a new version must meet to be registered (fairness) or served (champion)."""

from __future__ import annotations

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from framework.config.base import StrictModel


class FairnessGate(StrictModel):
    """Per-group limits for every ``sensitive`` column (Fairlearn ``MetricFrame``)."""

    enabled: bool = Field(True, description="Check the sensitive columns (if the data has any).")
    max_demographic_parity_difference: NonNegativeFloat | None = Field(
        0.2, description="Largest gap in positive-prediction rate between groups (null: off)."
    )
    min_demographic_parity_ratio: NonNegativeFloat | None = Field(
        None, description="Smallest ratio of positive-prediction rates, e.g. 0.8 (null: off)."
    )
    max_equalized_odds_difference: NonNegativeFloat | None = Field(
        0.2, description="Largest gap in true- or false-positive rate between groups (null: off)."
    )
    max_error_gap: NonNegativeFloat | None = Field(
        None,
        description="Regression: largest gap in mean absolute error between groups, as a "
        "fraction of the overall MAE (null: off).",
    )
    alpha: float = Field(
        0.05,
        gt=0,
        le=1,
        description="A gap breaches its limit only if a test of equal rates across groups "
        "rejects at this level (1: the point estimate alone decides).",
    )
    min_group_rows: PositiveInt = Field(
        30, description="Groups with fewer test rows get bootstrap intervals and are not gated."
    )
    bootstrap: PositiveInt = Field(200, description="Bootstrap resamples for small groups.")
    positive_label: str | None = Field(
        None, description="The favourable class (default: the second class in sorted order)."
    )


class ChampionGate(StrictModel):
    """A new version becomes challenger only within these margins of the champion."""

    enabled: bool = Field(True, description="Compare with the champion before aliasing.")
    max_quality_drop: NonNegativeFloat = Field(
        0.02,
        description="Largest drop of the main metric (f1_macro; regression: rise of RMSE as a "
        "fraction of the champion's).",
    )
    max_worst_group_drop: NonNegativeFloat = Field(
        0.05, description="Largest drop of the worst sensitive group's main metric."
    )
    max_latency_ratio: PositiveFloat = Field(
        3.0, description="Largest single-row p50 latency relative to the champion's."
    )
    max_size_ratio: PositiveFloat = Field(
        10.0, description="Largest model file size relative to the champion's."
    )


class GatesConfig(StrictModel):
    """Gates a new version passes before registration or an alias."""

    fairness: FairnessGate = Field(default_factory=FairnessGate)
    champion: ChampionGate = Field(default_factory=ChampionGate)
