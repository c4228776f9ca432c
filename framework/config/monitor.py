"""Config of the ``monitor/`` group: drift detection, live quality, rollout policy, retraining."""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from framework.config.base import StrictModel


class DriftConfig(StrictModel):
    """When a feature counts as drifted: a corrected significance test AND an effect size.

    A plain test at p < 0.05 over many features flags some unchanged ones by chance, and on
    large windows it flags shifts too small to matter; PSI alone at the customary 0.1 misses a
    0.3-standard-deviation shift. So a feature is flagged only when both hold: the test's
    p-value, corrected for the number of features tested, is under ``alpha``, and PSI is at
    least ``min_psi``.
    """

    numeric_test: str = Field(
        "ks",
        description="Drift test plugin for numeric features: ks (scipy.stats.ks_2samp), "
        "cramervonmises.",
    )
    categorical_test: str = Field(
        "chi2",
        description="Drift test plugin for categorical features: chi2 "
        "(scipy.stats.chi2_contingency), g_test.",
    )
    alpha: float = Field(0.01, gt=0, lt=1, description="Family-wise significance level.")
    correction: Literal["bonferroni", "holm", "fdr_bh", "none"] = Field(
        "holm", description="Multiple-testing correction over the features tested together."
    )
    min_psi: NonNegativeFloat = Field(
        0.02, description="Smallest population stability index that counts as drift."
    )
    psi_bins: PositiveInt = Field(10, ge=2, description="Quantile bins of the reference for PSI.")
    min_missing_change: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Smallest change of a feature's missing share (against the reference) that "
        "counts as drift, when a test of the two shares also rejects at alpha.",
    )
    max_repaired_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="task=monitor: a feature whose values the data checks repaired (set "
        "missing) for more than this share of rows is flagged, with the checks' reason.",
    )
    max_drifted_share: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Drift is reported (non-zero exit of task=monitor) when more than this "
        "share of the features drifted; 0: any drifted feature.",
    )
    include_prediction: bool = Field(
        True, description="Also test the distribution of predictions against the training target."
    )

    @field_validator("numeric_test", "categorical_test")
    @classmethod
    def _registered(cls, name: str, info: ValidationInfo) -> str:
        from framework import registry

        kind = "numeric" if info.field_name == "numeric_test" else "categorical"
        names = [e.name for e in registry.drift_tests if e.impl.kind == kind]
        if name not in names:
            message = f"unknown {kind} drift test {name!r}; valid: {', '.join(names)}"
            suggestion = registry.closest(name, names)
            raise ValueError(message + (f"; did you mean {suggestion!r}?" if suggestion else ""))
        return name

    reference_rows: PositiveInt = Field(
        20_000, description="Rows of the training split stored with a model as its drift reference."
    )


class WindowConfig(StrictModel):
    """The live windows the serving monitor keeps."""

    rows: PositiveInt = Field(2_000, description="Newest rows kept for the live drift check.")
    min_rows: PositiveInt = Field(200, description="Fewest rows before drift is reported.")
    check_every_s: PositiveFloat = Field(5.0, description="How often drift is recomputed.")
    labels: PositiveInt = Field(1_000, description="Newest labelled rows per version for quality.")
    min_labels: PositiveInt = Field(
        30, description="Fewest labels before a version's live quality is reported."
    )
    tracked_predictions: PositiveInt = Field(
        200_000, description="Predictions remembered by id, waiting for their label."
    )
    pending_label_s: PositiveFloat = Field(
        30.0, description="How long a label for a not-yet-seen id waits for its prediction."
    )
    pending_labels: PositiveInt = Field(
        10_000,
        description="Most labels waiting for their prediction; the oldest are dropped past it "
        "(counted in framework_feedback_labels_dropped_total).",
    )


class MarginsConfig(StrictModel):
    """How much worse than the champion a challenger may be before it is rolled back."""

    error_rate: NonNegativeFloat = Field(
        0.01,
        description="Most extra share of the version's own failed predictions (server "
        "errors) than the champion; a client's 4xx never counts.",
    )
    p99_latency_ratio: PositiveFloat = Field(
        2.0, description="Challenger p99 latency may be at most this multiple of the champion's."
    )
    p99_latency_floor_ms: NonNegativeFloat = Field(
        20.0, description="Latency differences under this many ms never break the margin."
    )
    quality: NonNegativeFloat = Field(
        0.05,
        description="Most drop in accuracy (classification) or rise in MAE, relative to the "
        "champion's MAE (regression), on live labels.",
    )


