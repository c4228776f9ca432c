"""Two-sample tests for numeric features (``monitor.drift.numeric_test``)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from framework.config.base import StrictModel
from framework.registry import drift_tests


class KsConfig(StrictModel):
    type: Literal["ks"] = "ks"


@drift_tests.register("ks", config=KsConfig)
class KolmogorovSmirnov:
    """scipy.stats.ks_2samp: the largest gap between the two empirical distributions."""

    kind = "numeric"

    @staticmethod
    def test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
        from scipy import stats  # imported when a check runs, not when plugins load

        # The exact p-value costs O(n*m); past a few hundred rows on each side the asymptotic
        # one agrees with it to many digits.
        method = "asymp" if min(len(reference), len(current)) >= 200 else "auto"
        result = stats.ks_2samp(reference, current, method=method)
        return float(result.statistic), float(result.pvalue)


class CramerVonMisesConfig(StrictModel):
    type: Literal["cramervonmises"] = "cramervonmises"


@drift_tests.register("cramervonmises", config=CramerVonMisesConfig)
class CramerVonMises:
    """scipy.stats.cramervonmises_2samp: the squared gap integrated over the whole range."""

    kind = "numeric"

    @staticmethod
    def test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
        from scipy import stats  # imported when a check runs, not when plugins load

        result = stats.cramervonmises_2samp(reference, current, method="asymptotic")
        return float(result.statistic), float(result.pvalue)
