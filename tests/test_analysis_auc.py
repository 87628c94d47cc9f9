"""Success AUC: analytic values, the common grid, and invariance to re-gridding."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.auc import auc_per_run, auc_table, common_range, normalized_auc, resample, union_grid
from analysis.load import ExperimentRuns, configurations


@pytest.mark.parametrize("level", [0.0, 0.37, 1.0])
def test_constant_curve_has_its_level_as_auc(level):
    steps = np.array([10_000, 20_000, 35_000, 50_000])
    assert normalized_auc(steps, np.full(4, level)) == pytest.approx(level)


def test_linear_ramp_from_zero_to_one_has_auc_one_half():
    steps = np.linspace(0, 300_000, 31)
    assert normalized_auc(steps, steps / 300_000) == pytest.approx(0.5)
    assert normalized_auc([0, 300_000], [0, 1]) == pytest.approx(0.5)  # two points suffice


def test_step_function_sampled_on_a_grid_integrates_its_piecewise_linear_interpolant():
    # Success jumps from 0 to 1 at 50k; sampled every 10k the last 0 is at 40k and the first
    # 1 at 50k, so the curve ramps over [40k, 50k]: area 0.5 * 10k + 50k over a 100k range.
    steps = np.arange(0, 100_001, 10_000)
    values = (steps >= 50_000).astype(float)
    assert normalized_auc(steps, values) == pytest.approx(0.55)
    # Sampled finer the ramp shrinks and the AUC tends to the true step function's 0.5.
    fine = np.arange(0, 100_001, 100)
    assert normalized_auc(fine, (fine >= 50_000).astype(float)) == pytest.approx(0.5005)


def test_auc_is_normalised_by_the_step_range_not_the_origin():
    assert normalized_auc([100_000, 200_000], [1.0, 1.0]) == pytest.approx(1.0)
    assert normalized_auc([200_000, 100_000], [1.0, 0.0]) == pytest.approx(0.5)  # unsorted input


def test_degenerate_curves():
    assert math.isnan(normalized_auc([], []))
    assert normalized_auc([5_000], [0.4]) == pytest.approx(0.4)


def test_regridding_a_piecewise_linear_curve_keeps_its_auc():
    rng = np.random.default_rng(3)
    steps = np.sort(rng.choice(np.arange(0, 200_001, 1_000), size=12, replace=False)).astype(float)
    values = rng.uniform(0, 1, size=12)
    original = normalized_auc(steps, values)
    # Any grid holding the original knots: the union with another run's steps, or a finer one.
    other = np.arange(steps[0], steps[-1] + 1, 7_000.0)
    for grid in (np.union1d(steps, other), np.union1d(steps, np.linspace(steps[0], steps[-1], 1_000))):
        assert normalized_auc(grid, resample(steps, values, grid)) == pytest.approx(original, abs=1e-12)


def test_common_range_and_union_grid_keep_only_what_every_curve_covers():
    curves = {
        "a": (np.array([0.0, 10.0, 20.0, 30.0]), np.zeros(4)),
        "b": (np.array([5.0, 15.0, 25.0]), np.ones(3)),
    }
    assert common_range(curves) == (5.0, 25.0)
    np.testing.assert_array_equal(union_grid(curves), [5.0, 10.0, 15.0, 20.0, 25.0])
    with pytest.raises(ValueError, match="share no step range"):
        common_range({"a": (np.array([0.0, 1.0]), np.zeros(2)), "b": (np.array([2.0, 3.0]), np.zeros(2))})


def test_runs_with_different_eval_steps_are_compared_on_the_common_grid():
    # Same underlying ramp, evaluated at different steps: same AUC.
    a_steps = np.array([0.0, 10_000, 20_000, 30_000, 40_000])
    b_steps = np.array([0.0, 15_000, 25_000, 40_000])
    curves = {"a": (a_steps, a_steps / 40_000), "b": (b_steps, b_steps / 40_000)}
    aucs = auc_per_run(curves)
    assert aucs["a"] == pytest.approx(0.5) and aucs["b"] == pytest.approx(0.5)
    # A run that goes on longer is judged over the common range only.
    curves["c"] = (np.array([0.0, 40_000, 80_000]), np.array([0.0, 1.0, 1.0]))
    assert auc_per_run(curves)["c"] == pytest.approx(0.5)


def _experiment(points: dict[str, tuple[str, list[float], list[float]]]) -> ExperimentRuns:
    """A tiny ExperimentRuns: run_id -> (config_hash, steps, success values)."""
    rows = [
        {"run_id": r, "metric": "eval/success_rate", "step": s, "value": v}
        for r, (_, steps, values) in points.items() for s, v in zip(steps, values, strict=True)
    ]
    runs = pd.DataFrame([{"run_id": r, "config_hash": h, "seed": i, "x.lr": 1 if h == "h1" else 2}
                         for i, (r, (h, _, _)) in enumerate(points.items())])
    configs = configurations(runs, ["x.lr"])
    return ExperimentRuns("t", pd.DataFrame(rows), runs, configs, ["x.lr"], [])


def test_auc_table_aggregates_seeds_per_configuration():
    steps = [0.0, 50.0, 100.0]
    data = _experiment({
        "r1": ("h1", steps, [0.0, 0.5, 1.0]),   # 0.5
        "r2": ("h1", steps, [1.0, 1.0, 1.0]),   # 1.0
        "r3": ("h2", steps, [0.0, 0.0, 0.0]),   # 0.0
    })
    result = auc_table(data, n_resamples=2_000)
    table = result.table.set_index("label")
    assert table.loc["lr=1", "auc_mean"] == pytest.approx(0.75)
    assert table.loc["lr=1", "seeds"] == 2
    assert table.loc["lr=1", "auc_ci_low"] == pytest.approx(0.5)
    assert table.loc["lr=1", "auc_ci_high"] == pytest.approx(1.0)
    assert table.loc["lr=2", "auc_mean"] == 0.0 and table.loc["lr=2", "seeds"] == 1
    assert result.per_run == pytest.approx({"r1": 0.5, "r2": 1.0, "r3": 0.0})
    np.testing.assert_array_equal(result.grid, steps)


def test_auc_table_without_overlap_falls_back_to_each_runs_range_and_says_so():
    data = _experiment({"r1": ("h1", [0.0, 10.0], [0.0, 1.0]), "r2": ("h2", [20.0, 30.0], [1.0, 1.0])})
    result = auc_table(data, n_resamples=100)
    assert result.per_run == pytest.approx({"r1": 0.5, "r2": 1.0})
    assert any("share no step range" in n for n in result.notes)