class RolloutConfig(StrictModel):
    """Champion/challenger routing and the policy that ramps a challenger up or rolls it back."""

    enabled: bool = Field(True, description="Run the policy; false: weights only move by hand.")
    steps: list[float] = Field(
        default_factory=lambda: [0.1, 0.25, 0.5, 1.0],
        description="Challenger traffic shares, in order; passing the last step promotes it.",
    )
    min_requests_per_step: PositiveInt = Field(
        200, description="Challenger requests needed at a step before it may move on."
    )
    require_labels: bool = Field(
        True, description="Also need `window.min_labels` labels for both versions at a step."
    )
    auto_promote: bool = Field(
        True, description="Promote after the last step; false: hold there for a manual promote."
    )
    auto_rollback: bool = Field(True, description="Roll back by itself when a margin breaks.")
    margins: MarginsConfig = Field(default_factory=MarginsConfig)
    sticky_header: str = Field(
        "x-customer-id",
        description="Request header whose value keeps one caller on one version (missing: "
        "the request id decides).",
    )
    shadow_alias: str = Field(
        "shadow", description="Registry alias mirrored off the request path; never answers."
    )

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[float]) -> list[float]:
        if not steps:
            raise ValueError("needs at least one step")
        if any(not 0 < s <= 1 for s in steps):
            raise ValueError(f"every step must lie in (0, 1]; got {steps}")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(f"steps must increase; got {steps}")
        return steps


class RetrainConfig(StrictModel):
    """The retraining loop: drift or quality past threshold starts a training run."""

    enabled: bool = Field(False, description="Off by default.")
    triggers: list[Literal["drift", "quality"]] = Field(
        default_factory=lambda: ["drift", "quality"], description="What may start a run."
    )
    min_accuracy: float | None = Field(
        None, ge=0, le=1, description="Live champion accuracy under this starts a run."
    )
    mode: Literal["retrain", "update"] = Field(
        "retrain",
        description="retrain: train a new version from scratch (task=train); update: continue "
        "the champion on the declared data (task=update, models with partial_fit).",
    )
    overrides: list[str] = Field(
        default_factory=list,
        description="Hydra overrides of the training run (the declared data, e.g. "
        "`data.source.path=/data/latest.csv`); the new version enters as challenger.",
    )
    cooldown_s: PositiveFloat = Field(3600.0, description="Least time between two runs.")
    timeout_s: PositiveFloat = Field(3600.0, description="A run taking longer is stopped.")


class MonitorConfig(StrictModel):
    """Monitoring of the serving application and of batches of new data."""

    enabled: bool = Field(True, description="Record requests off the request path and monitor.")
    sample_rate: float = Field(
        1.0, gt=0, le=1, description="Share of requests whose rows go to the drift window."
    )
    flush_interval_s: PositiveFloat = Field(
        1.0, description="How often a replica hands its records to the monitor."
    )
    routing_poll_s: PositiveFloat = Field(
        1.0, description="How often replicas ask the monitor which versions to serve."
    )
    registry_poll_s: PositiveFloat = Field(
        1.0, description="How often the monitor reads the registry aliases (task=promote etc.)."
    )
    verify_every_s: PositiveFloat = Field(
        30.0,
        description="How often the monitor verifies the served versions' files, manifests and "
        "the audit log again (a version an alias moves to is verified at once).",
    )
    persist_state: bool = Field(
        True,
        description="Write the monitor's state (rollout step, windows, prediction ids, "
        "traffic) to the registry folder, so a restarted monitor goes on where it stopped.",
    )
    state_every_s: PositiveFloat = Field(
        2.0, description="How often the state is written when something changed."
    )
    drift: DriftConfig = Field(default_factory=DriftConfig)
    window: WindowConfig = Field(default_factory=WindowConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    data_path: str | None = Field(
        None,
        description="task=monitor: a CSV or Parquet file of new rows to check (default: the "
        "data/ source, after its noise block).",
    )
    report_dir: str = Field(
        "monitor_reports", description="Folder task=monitor writes its JSON and HTML report to."
    )

    @model_validator(mode="after")
    def _windows(self) -> MonitorConfig:
        if self.window.min_rows > self.window.rows:
            raise ValueError(
                f"window.min_rows ({self.window.min_rows}) must be <= window.rows "
                f"({self.window.rows})"
            )
        if self.window.min_labels > self.window.labels:
            raise ValueError(
                f"window.min_labels ({self.window.min_labels}) must be <= window.labels "
                f"({self.window.labels})"
            )
        return self
