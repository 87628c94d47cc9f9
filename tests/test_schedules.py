import math

import pytest

from dqt.core.config import ConfigError
from dqt.core.learning.schedules import epsilon, lr_multiplier

T = 300_000


def closed_form(name, t, n):
    # DQT section 4.2, written out independently of dqt.core.learning.schedules.
    if name == "linear":
        return 1 - t / T
    if name == "log-curve":
        return 1 - t / T if n == 1 else 1 / (1 + math.log(n) * t / T)
    if name == "linear-log-n":
        return max(1 - t / T, 0) if n == 1 else max(1 - math.log(n) * t / T, 3e-5)
    if name == "linear-n":
        return max(1 - n * t / T, 0)
    return 1.0


@pytest.mark.parametrize("name", ["constant", "linear", "log-curve", "linear-log-n", "linear-n"])
@pytest.mark.parametrize("n", [1, 4, 7, 11])
@pytest.mark.parametrize("t", [0, T // 2, T])
def test_lr_schedules_match_closed_form(name, n, t):
    assert lr_multiplier(name, t, T, n) == pytest.approx(closed_form(name, t, n), rel=1e-12, abs=1e-15)


def test_lr_schedule_hand_values():
    # Spot values computed by hand: ln(4) = 1.386294..., so at T/2 log-curve = 1 / 1.693147.
    assert lr_multiplier("log-curve", T // 2, T, 4) == pytest.approx(0.590616, rel=1e-5)
    assert lr_multiplier("linear-log-n", T, T, 7) == 3e-5  # 1 - ln 7 < 0: the floor
    assert lr_multiplier("linear-n", T // 2, T, 4) == 0.0
    assert lr_multiplier("linear-n", T // 8, T, 4) == pytest.approx(0.5)
    assert lr_multiplier("linear", T // 2, T, 11) == pytest.approx(0.5)


def test_unknown_lr_schedule():
    with pytest.raises(ConfigError, match="unknown LR schedule 'cosine'"):
        lr_multiplier("cosine", 0, T, 1)


def test_epsilon_decay_eq2():
    assert epsilon(0, 1.0, 0.01, 1000) == 1.0
    assert epsilon(500, 1.0, 0.01, 1000) == pytest.approx(0.5)
    assert epsilon(990, 1.0, 0.01, 1000) == pytest.approx(0.01)
    assert epsilon(5000, 1.0, 0.01, 1000) == 0.01
