import numpy as np
import pytest

from dqt.core.learning.bins import bin_width, to_bins, to_continuous


@pytest.mark.parametrize("k", [2, 3, 11, 256])
def test_ends_are_exact(k):
    ends = to_continuous(np.array([0, k - 1]), k)
    assert ends[0] == -1.0 and ends[1] == 1.0
    assert to_bins(np.array([-1.0, 1.0]), k).tolist() == [0, k - 1]


def test_middle_bin_is_zero_for_odd_k():
    assert to_continuous(np.array([5]), 11)[0] == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("k", [11, 256])
def test_round_trip_within_half_a_bin(k):
    a = np.random.default_rng(0).uniform(-1, 1, size=(1000, 4))
    back = to_continuous(to_bins(a, k), k)
    assert np.abs(back - a).max() <= bin_width(k) / 2 + 1e-6


def test_bins_round_trip_exactly_and_clip():
    k = 256
    b = np.arange(k)
    assert (to_bins(to_continuous(b, k), k) == b).all()
    assert to_bins(np.array([-3.0, 7.0]), k).tolist() == [0, k - 1]
