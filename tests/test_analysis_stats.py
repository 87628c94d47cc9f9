"""Bootstrap confidence intervals, IQM and curve bands over seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.stats import bootstrap_ci, curve_band, iqm, summarize


def test_iqm_is_the_mean_of_the_middle_half():
    assert iqm([1, 2, 3, 4, 5, 6, 7, 100]) == pytest.approx(np.mean([3, 4, 5, 6]))
    assert iqm([3.0, 1.0, 2.0]) == pytest.approx(2.0)  # fewer than 4 values: the mean
    # One diverged seed barely moves the IQM but drags the mean.
    seeds = [0.61, 0.58, 0.63, 0.60, 0.59, 0.0]
    assert abs(iqm(seeds) - 0.6) < 0.02 < abs(np.mean(seeds) - 0.6)
    np.testing.assert_allclose(iqm(np.array([[1, 2, 3, 4], [4, 3, 2, 10]]), axis=1), [2.5, 3.5])


def test_bootstrap_ci_contains_the_mean():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.normal(0.5, 0.2, size=6)
        lo, hi = bootstrap_ci(x, seed=1, n_resamples=2_000)
        assert lo <= x.mean() <= hi and lo < hi


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


def test_bootstrap_ci_of_degenerate_samples():
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    lo, hi = bootstrap_ci([0.7, 0.7, 0.7])
    assert lo == pytest.approx(0.7) and hi == pytest.approx(0.7)
    with pytest.raises(ValueError, match="unknown statistic"):
        bootstrap_ci([1.0, 2.0], statistic="median")


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
    empty = summarize([])
    assert empty.n == 0 and math.isnan(empty.mean)
