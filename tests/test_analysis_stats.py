"""Bootstrap confidence intervals (scipy, BCa or percentile), IQM and curve bands over seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dqt.analysis.stats import bootstrap_ci, ci_method, curve_band, iqm, statistic_fn, summarize


def scipy_ci(x, method: str, statistic: str = "mean", seed: int = 0, n_resamples: int = 10_000):
    """scipy.stats.bootstrap called directly, as `bootstrap_ci` should call it."""
    res = stats.bootstrap((np.asarray(x, dtype=float),), statistic_fn(statistic), method=method,
                          n_resamples=n_resamples, rng=np.random.default_rng(seed))
    return tuple(float(v) for v in res.confidence_interval)


def test_iqm_is_the_mean_of_the_middle_half():
    # By hand: 8 values, 2 cut from each end, the mean of 3, 4, 5, 6.
    assert iqm([1, 2, 3, 4, 5, 6, 7, 100]) == 4.5 == stats.trim_mean([1, 2, 3, 4, 5, 6, 7, 100], 0.25)
    assert iqm([3.0, 1.0, 2.0]) == pytest.approx(2.0)  # fewer than 4 values: nothing cut, the mean
    assert iqm([10, 0, 1, 2, 3]) == pytest.approx(2.0)  # 5 values: floor(5 / 4) = 1 cut from each end
    # One diverged seed barely moves the IQM but drags the mean.
    seeds = [0.61, 0.58, 0.63, 0.60, 0.59, 0.0]
    assert abs(iqm(seeds) - 0.6) < 0.02 < abs(np.mean(seeds) - 0.6)
    np.testing.assert_allclose(iqm(np.array([[1, 2, 3, 4], [4, 3, 2, 10]]), axis=1), [2.5, 3.5])
    np.testing.assert_allclose(iqm(np.array([[1, 4], [2, 3], [3, 2], [4, 10]]), axis=0), [2.5, 3.5])


def test_bca_for_three_or_more_values_that_are_not_all_equal():
    skewed = [0.0, 0.05, 0.1, 0.1, 0.2, 0.9]  # six seeds, one far out: BCa and percentile differ
    assert ci_method(skewed) == "BCa"
    assert bootstrap_ci(skewed, seed=3) == pytest.approx(scipy_ci(skewed, "BCa", seed=3))
    assert bootstrap_ci(skewed, seed=3) != pytest.approx(scipy_ci(skewed, "percentile", seed=3))
    assert bootstrap_ci(skewed, statistic="iqm", seed=3) == pytest.approx(
        scipy_ci(skewed, "BCa", statistic="iqm", seed=3))
    assert ci_method([0.5, 0.5, 1.0]) == "BCa"


def test_percentile_for_two_values_or_all_equal_values():
    assert ci_method([0.5, 1.0]) == ci_method([0.7, 0.7, 0.7]) == "percentile"
    assert ci_method([0.4]) is None and ci_method([]) is None
    # Two seeds: resampled means are 0.5, 0.75, 1.0 with probability 1/4, 1/2, 1/4, so the
    # 2.5 % and 97.5 % quantiles are the two values.
    assert bootstrap_ci([0.5, 1.0]) == pytest.approx((0.5, 1.0))
    assert bootstrap_ci([0.5, 1.0], seed=5) == pytest.approx(scipy_ci([0.5, 1.0], "percentile", seed=5))
    # Equal values: a zero-width interval -- the spread was measured, and it is nil.
    assert bootstrap_ci([0.7, 0.7, 0.7]) == pytest.approx((0.7, 0.7))
    assert bootstrap_ci([0.4, 0.4], statistic="iqm") == pytest.approx((0.4, 0.4))


def test_bca_that_scipy_cannot_compute_falls_back_to_the_percentile_interval():
    # Every leave-one-out IQM of these is 1: BCa's acceleration is 0 / 0, scipy gives NaN.
    x = [0.0, 1.0, 1.0, 1.0, 1.0, 2.0]
    with pytest.warns(stats.DegenerateDataWarning), np.errstate(invalid="ignore"):
        assert all(math.isnan(v) for v in scipy_ci(x, "BCa", statistic="iqm"))
    lo, hi = bootstrap_ci(x, statistic="iqm")
    assert (lo, hi) == pytest.approx(scipy_ci(x, "percentile", statistic="iqm"))
    assert lo < 1.0 < hi


def test_bootstrap_ci_contains_the_mean():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.normal(0.5, 0.2, size=6)
        lo, hi = bootstrap_ci(x, seed=1, n_resamples=2_000)
        assert lo <= x.mean() <= hi and lo < hi
        lo, hi = bootstrap_ci(x, statistic="iqm", seed=1, n_resamples=2_000)
        assert lo <= iqm(x) <= hi and lo < hi


def test_bootstrap_ci_narrows_with_more_seeds():
    rng = np.random.default_rng(42)
    population = rng.normal(0.5, 0.2, size=10_000)
    widths = {}
    for n in (4, 16, 64):
        lo, hi = bootstrap_ci(population[:n], seed=7, n_resamples=4_000)
        widths[n] = hi - lo
    assert widths[4] > widths[16] > widths[64]
    # Roughly the 1/sqrt(n) law: 16x the seeds, about a quarter of the width.
    assert 0.1 < widths[64] / widths[4] < 0.5


def test_bootstrap_ci_is_reproducible_with_a_seed():
    x = np.random.default_rng(0).uniform(size=12)
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    # Another seed gives another (but close) interval: the seed is really used.
    assert bootstrap_ci(x, seed=3, n_resamples=500) != bootstrap_ci(x, seed=4, n_resamples=500)
    assert bootstrap_ci(x, statistic="iqm", seed=3) == bootstrap_ci(x, statistic="iqm", seed=3)
    curves = np.random.default_rng(1).uniform(size=(5, 7))
    for a, b in zip(curve_band(curves, seed=2), curve_band(curves, seed=2), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bootstrap_ci_of_degenerate_samples_and_bad_input():
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    with pytest.raises(ValueError, match="unknown statistic"):
        bootstrap_ci([1.0, 2.0], statistic="median")
    with pytest.raises(ValueError, match="unknown statistic"):
        bootstrap_ci([], statistic="median")


def test_confidence_level_widens_the_interval():
    x = np.random.default_rng(5).normal(size=10)
    lo90, hi90 = bootstrap_ci(x, confidence=0.90, seed=0)
    lo99, hi99 = bootstrap_ci(x, confidence=0.99, seed=0)
    assert lo99 < lo90 and hi90 < hi99


def test_curve_band_is_pointwise():
    curves = np.array([[0.0, 0.5, 1.0], [0.0, 0.7, 1.0], [0.0, 0.6, 0.8]])
    center, lo, hi = curve_band(curves, seed=0)
    np.testing.assert_allclose(center, curves.mean(axis=0))
    assert lo[0] == hi[0] == 0.0  # no spread, no band
    assert lo[1] < center[1] < hi[1]
    assert np.all(lo <= center) and np.all(center <= hi)
    # Each grid point's interval is the scalar CI of that column (the same resamples of runs).
    wide = np.random.default_rng(3).uniform(size=(6, 4))
    wide[:, 0] = 0.3
    for statistic in ("mean", "iqm"):
        _, lo, hi = curve_band(wide, statistic=statistic, seed=2)
        for j in range(wide.shape[1]):
            got = bootstrap_ci(wide[:, j], statistic=statistic, n_resamples=1_000, seed=2)
            assert (lo[j], hi[j]) == pytest.approx(got)


def test_a_single_seed_has_no_confidence_interval():
    # One seed: nothing to resample, so no CI at all -- not the degenerate [v, v].
    for statistic in ("mean", "iqm"):
        lo, hi = bootstrap_ci([0.4], statistic=statistic)
        assert math.isnan(lo) and math.isnan(hi)
    s = summarize([0.4])
    assert s.n == 1 and s.mean == pytest.approx(0.4) and s.iqm == pytest.approx(0.4)
    assert all(math.isnan(v) for v in (s.ci_low, s.ci_high, s.iqm_ci_low, s.iqm_ci_high))
    center, lo, hi = curve_band(np.array([[0.0, 0.5, 1.0]]))
    np.testing.assert_array_equal(center, [0.0, 0.5, 1.0])
    assert np.isnan(lo).all() and np.isnan(hi).all()
    # Two equal seeds do have a (zero-width) CI: the spread was measured, and it is nil.
    assert bootstrap_ci([0.4, 0.4]) == pytest.approx((0.4, 0.4))


def test_summarize_reports_mean_iqm_and_their_cis():
    s = summarize([0.2, 0.4, 0.6, 0.8], n_resamples=2_000)
    assert s.n == 4 and s.mean == pytest.approx(0.5) and s.iqm == pytest.approx(0.5)
    assert s.ci_low < 0.5 < s.ci_high and s.iqm_ci_low < 0.5 < s.iqm_ci_high
    assert (s.ci_low, s.ci_high) == bootstrap_ci([0.2, 0.4, 0.6, 0.8], n_resamples=2_000)
    empty = summarize([])
    assert empty.n == 0 and math.isnan(empty.mean)
