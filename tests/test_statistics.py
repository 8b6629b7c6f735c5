"""shapo_jax.statistics against textbook values, SciPy and exact small-sample enumerations."""

import itertools

import numpy as np
import pytest
from scipy import stats

from shapo_jax.statistics import bootstrap_difference_interval, compare, mean_interval, spread, welch_t_test

# Welch's t-test, Wikipedia "Welch's t-test", example 1: t = -2.46, df = 24.9, p = 0.021 for A1 - A2.
A1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
A2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]


def test_welch_matches_the_textbook_example():
    result = welch_t_test(A2, A1)  # mean(A1) - mean(A2)
    assert round(result.statistic, 2) == -2.46
    assert abs(result.df - 24.9) < 0.1  # 24.99; the page gives 24.9
    assert round(result.p_value, 3) == 0.021


# scipy.stats.ttest_ind(b, a, equal_var=False) on these samples, written down (scipy 1.17.1).
SCIPY_CASES = [
    ([0.345584, 0.821618, 0.330437, -1.303157, 0.905356, 0.446375, -0.536953],
     [2.743354, 2.093717, 1.882397, 1.085267, 2.640139, -1.209362, 0.51127, -0.446358, 2.796539, 1.119166, 0.12263,
      -1.345725],
     1.63164213, 16.9467754, 0.121196909),
    ([1.0, 2.0], [4.0, 9.0], 1.96116135, 1.07987220, 0.285636323),
]


@pytest.mark.parametrize("a,b,t,df,p", SCIPY_CASES)
def test_welch_matches_scipy_values(a, b, t, df, p):
    result = welch_t_test(a, b)
    np.testing.assert_allclose([result.statistic, result.df, result.p_value], [t, df, p], rtol=1e-7)


@pytest.mark.parametrize("seed", range(5))
def test_welch_matches_scipy_on_random_samples(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 1.0, rng.integers(2, 20))
    b = rng.normal(rng.normal(), rng.uniform(0.1, 5.0), rng.integers(2, 20))
    want = stats.ttest_ind(b, a, equal_var=False)
    got = welch_t_test(a, b)
    np.testing.assert_allclose([got.statistic, got.df, got.p_value], [want.statistic, want.df, want.pvalue], rtol=1e-9)
    assert welch_t_test(b, a).p_value == pytest.approx(got.p_value) and welch_t_test(b, a).statistic == -got.statistic


def test_welch_degenerate_samples_take_the_limit():
    assert welch_t_test([1.0, 1.0], [1.0, 1.0]).p_value == 1.0
    constant = welch_t_test([1.0, 1.0], [2.0, 2.0])
    assert constant.p_value == 0.0 and constant.statistic == np.inf
    with pytest.raises(ValueError, match="at least 2"):
        welch_t_test([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        welch_t_test([1.0, np.nan], [1.0, 2.0])


def exact_bootstrap_quantiles(a, b, levels):
    """Quantiles of the bootstrap distribution of mean(b*) - mean(a*), by enumerating every resample."""
    means_a = [np.mean(r) for r in itertools.product(a, repeat=len(a))]
    means_b = [np.mean(r) for r in itertools.product(b, repeat=len(b))]
    differences = np.sort(np.subtract.outer(means_b, means_a).ravel())
    cdf = np.arange(1, differences.size + 1) / differences.size
    return [differences[np.searchsorted(cdf, level)] for level in levels]


@pytest.mark.parametrize("a,b", [([0.0, 1.0], [3.0, 7.0]), ([1.0, 2.0, 4.0], [0.5, 3.0, 3.5])])
def test_bootstrap_interval_matches_the_exact_enumeration(a, b):
    low, high = bootstrap_difference_interval(a, b, resamples=20_000)
    want_low, want_high = exact_bootstrap_quantiles(a, b, [0.025, 0.975])
    # the Monte Carlo quantile may fall on the atom next to the exact one
    step = (max(b) - min(b) + max(a) - min(a)) / len(a)
    assert abs(low - want_low) <= step / 2 + 1e-12 and abs(high - want_high) <= step / 2 + 1e-12
    if len(a) == 2:  # the extreme atoms carry 1/16 > 2.5%: the interval is the range of differences
        assert (low, high) == (min(b) - max(a), max(b) - min(a))


def test_bootstrap_interval_matches_scipy_and_normal_theory():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.0, 1.0, 20), rng.normal(1.0, 2.0, 25)
    low, high = bootstrap_difference_interval(a, b, resamples=20_000)
    want = stats.bootstrap((a, b), lambda x, y: y.mean() - x.mean(), method="percentile", n_resamples=20_000,
                           vectorized=False, random_state=0).confidence_interval
    standard_error = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    np.testing.assert_allclose([low, high], [want.low, want.high], atol=0.05 * standard_error)
    centre = b.mean() - a.mean()
    np.testing.assert_allclose([low, high], [centre - 1.96 * standard_error, centre + 1.96 * standard_error],
                               atol=0.15 * standard_error)


def test_bootstrap_interval_is_deterministic_and_exact_for_constants():
    a, b = [1.0, 2.0, 3.0], [2.0, 5.0, 4.0]
    assert bootstrap_difference_interval(a, b) == bootstrap_difference_interval(a, b)
    x, y = np.random.default_rng(0).normal(size=(2, 10))
    assert bootstrap_difference_interval(x, y, seed=1) != bootstrap_difference_interval(x, y)
    assert bootstrap_difference_interval([1.0, 1.0], [3.0, 3.0, 3.0]) == (2.0, 2.0)
    low, high = bootstrap_difference_interval(a, b)
    assert low <= np.mean(b) - np.mean(a) <= high


def test_mean_interval_uses_the_t_quantile():
    values = np.array([[0.0, 1.0], [2.0, 5.0]])  # two seeds, two points of a curve
    mean, low, high = mean_interval(values)
    half = 12.706205 * values.std(axis=0, ddof=1) / np.sqrt(2)  # t_{0.975, 1}
    np.testing.assert_allclose(mean, [1.0, 3.0])
    np.testing.assert_allclose(high - mean, half, rtol=1e-6)
    np.testing.assert_allclose(mean - low, half, rtol=1e-6)
    _, low5, high5 = mean_interval(np.arange(5.0))
    assert (high5 - low5) / 2 == pytest.approx(2.776445 * np.std(np.arange(5.0), ddof=1) / np.sqrt(5), rel=1e-6)
    single = mean_interval([[4.0, 2.0]])
    np.testing.assert_array_equal(single[1], [4.0, 2.0])


def test_spread_and_compare_are_json_ready():
    assert spread([1.0, 3.0]) == {"mean": 2.0, "std": pytest.approx(np.sqrt(2.0)), "per_seed": [1.0, 3.0]}
    result = compare([1.0, 2.0, 3.0], [2.0, 5.0, 4.0])
    assert set(result) == {"mean", "ci95", "p_value", "t", "df"}
    assert result["mean"] == pytest.approx(5.0 / 3.0)
    assert result["ci95"][0] <= result["mean"] <= result["ci95"][1] and 0 <= result["p_value"] <= 1
