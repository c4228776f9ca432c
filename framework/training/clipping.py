"""Outlier clipping as a fitted pipeline step, so serving clips exactly as training did."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data


class OutlierClipper(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Clip each column to fences fitted on the training data (IQR or z-score rule)."""

    def __init__(self, method: Literal["iqr", "zscore"] = "iqr", k: float = 3.0):
        self.method = method
        self.k = k

    def fit(self, X: Any, y: Any = None) -> OutlierClipper:
        values = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        if self.method == "iqr":
            q1, q3 = np.nanpercentile(values, [25, 75], axis=0)
            spread = q3 - q1
            self.lower_, self.upper_ = q1 - self.k * spread, q3 + self.k * spread
        elif self.method == "zscore":
            mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
            self.lower_, self.upper_ = mean - self.k * std, mean + self.k * std
        else:
            raise ValueError(f"method must be 'iqr' or 'zscore', got {self.method!r}")
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, ["lower_", "upper_"])
        values = validate_data(
            self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=False
        )
        return np.clip(values, self.lower_, self.upper_)
