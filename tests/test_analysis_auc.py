"""Success AUC: analytic values, each run over its own [0, budget], invariance to re-gridding."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dqt.analysis.auc import (
    auc_per_run,
    auc_table,
    budget_auc,
    common_range,
    normalized_auc,
    resample,
    union_grid,
)
from dqt.analysis.selection import ExperimentRuns, configurations


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


def test_budget_auc_integrates_the_run_over_zero_to_its_budget_by_hand():
    # Evals at 10k, 50k, 80k of a 100k budget. By hand: [0, 10k] holds the first value 0 (area
    # 0); [10k, 50k] ramps 0 -> 0.5 (40k * 0.25 = 10k); [50k, 80k] ramps 0.5 -> 1 (30k * 0.75 =
    # 22.5k); [80k, 100k] carries the last value 1 (20k). (10k + 22.5k + 20k) / 100k = 0.525.
    steps, values = [10_000, 50_000, 80_000], [0.0, 0.5, 1.0]
    assert budget_auc(steps, values, 100_000) == pytest.approx(0.525)
    # The old rule (the eval range only, 10k..80k) gives another number: the range matters.
    assert normalized_auc(steps, values) == pytest.approx(32_500 / 70_000)
    # The first value is held back to step 0: [0, 20k] at 0.2 (4k), 20k..60k ramps 0.2 -> 0.6
    # (40k * 0.4 = 16k), 60k..100k at 0.6 (24k): 44k / 100k.
    assert budget_auc([20_000, 60_000], [0.2, 0.6], 100_000) == pytest.approx(0.44)
    # An eval past the budget only shapes the line up to it: at 100k the line from (50k, 0.5)
    # to (110k, 0.8) is at 0.75, so 0.25 * 50k + 0.625 * 50k = 43.75k over 100k.
    assert budget_auc([0, 50_000, 110_000], [0.0, 0.5, 0.8], 100_000) == pytest.approx(0.4375)
    assert math.isnan(budget_auc([], [], 100_000))
    assert budget_auc([0, 10], [0.0, 1.0], float("nan")) == pytest.approx(0.5)  # no budget: own range


def test_runs_with_different_eval_steps_over_one_budget_get_the_same_auc():
    # Same underlying ramp, evaluated at different steps: same AUC.
    a_steps = np.array([0.0, 10_000, 20_000, 30_000, 40_000])
    b_steps = np.array([0.0, 15_000, 25_000, 40_000])
    curves = {"a": (a_steps, a_steps / 40_000), "b": (b_steps, b_steps / 40_000)}
    aucs = auc_per_run(curves, {"a": 40_000, "b": 40_000})
    assert aucs["a"] == pytest.approx(0.5) and aucs["b"] == pytest.approx(0.5)
    # A run that goes on longer is judged over its own budget, whatever the others are.
    curves["c"] = (np.array([0.0, 40_000, 80_000]), np.array([0.0, 1.0, 1.0]))
    aucs = auc_per_run(curves, {"a": 40_000, "b": 40_000, "c": 80_000})
    assert aucs["c"] == pytest.approx(0.75) and aucs["a"] == pytest.approx(0.5)
    # Without budgets each run's own last eval step is its budget.
    assert auc_per_run(curves)["c"] == pytest.approx(0.75)


def _experiment(points: dict[str, tuple], budgets: dict[str, int] | None = None) -> ExperimentRuns:
    """A tiny ExperimentRuns: run_id -> (config_hash, steps, success values), with a
    trainer.train_steps param per run when `budgets` gives one."""
    rows = [
        {"run_id": r, "metric": "eval/success_rate", "step": s, "value": v}
        for r, (_, steps, values) in points.items() for s, v in zip(steps, values, strict=True)
    ]
    runs = pd.DataFrame([{"run_id": r, "config_hash": h, "seed": i, "x.lr": 1 if h == "h1" else 2}
                         for i, (r, (h, _, _)) in enumerate(points.items())])
    if budgets is not None:
        runs["trainer.train_steps"] = [budgets[r] for r in runs["run_id"]]
    configs = configurations(runs, ["x.lr"])
    return ExperimentRuns("t", pd.DataFrame(rows), runs, configs, ["x.lr"], [])


def test_auc_table_aggregates_seeds_per_configuration():
    steps = [0.0, 50.0, 100.0]
    data = _experiment({
        "r1": ("h1", steps, [0.0, 0.5, 1.0]),   # 0.5
        "r2": ("h1", steps, [1.0, 1.0, 1.0]),   # 1.0
        "r3": ("h2", steps, [0.0, 0.0, 0.0]),   # 0.0
    }, budgets={"r1": 100, "r2": 100, "r3": 100})
    result = auc_table(data, n_resamples=2_000)
    table = result.table.set_index("label")
    assert table.loc["lr=1", "auc_mean"] == pytest.approx(0.75)
    assert table.loc["lr=1", "seeds"] == 2
    assert table.loc["lr=1", "auc_ci_low"] == pytest.approx(0.5)
    assert table.loc["lr=1", "auc_ci_high"] == pytest.approx(1.0)
    assert table.loc["lr=2", "auc_mean"] == 0.0 and table.loc["lr=2", "seeds"] == 1
    # One seed: no CI (NaN), not [0, 0].
    for col in ("auc_ci_low", "auc_ci_high", "auc_iqm_ci_low", "auc_iqm_ci_high"):
        assert math.isnan(table.loc["lr=2", col])
    assert result.per_run == pytest.approx({"r1": 0.5, "r2": 1.0, "r3": 0.0})
    assert list(table["budget"]) == [100, 100] and result.budgets == {"r1": 100, "r2": 100, "r3": 100}
    assert result.notes == []


def test_a_runs_auc_does_not_change_when_a_shorter_run_of_another_configuration_is_added():
    # r1 succeeds only in its second half: over its budget [0, 100] the AUC is 0.25 by hand
    # (0 up to 50, then a ramp to 1 at 100: 0.5 * 50 / 100).
    alone = _experiment({"r1": ("h1", [0.0, 50.0, 100.0], [0.0, 0.0, 1.0]),
                         "r2": ("h1", [0.0, 50.0, 100.0], [0.0, 0.0, 1.0])},
                        budgets={"r1": 100, "r2": 100})
    before = auc_table(alone, n_resamples=200)
    assert before.per_run["r1"] == pytest.approx(0.25)
    # A 40-step run of another configuration used to shrink everyone's range to [0, 40],
    # where r1 never succeeds (AUC 0). Now r1 keeps its own range.
    both = _experiment({"r1": ("h1", [0.0, 50.0, 100.0], [0.0, 0.0, 1.0]),
                        "r2": ("h1", [0.0, 50.0, 100.0], [0.0, 0.0, 1.0]),
                        "r3": ("h2", [0.0, 20.0, 40.0], [0.0, 1.0, 1.0])},
                       budgets={"r1": 100, "r2": 100, "r3": 40})
    after = auc_table(both, n_resamples=200)
    assert after.per_run["r1"] == pytest.approx(0.25) and after.per_run["r3"] == pytest.approx(0.75)
    lr1 = after.table.set_index("label").loc["lr=1"]
    assert lr1["auc_mean"] == before.table.set_index("label").loc["lr=1", "auc_mean"]
    assert list(after.table["budget"]) == [100, 40]
    assert any("2 different budgets" in n and "40, 100" in n for n in after.notes)


def test_an_unfinished_run_carries_its_last_value_to_its_budget_and_says_so():
    # Stopped at 40 of a 100-step budget at success 0.5: ramp 0 -> 0.5 over [0, 40] (10),
    # then 0.5 carried over [40, 100] (30): 40 / 100.
    data = _experiment({"r1": ("h1", [0.0, 40.0], [0.0, 0.5])}, budgets={"r1": 100})
    result = auc_table(data, n_resamples=100)
    assert result.per_run["r1"] == pytest.approx(0.4)
    assert any("stop evaluating before their budget" in n for n in result.notes)


def test_runs_without_a_budget_param_use_their_last_eval_step_and_say_so():
    data = _experiment({"r1": ("h1", [0.0, 10.0], [0.0, 1.0]), "r2": ("h2", [20.0, 30.0], [1.0, 1.0])})
    result = auc_table(data, n_resamples=100)
    # r2 holds its first value back to step 0: 1.0 over [0, 30].
    assert result.per_run == pytest.approx({"r1": 0.5, "r2": 1.0})
    assert result.budgets == {"r1": 10.0, "r2": 30.0}
    assert any("no `trainer.train_steps` param" in n for n in result.notes)
