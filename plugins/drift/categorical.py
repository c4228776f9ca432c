"""Tests of two frequency tables for categorical features (``monitor.drift.categorical_test``)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from framework.config.base import StrictModel
from framework.registry import drift_tests


class Chi2Config(StrictModel):
    type: Literal["chi2"] = "chi2"


@drift_tests.register("chi2", config=Chi2Config)
class ChiSquare:
    """scipy.stats.chi2_contingency on the 2 x k table of reference and current counts."""

    kind = "categorical"

    @staticmethod
    def test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
        from scipy import stats  # imported when a check runs, not when plugins load

        result = stats.chi2_contingency(np.vstack([reference, current]))
        return float(result.statistic), float(result.pvalue)


class GTestConfig(StrictModel):
    type: Literal["g_test"] = "g_test"


@drift_tests.register("g_test", config=GTestConfig)
class GTest:
    """The log-likelihood ratio (G) test on the same table (chi2_contingency, lambda_=log)."""

    kind = "categorical"

    @staticmethod
    def test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
        from scipy import stats  # imported when a check runs, not when plugins load

        result = stats.chi2_contingency(np.vstack([reference, current]), lambda_="log-likelihood")
        return float(result.statistic), float(result.pvalue)
