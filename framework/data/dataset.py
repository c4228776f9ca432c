"""``Dataset``: a validated frame with its schema, and its split into train/validation/test."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from framework.config.data import DataConfig
from framework.data.noise import NoiseReport
from framework.data.validation import ValidationReport


@dataclass
class Dataset:
    """Rows that passed the schema checks, with the config that declares their schema."""

    frame: pd.DataFrame
    config: DataConfig
    report: ValidationReport
    noise: NoiseReport | None = None
    #: Set when the rows were streamed in chunks: ``frame`` is then only a sample and the
    #: fingerprint was computed chunk by chunk over every row.
    digest: str | None = None
    #: The reference profile computed while streaming (exact counts, sampled quantiles).
    profile: dict | None = None

    @property
    def fingerprint(self) -> str:
        """sha256 over the content of every row and the declared schema."""
        return self.digest or fingerprint(self.frame, self.config)


@dataclass
class Splits:
    """Stratified train/validation/test parts of one Dataset."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    #: Rows per split when the parts are samples of larger streamed splits.
    counts: dict[str, int] | None = None

    def sizes(self) -> dict[str, int]:
        if self.counts is not None:
            return dict(self.counts)
        return {
            "train": len(self.train),
            "validation": len(self.validation),
            "test": len(self.test),
        }


def fingerprint(frame: pd.DataFrame, data: DataConfig) -> str:
    digest = hashlib.sha256()
    schema = {name: spec.model_dump() for name, spec in data.columns.items()}
    digest.update(json.dumps(schema, sort_keys=True).encode())
    digest.update(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def split(dataset: Dataset, classification: bool) -> Splits:
    """Split with the declared fractions and seed; stratify on the target for classifiers."""
    cfg = dataset.config.split
    frame = dataset.frame
    target = dataset.config.target

    def strat(part: pd.DataFrame) -> pd.Series | None:
        if not (classification and cfg.stratify):
            return None
        counts = part[target].value_counts()
        return part[target] if counts.min() >= 2 else None

    rest, test = train_test_split(
        frame, test_size=cfg.test_size, random_state=cfg.seed, stratify=strat(frame)
    )
    if cfg.validation_size > 0:
        share = cfg.validation_size / (1 - cfg.test_size)
        train, validation = train_test_split(
            rest, test_size=share, random_state=cfg.seed, stratify=strat(rest)
        )
    else:
        train, validation = rest, rest.iloc[0:0]
    return Splits(*(p.reset_index(drop=True) for p in (train, validation, test)))


def oversample(train: pd.DataFrame, target: str, seed: int) -> pd.DataFrame:
    """Random oversampling of every minority class up to the majority count."""
    from imblearn.over_sampling import RandomOverSampler

    sampler = RandomOverSampler(random_state=seed)
    index = np.arange(len(train)).reshape(-1, 1)
    resampled, _ = sampler.fit_resample(index, train[target].astype(str))
    return train.iloc[resampled.ravel()].reset_index(drop=True)
