"""The agent-throughput benchmark times only the stretch where the learner trains alongside."""

from __future__ import annotations

import pytest

from benchmarks.bench_trainer import steady_steps_per_s


def test_window_starts_once_the_first_episode_reached_the_learner():
    agents = {
        "0": {"intervals": [[0.0, 10.0, 500], [10.0, 15.0, 500], [15.0, 20.0, 500]]},
        "1": {"intervals": [[1.0, 12.0, 500], [12.0, 16.0, 400]]},
    }
    # the first episode ends at t=10: the window holds the episodes started at 10, 12 and 15
    assert steady_steps_per_s(agents) == pytest.approx((500 + 400 + 500) / (20.0 - 10.0))


def test_a_run_with_one_round_is_refused():
    with pytest.raises(RuntimeError, match="raise ROUNDS"):
        steady_steps_per_s({"0": {"intervals": [[0.0, 10.0, 500], [0.5, 11.0, 500]]}})
