import math

import numpy as np
import pytest

from dqt.core.config import NoiseConfig
from dqt.core.noise import RewardNoise, robust_estimate


def make(rng_seed=0, **kw):
    return RewardNoise(NoiseConfig(**kw), np.random.default_rng(rng_seed))


def test_no_noise_is_identity():
    r = np.array([0.5, 2.0, -1.0])
    assert np.array_equal(make()(r), r.astype(np.float32))


def test_gaussian_noise_moments():
    out = make(mean=2.0, std=3.0)(np.zeros(200_000))
    assert out.mean() == pytest.approx(2.0, abs=0.03)
    assert out.std() == pytest.approx(3.0, rel=0.01)


def test_student_t_is_scaled_to_std():
    out = make(kind="student-t", df=5.0, std=2.0)(np.zeros(400_000))
    assert out.std() == pytest.approx(2.0, rel=0.03)
    # Heavier tails than a Gaussian of the same std: excess kurtosis of t(5) is 6.
    z = out / out.std()
    assert (z**4).mean() - 3 > 2


def test_median_spread_matches_theory_and_keeps_the_mean_shift():
    # The median of M N(mu, 1) draws has std ~ sqrt(pi / (2M)) (asymptotic efficiency of the median).
    m, mu = 100, 10.0
    est = make(seed := 1, mean=mu, std=1.0, robust="median", samples=m)(np.full(20_000, 3.0))
    assert seed == 1
    assert est.std() == pytest.approx(math.sqrt(math.pi / (2 * m)), rel=0.15)
    # The paper's finding: the median does not remove a mean shift, its bias stays mu.
    assert est.mean() - 3.0 == pytest.approx(mu, abs=0.01)


def test_mean_estimator_spread_is_one_over_sqrt_m():
    est = make(std=1.0, robust="mean", samples=100)(np.zeros(20_000))
    assert est.std() == pytest.approx(0.1, rel=0.05)


def test_robust_estimate_hand_values():
    draws = np.array([[1.0, 2.0, 3.0, 100.0, -50.0, 4.0, 5.0, 6.0, 7.0, 8.0]])
    cfg = NoiseConfig(trim_fraction=0.1)
    assert robust_estimate(draws, "median", cfg)[0] == 4.5
    assert robust_estimate(draws, "mean", cfg)[0] == pytest.approx(8.6)
    # trim 10% of 10 = 1 from each end: drop -50 and 100 -> mean of 1..8 = 4.5
    assert robust_estimate(draws, "trimmed-mean", cfg)[0] == 4.5
