"""Config of the ``data/`` group: source, schema, checks, cleaning, noise, balance, split."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from framework.config.base import PluginConfig, StrictModel

Dtype = Literal["float", "int", "bool", "category", "string"]
Role = Literal["feature", "target", "id", "sensitive"]


class ColumnSpec(StrictModel):
    """One column of the declared schema."""

    dtype: Dtype = Field("float", description="Value type of the column.")
    role: Role = Field("feature", description="What the column is used for.")
    nullable: bool = Field(True, description="Whether missing values are allowed.")
    min: float | None = Field(None, description="Smallest allowed value (numeric columns).")
    max: float | None = Field(None, description="Largest allowed value (numeric columns).")
    categories: list[str] | None = Field(
        None, description="Allowed values (category columns); others fail the category check."
    )
    description: str = Field("", description="What the column means, for the model card.")

    @model_validator(mode="after")
    def _consistent(self) -> ColumnSpec:
        numeric = self.dtype in ("float", "int")
        if (self.min is not None or self.max is not None) and not numeric:
            raise ValueError(f"min/max are only allowed for numeric dtypes, not {self.dtype!r}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must be <= max ({self.max})")
        if self.categories is not None and self.dtype != "category":
            raise ValueError(
                f"categories are only allowed for dtype 'category', not {self.dtype!r}"
            )
        if self.dtype == "string" and self.role in ("feature", "target"):
            raise ValueError(f"a {self.role} column cannot have dtype 'string'; use 'category'")
        return self

    @property
    def numeric(self) -> bool:
        return self.dtype in ("float", "int", "bool")


class Policy(StrEnum):
    """What to do with rows that fail a check."""

    fail = "fail"
    drop = "drop"
    repair = "repair"


class OutlierCheck(StrictModel):
    """Declared rule that flags outliers in numeric feature columns of the training data."""

    method: Literal["iqr", "zscore", "none"] = Field("iqr", description="Outlier rule.")
    iqr_k: PositiveFloat = Field(1.5, description="Fence = quartile -/+ iqr_k * IQR.")
    zscore_threshold: PositiveFloat = Field(3.0, description="|z| above this is an outlier.")
    action: Literal["flag", "fail", "drop", "repair"] = Field(
        "flag",
        description="flag: report only (the pipeline clips); repair: clip to the fences now.",
    )


class ChecksConfig(StrictModel):
    """Policies for each data check."""

    type: Policy = Field(Policy.repair, description="Unparseable values; repair sets missing.")
    missing: Policy = Field(
        Policy.repair,
        description="Nulls in non-nullable columns; repair leaves them to imputation.",
    )
    range: Policy = Field(Policy.repair, description="Values outside [min, max].")
    range_repair: Literal["clip", "null"] = Field(
        "clip", description="How `range: repair` repairs: clip to the bound or set missing."
    )
    category: Policy = Field(Policy.repair, description="Values outside the declared categories.")
    outliers: OutlierCheck = Field(default_factory=OutlierCheck)
    missing_tokens: list[str] = Field(
        default_factory=lambda: ["", "NaN", "nan", "NA", "N/A", "n/a", "null", "NULL", "None", "?"],
        description="Strings read as missing values.",
    )
    max_examples: PositiveInt = Field(5, description="Example rows kept per failure kind.")


GuardPolicy = Literal["off", "flag", "drop", "fail"]


class GuardsConfig(StrictModel):
    """Poisoning and leakage guards, run on the checked data before and after the split.

    Each guard has a policy: ``flag`` reports (validation report and model card), ``drop``
    removes the rows it names, ``fail`` stops training with exit 3. They run on in-memory
    data; a chunked source (``source.chunk_rows``) is reported as not guarded."""

    duplicates: GuardPolicy = Field(
        "drop", description="Rows whose features and label repeat another row's exactly."
    )
    near_duplicates: GuardPolicy = Field(
        "flag",
        description="Rows within `near_tolerance` of another row (drop keeps the first).",
    )
    near_tolerance: PositiveFloat = Field(
        0.01,
        description="Near duplicate: root mean square difference of the standardized numeric "
        "features below this, categorical features equal.",
    )
    leakage: GuardPolicy = Field(
        "drop",
        description="Validation or test rows that duplicate (exactly or nearly) a training row; "
        "drop removes them from validation and test.",
    )
    label_errors: GuardPolicy = Field(
        "flag",
        description="Suspected label errors by confident learning (cleanlab) on out-of-fold "
        "predicted probabilities; drop removes them from the training split (classification).",
    )
    label_error_folds: int = Field(5, ge=2, le=20, description="Folds of the out-of-fold model.")
    label_error_max_share: float = Field(
        0.05,
        ge=0,
        le=1,
        description="`fail` stops when more than this share of rows is suspected.",
    )
    label_shift: GuardPolicy = Field(
        "flag",
        description="The label distribution moved against the previous version's (the "
        "champion, else the latest); drop is not meaningful and acts as flag.",
    )
    label_shift_max: PositiveFloat = Field(
        0.1,
        description="Largest allowed shift: total variation distance of the class shares, or "
        "(regression) the change of the mean in the previous standard deviations.",
    )
    max_rows: PositiveInt = Field(
        200_000,
        description="Near duplicates and label errors are checked on at most this many rows.",
    )


class CleaningConfig(StrictModel):
    """The cleaning steps fitted as part of the model pipeline."""

    numeric_imputation: Literal["mean", "median", "most_frequent", "constant"] = Field(
        "median", description="How missing numeric values are filled."
    )
    numeric_fill_value: float = Field(0.0, description="Fill value for `constant` imputation.")
    categorical_imputation: Literal["most_frequent", "constant"] = Field(
        "constant",
        description="most_frequent: fill with the commonest category; constant: missing is a "
        "category of its own.",
    )
    outliers: Literal["none", "iqr", "zscore"] = Field(
        "iqr", description="Clip numeric features to fences fitted on the training split."
    )
    iqr_k: PositiveFloat = Field(3.0, description="Clip fences at quartile -/+ iqr_k * IQR.")
    zscore_threshold: PositiveFloat = Field(4.0, description="Clip at mean -/+ threshold * std.")
    encoding: Literal["onehot", "ordinal"] = Field("onehot", description="Categorical encoding.")
    scaling: Literal["standard", "minmax", "robust", "none"] = Field(
        "standard", description="Scaling of numeric features."
    )


class LabelBiasConfig(StrictModel):
    """Rows of one group (``column == group``) whose label is set to ``label`` at ``rate``."""

    column: str = Field(description="The column that defines the group, e.g. a sensitive one.")
    group: str = Field(description="The group whose labels are biased.")
    label: str = Field(description="The class those labels are set to.")
    rate: float = Field(0.4, gt=0, le=1, description="Share of the group's rows changed.")


class NoiseConfig(StrictModel):
    """Production-noise simulator applied to the source data before any check."""

    enabled: bool = Field(False, description="Inject noise into the loaded data.")
    seed: int = Field(0, description="Seed of the noise generator.")
    missing_rate: float = Field(0.0, ge=0, lt=1, description="Share of feature values set missing.")
    nan_string_rate: float = Field(
        0.0, ge=0, lt=1, description="Share of feature values replaced by the string 'NaN'."
    )
    outlier_rate: float = Field(0.0, ge=0, lt=1, description="Share of values made outliers.")
    outlier_scale: PositiveFloat = Field(
        10.0, description="Outliers are moved this many standard deviations from the mean."
    )
    label_missing_rate: float = Field(
        0.0, ge=0, lt=1, description="Share of rows whose target label is lost."
    )
    imbalance_ratio: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Downsample the minority class to this minority/majority ratio.",
    )
    minority_class: str | None = Field(None, description="Class to downsample (default: rarest).")
    columns: list[str] | None = Field(None, description="Columns to corrupt (default: features).")
    shift_columns: list[str] = Field(
        default_factory=list, description="Drift: numeric columns moved by `shift_std`."
    )
    shift_std: float = Field(
        1.0, description="How far the shifted columns move, in their standard deviations."
    )
    label_shuffle: bool = Field(
        False, description="Shuffle the target across rows (a model trained on it is useless)."
    )
    label_bias: LabelBiasConfig | None = Field(
        None, description="Historical bias: one group's labels pushed towards one class."
    )
    label_flip_rate: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Share of rows whose label is changed to another class at random "
        "(poisoned or careless labelling).",
    )
    duplicate_rate: float = Field(
        0.0, ge=0, lt=1, description="Share of rows added again as exact copies."
    )


class BalanceConfig(StrictModel):
    """Handling of class imbalance on the training split."""

    method: Literal["none", "oversample", "class_weight"] = Field(
        "none", description="Random oversampling of minority classes, or balanced class weights."
    )
    seed: int = Field(0, description="Seed of the oversampler.")


class SplitConfig(StrictModel):
    """Train/validation/test split."""

    test_size: float = Field(0.2, gt=0, lt=1, description="Share of rows held out for testing.")
    validation_size: float = Field(0.1, ge=0, lt=1, description="Share of rows for validation.")
    stratify: bool = Field(True, description="Stratify on the target (classification).")
    seed: int = Field(42, description="Seed of the split.")

    @model_validator(mode="after")
    def _fractions(self) -> SplitConfig:
        total = self.test_size + self.validation_size
        if total >= 0.9:
            raise ValueError(
                f"test_size ({self.test_size}) + validation_size ({self.validation_size}) "
                f"= {total:.2f} leaves too little to train on; it must be < 0.9"
            )
        return self


class SourceConfig(PluginConfig):
    """Base for source plugin configs."""

    limit_rows: NonNegativeInt | None = Field(None, description="Read at most this many rows.")
    chunk_rows: PositiveInt | None = Field(
        None,
        description="Read and check the data in chunks of this many rows, never all at once: "
        "training then streams over the chunks (a model with partial_fit) and keeps only "
        "bounded samples (data.stream). Unset: the whole table is loaded.",
    )


class StreamConfig(StrictModel):
    """Bounded samples kept while training streams over chunks (``source.chunk_rows`` set)."""

    sample_rows: PositiveInt = Field(
        100_000,
        description="Uniform sample of training rows (reservoir) the cleaning statistics "
        "(imputation, clipping fences, scaling, encoding), the reference profile's quantiles "
        "and the drift reference are fitted on.",
    )
    holdout_rows: PositiveInt = Field(
        50_000,
        description="At most this many validation and test rows each (uniform samples) are "
        "kept for evaluation and the gates.",
    )


class DataConfig(StrictModel):
    """A data set: where it comes from, its schema and how it is prepared."""

    name: str = Field(description="Name of the data set; also the default registered model name.")
    source: SourceConfig = Field(description="Where the rows come from (a source plugin).")
    columns: dict[str, ColumnSpec] = Field(
        description="The declared schema: every column with dtype, role and constraints."
    )
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    guards: GuardsConfig = Field(default_factory=GuardsConfig)
    cleaning: CleaningConfig = Field(default_factory=CleaningConfig)
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    balance: BalanceConfig = Field(default_factory=BalanceConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    stream: StreamConfig = Field(default_factory=StreamConfig)

    @model_validator(mode="after")
    def _roles(self) -> DataConfig:
        targets = [n for n, c in self.columns.items() if c.role == "target"]
        if len(targets) != 1:
            raise ValueError(
                f"columns must declare exactly one column with role 'target'; found "
                f"{len(targets)}" + (f" ({', '.join(targets)})" if targets else "")
            )
        if not any(c.role == "feature" for c in self.columns.values()):
            raise ValueError("columns must declare at least one column with role 'feature'")
        if self.noise.columns:
            unknown = sorted(set(self.noise.columns) - set(self.columns))
            if unknown:
                raise ValueError(f"noise.columns names undeclared columns: {', '.join(unknown)}")
        for column in self.noise.shift_columns:
            spec = self.columns.get(column)
            if spec is None or not spec.numeric:
                raise ValueError(
                    f"noise.shift_columns: {column!r} is not a numeric column; numeric columns: "
                    + ", ".join(c for c, s in self.columns.items() if s.numeric)
                )
        return self

    @property
    def target(self) -> str:
        return next(n for n, c in self.columns.items() if c.role == "target")

    @property
    def features(self) -> list[str]:
        return [n for n, c in self.columns.items() if c.role == "feature"]

    @property
    def numeric_features(self) -> list[str]:
        return [n for n in self.features if self.columns[n].numeric]

    @property
    def categorical_features(self) -> list[str]:
        return [n for n in self.features if not self.columns[n].numeric]

    @property
    def sensitive(self) -> list[str]:
        return [n for n, c in self.columns.items() if c.role == "sensitive"]
