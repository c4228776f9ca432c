"""Config of the ``train/`` group: how a model is fitted, checked and registered."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt

from framework.config.base import StrictModel


class ParityConfig(StrictModel):
    """Agreement required between ONNX Runtime and the in-memory pipeline on the test split."""

    min_label_agreement: float = Field(
        0.999, gt=0, le=1, description="Share of test rows whose ONNX label must match."
    )
    atol: PositiveFloat = Field(
        1e-4, description="Largest allowed absolute difference of probabilities or values."
    )
    rtol: float = Field(1e-4, ge=0, description="Relative tolerance for regression values.")


class DistributedConfig(StrictModel):
    """How torch models train on Ray Train (``TorchTrainer``)."""

    workers: PositiveInt = Field(1, description="Ray Train workers (data-parallel).")
    cpus_per_worker: PositiveFloat = Field(1.0, description="CPUs reserved per worker.")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_SPREAD"] = Field(
        "PACK",
        description="Where Ray places the workers: PACK on as few nodes as fit, SPREAD over "
        "nodes where it can, STRICT_SPREAD each on its own node (fails with fewer nodes).",
    )
    device: Literal["cpu", "cuda", "auto"] = Field(
        "cpu", description="cpu, cuda (a GPU per worker), or auto (cuda when Ray has GPUs)."
    )
    storage_path: str = Field(
        "train_runs",
        description="Where Ray Train writes checkpoints (shared storage on a cluster).",
    )
    run_name: str | None = Field(
        None,
        description="Ray Train run name; default: derived from data and model config, so "
        "rerunning an interrupted run resumes from its last checkpoint.",
    )
    resume: bool = Field(True, description="Resume a run of the same name from its checkpoint.")
    checkpoint_every: PositiveInt = Field(
        5,
        description="Epochs between checkpoints (and metric reports); each one waits for Ray "
        "Train's controller (about 2 s) and writes to storage_path.",
    )
    max_failures: int = Field(
        0, ge=-1, description="Worker failures Ray Train recovers from (-1: no limit)."
    )


class OodConfig(StrictModel):
    """The out-of-distribution detector registered with each version (numeric features)."""

    enabled: bool = Field(True, description="Fit the detector and register detector.onnx.")
    quantile: float = Field(0.995, gt=0, le=1, description="Quantile of the training distances ...")
    margin: PositiveFloat = Field(
        1.5, description="... times this margin is the threshold past which a row is flagged."
    )
    max_rows: PositiveInt = Field(5000, description="Training rows the detector is fitted on.")


class RobustnessConfig(StrictModel):
    """The robustness figures in the model card, measured on the ONNX model at training."""

    enabled: bool = Field(True, description="Measure robustness before registration.")
    epsilon: PositiveFloat = Field(
        0.1,
        description="Bound of the perturbations, in standard deviations of each numeric "
        "feature (uniform noise per feature; the attack's L-infinity budget).",
    )
    rows: PositiveInt = Field(200, description="Test rows the random perturbations use.")
    attack_rows: PositiveInt = Field(20, description="Test rows the black-box attack tries.")
    attack_iterations: PositiveInt = Field(5, description="HopSkipJump iterations per row.")
    attack_evaluations: PositiveInt = Field(
        100, description="Most model queries per gradient estimate of HopSkipJump."
    )


class TrainConfig(StrictModel):
    """How a model is trained, exported and registered."""

    seed: int = Field(42, description="Seed passed to the model (random_state).")
    num_cpus: PositiveFloat = Field(1.0, description="CPUs reserved for the Ray task that fits.")
    onnx_threads: PositiveInt = Field(1, description="ONNX Runtime intra-op threads.")
    latency_runs: PositiveInt = Field(200, description="Single-row predictions timed.")
    parity: ParityConfig = Field(default_factory=ParityConfig)
    ood: OodConfig = Field(default_factory=OodConfig)
    robustness: RobustnessConfig = Field(default_factory=RobustnessConfig)
    dry_run: bool = Field(False, description="Train, evaluate and check, but do not register.")
    reproduce_tolerance: float = Field(
        1e-6,
        ge=0,
        description="task=reproduce: largest difference of a metric or a predicted score that "
        "still counts as the same.",
    )
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    alias: Literal["auto", "champion", "challenger", "none"] = Field(
        "auto",
        description="Alias for the new version; auto: champion if none exists, else challenger.",
    )
