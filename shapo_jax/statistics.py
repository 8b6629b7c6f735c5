"""Comparing two sets of seeds: Welch's t-test, a bootstrap interval, a t interval of a mean.

Small, pure NumPy functions over per-seed numbers (one value per seed), so that a claim like
"SHAPO pays less cost while learning than the base algorithm" comes with its uncertainty:
the difference of the means with a 95% percentile-bootstrap interval, and the two-sided p-value
of Welch's unequal-variance t-test. Only ``scipy.special`` (a dependency of JAX) is used, for
the regularised incomplete beta function and the Student t quantile.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import special


class WelchResult(NamedTuple):
    """Welch's t-test of ``mean(b) - mean(a)``: the statistic, its degrees of freedom, the
    two-sided p-value."""

    statistic: float
    df: float
    p_value: float


def _sample(values, name: str) -> np.ndarray:
    array = np.asarray(values, np.float64).reshape(-1)
    if array.size < 2:
        raise ValueError(f"{name}: needs at least 2 values, got {array.size}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: values must be finite")
    return array


def welch_t_test(a, b) -> WelchResult:
    """Welch's t-test of the difference of means ``mean(b) - mean(a)`` (Welch 1947).

    ``t = (mean_b - mean_a) / sqrt(s_a^2/n_a + s_b^2/n_b)`` with Welch-Satterthwaite degrees of
    freedom ``df = (v_a + v_b)^2 / (v_a^2/(n_a-1) + v_b^2/(n_b-1))``, ``v = s^2/n``; the
    two-sided p-value is ``P(|T_df| >= |t|) = I_{df/(df+t^2)}(df/2, 1/2)``, the regularised
    incomplete beta function (Abramowitz and Stegun 26.7.1). Equals
    ``scipy.stats.ttest_ind(b, a, equal_var=False)``.

    When both samples are constant (no variance) the test degenerates; its limit is used: p = 1
    if the means are equal, else p = 0 (with ``t = 0`` or ``+-inf`` and ``df = nan``).

    Args:
      a: per-seed values of the first arm (at least 2).
      b: per-seed values of the second arm (at least 2).
    """
    a, b = _sample(a, "a"), _sample(b, "b")
    var_a, var_b = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    difference = float(b.mean() - a.mean())
    standard_error2 = var_a + var_b
    if standard_error2 == 0:
        if difference == 0:
            return WelchResult(0.0, math.nan, 1.0)
        return WelchResult(math.copysign(math.inf, difference), math.nan, 0.0)
    t = difference / math.sqrt(standard_error2)
    df = standard_error2**2 / (var_a**2 / (a.size - 1) + var_b**2 / (b.size - 1))
    p = float(special.betainc(df / 2.0, 0.5, df / (df + t * t)))
    return WelchResult(float(t), float(df), min(max(p, 0.0), 1.0))


def bootstrap_difference_interval(a, b, confidence: float = 0.95, resamples: int = 10_000,
                                  seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``mean(b) - mean(a)`` (Efron and Tibshirani 1993, 13.3).

    Each arm is resampled with replacement on its own (the arms are independent sets of
    seeds), ``resamples`` times, with a fixed seed so the same numbers give the same interval;
    the interval is the ``(1 - confidence)/2`` and ``(1 + confidence)/2`` quantiles of the
    resampled differences. With few seeds per arm (fewer than ~8) the interval is too narrow:
    it cannot reach beyond the values seen.
    """
    a, b = _sample(a, "a"), _sample(b, "b")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    rng = np.random.default_rng(seed)
    mean_a = a[rng.integers(0, a.size, (resamples, a.size))].mean(axis=1)
    mean_b = b[rng.integers(0, b.size, (resamples, b.size))].mean(axis=1)
    low, high = np.quantile(mean_b - mean_a, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def mean_interval(values, confidence: float = 0.95, axis: int = 0):
    """The mean over ``axis`` and its Student t interval ``mean -+ t_{n-1} s / sqrt(n)``.

    Returns (mean, low, high), each reduced over ``axis``. With one value the interval is the
    value itself. This is the band of a learning curve over seeds: with few seeds the t quantile
    (12.7 for 2 seeds) is much wider than the normal 1.96.
    """
    values = np.asarray(values, np.float64)
    n = values.shape[axis]
    mean = values.mean(axis=axis)
    if n < 2:
        return mean, mean.copy(), mean.copy()
    quantile = special.stdtrit(n - 1, (1 + confidence) / 2)
    half_width = quantile * values.std(axis=axis, ddof=1) / math.sqrt(n)
    return mean, mean - half_width, mean + half_width


def spread(values) -> dict:
    """Mean, sample standard deviation (ddof 1; 0 for one value) and the values themselves."""
    array = np.asarray(values, np.float64).reshape(-1)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if array.size > 1 else 0.0,
            "per_seed": [float(x) for x in array]}


def compare(a, b, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> dict:
    """``mean(b) - mean(a)`` with its bootstrap interval and Welch's p-value, as JSON-ready numbers."""
    low, high = bootstrap_difference_interval(a, b, confidence, resamples, seed)
    welch = welch_t_test(a, b)
    return {"mean": float(np.mean(b) - np.mean(a)), f"ci{round(confidence * 100)}": [low, high],
            "p_value": welch.p_value, "t": welch.statistic, "df": welch.df}
