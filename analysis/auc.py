"""Success AUC: the area under the eval success-rate curve over env steps, normalised to [0, 1].

For one run with eval points (s_0, y_0) ... (s_k, y_k) on a step range [a, b]:

    AUC = trapezoid(y, s) / (b - a)

i.e. the mean success rate of the piecewise-linear curve through the eval points, so 0 means
never succeeding and 1 succeeding at every eval (DQT figure 5 integrates the same curve).
Runs of an experiment can evaluate at different steps (a different eval interval, one eval
late), so before they are compared every curve is linearly interpolated onto one common grid:
the union of all their eval steps inside the range they all cover.  Because the union keeps
every original knot, re-gridding does not change the AUC of a piecewise-linear curve; it only
trims the range to the common part so every run is judged over the same steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.load import SUCCESS, Curve, ExperimentRuns, metric_curves
from analysis.stats import summarize


def normalized_auc(steps: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray) -> float:
    """Trapezoid area under ``values`` over ``steps`` divided by the step range, in [0, 1]
    for success rates.  One point (no range) gives that point's value; none gives NaN."""
    x = np.asarray(steps, dtype=float)
    y = np.asarray(values, dtype=float)
    if x.size == 0:
        return float("nan")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    width = x[-1] - x[0]
    if width <= 0:
        return float(np.mean(y))
    return float(np.trapezoid(y, x) / width)


def common_range(curves: Mapping[str, Curve]) -> tuple[float, float]:
    """The step range every curve covers: (latest first step, earliest last step).

    Raises ValueError when there are no curves or they do not overlap.
    """
    if not curves:
        raise ValueError("no curves")
    lo = max(float(x[0]) for x, _ in curves.values())
    hi = min(float(x[-1]) for x, _ in curves.values())
    if lo > hi:
        raise ValueError(f"the curves share no step range (latest start {lo:g} > earliest end {hi:g})")
    return lo, hi


def union_grid(curves: Mapping[str, Curve], lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Every step of every curve inside [lo, hi] (default: their common range), ends included."""
    if lo is None or hi is None:
        lo, hi = common_range(curves)
    steps = np.concatenate([x for x, _ in curves.values()] + [np.array([lo, hi])])
    return np.unique(steps[(steps >= lo) & (steps <= hi)])


def resample(steps: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The piecewise-linear curve through (steps, values) evaluated on `grid`."""
    return np.interp(grid, np.asarray(steps, dtype=float), np.asarray(values, dtype=float))


def auc_per_run(curves: Mapping[str, Curve], grid: np.ndarray | None = None) -> dict[str, float]:
    """Normalised AUC of every curve on one grid (default: `union_grid` of the curves)."""
    grid = union_grid(curves) if grid is None else np.asarray(grid, dtype=float)
    return {run_id: normalized_auc(grid, resample(x, y, grid)) for run_id, (x, y) in curves.items()}


@dataclass(frozen=True)
class AucTable:
    """Success AUC of an experiment.

    Attributes:
        table: one row per configuration: config_hash, label, the varied params, auc_mean,
            auc_ci_low, auc_ci_high (bootstrap CI of the mean over seeds), auc_iqm,
            auc_iqm_ci_low, auc_iqm_ci_high, seeds (runs with an eval curve).
        per_run: run_id -> AUC.
        grid: the common step grid the AUCs were computed on (empty if there were no curves).
        notes: anything the reader of the numbers must know.
    """

    table: pd.DataFrame
    per_run: dict[str, float]
    grid: np.ndarray
    notes: list[str] = field(default_factory=list)


def auc_table(
    data: ExperimentRuns,
    *,
    metric: str = SUCCESS,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> AucTable:
    """AUC per run on the experiment's common grid, then per configuration over seeds."""
    curves = metric_curves(data.tidy, metric)
    notes: list[str] = []
    grid = np.array([])
    if not curves:
        per_run: dict[str, float] = {}
        notes.append(f"no run logged {metric}: no AUC")
    else:
        try:
            grid = union_grid(curves)
            per_run = auc_per_run(curves, grid)
        except ValueError as exc:
            # Comparing over different ranges is less fair than nothing, but still informative.
            per_run = {run_id: normalized_auc(x, y) for run_id, (x, y) in curves.items()}
            notes.append(f"{exc}: each run's AUC uses its own step range")
    rows = []
    for _, config in data.configs.iterrows():
        values = np.array([per_run[r] for r in config["run_ids"] if r in per_run])
        s = summarize(values, confidence=confidence, n_resamples=n_resamples, seed=seed)
        rows.append({
            "config_hash": config["config_hash"], "label": config["label"],
            **{k: config[k] for k in data.varied},
            "auc_mean": s.mean, "auc_ci_low": s.ci_low, "auc_ci_high": s.ci_high,
            "auc_iqm": s.iqm, "auc_iqm_ci_low": s.iqm_ci_low, "auc_iqm_ci_high": s.iqm_ci_high,
            "seeds": s.n,
        })
    columns = ["config_hash", "label", *data.varied, "auc_mean", "auc_ci_low", "auc_ci_high",
               "auc_iqm", "auc_iqm_ci_low", "auc_iqm_ci_high", "seeds"]
    return AucTable(pd.DataFrame(rows, columns=columns), per_run, grid, notes)
