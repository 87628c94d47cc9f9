"""Success AUC: the area under a run's eval success-rate curve over its budget, normalised to [0, 1].

A run's AUC is a function of that run alone: its eval points (s_0, y_0) ... (s_k, y_k) and its
budget B (the param ``trainer.train_steps``, the env steps it was asked to train for):

    AUC = (1 / B) * integral over [0, B] of c(s) ds

where c is the eval curve defined on all of [0, B]:

- between two eval points, the straight line through them (piecewise-linear, as DQT figure 5);
- from step 0 to the first eval, the first eval's value (the trainer evaluates the untrained
  model first, at or just after step 0);
- from the last eval to B, the last eval's value carried forward (a finished run's last eval
  is at its budget, so this matters only for a run that stopped early);
- eval points past B (several agents can overshoot the budget by a few steps) only shape the
  line up to B; the area stops at B.

So 0 means never succeeding and 1 succeeding at every eval from the start.  Because the range
is the run's own [0, B], adding, removing or shortening another run (of any configuration)
never changes a run's AUC; and runs with different eval steps over one budget are compared
fairly, since every AUC is the mean of its curve over the same steps.  A run without a
``trainer.train_steps`` param (logged by hand) uses its last eval step as B, and the notes say
so.  Runs of different budgets get AUCs over different ranges, which are not comparable: the
table has a ``budget`` column and the notes (and report.md) keep the budgets apart.

`normalized_auc` is the plain trapezoid over a curve's own eval range (what a run without a
budget gets); `budget_auc` is the rule above, used by the tables, the report, the sweep's
parent run and the Optuna search's objective.
Figures still put a configuration's seeds on one common grid (`common_range`, `union_grid`)
to draw their mean curve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dqt.analysis.load import SUCCESS, Curve, metric_curves
from dqt.analysis.selection import ExperimentRuns
from dqt.analysis.stats import summarize

# The run param that holds a run's budget in env steps: its AUC spans [0, budget].
BUDGET_KEY = "trainer.train_steps"


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


def budget_auc(
    steps: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray, budget: float
) -> float:
    """Area under the run's eval curve over [0, `budget`] divided by `budget` (module docstring):
    linear between evals, the first value before the first eval, the last value carried to
    the budget.  NaN without points; `normalized_auc` when the budget is not positive."""
    x = np.asarray(steps, dtype=float)
    y = np.asarray(values, dtype=float)
    if x.size == 0:
        return float("nan")
    budget = float(budget)
    if not budget > 0:  # NaN or a budget of 0 steps: no range to normalise by
        return normalized_auc(x, y)
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    inside = x[(x > 0) & (x < budget)]
    grid = np.concatenate([[0.0], inside, [budget]])
    return float(np.trapezoid(np.interp(grid, x, y), grid) / budget)


def auc_per_run(curves: Mapping[str, Curve], budgets: Mapping[str, float] | None = None) -> dict[str, float]:
    """`budget_auc` of every curve over its own run's budget (default: its last eval step)."""
    budgets = budgets or {}
    return {run_id: budget_auc(x, y, budgets.get(run_id, float(x[-1])))
            for run_id, (x, y) in curves.items()}


def run_budgets(runs: pd.DataFrame, curves: Mapping[str, Curve]) -> tuple[dict[str, float], list[str]]:
    """Each run's budget: its ``trainer.train_steps`` param, else its last eval step (else NaN),
    and a note counting the runs that had no such param."""
    params = (pd.to_numeric(runs[BUDGET_KEY], errors="coerce") if BUDGET_KEY in runs.columns
              else pd.Series(np.nan, index=runs.index))
    budgets: dict[str, float] = {}
    guessed = 0
    for run_id, value in zip(runs["run_id"].astype(str), params, strict=True):
        if np.isfinite(value) and value > 0:
            budgets[run_id] = float(value)
        else:
            curve = curves.get(run_id)
            budgets[run_id] = float(curve[0][-1]) if curve is not None else float("nan")
            guessed += curve is not None
    notes = [f"{guessed} run(s) have no `{BUDGET_KEY}` param: their AUC spans [0, their last eval step]"
             ] if guessed else []
    return budgets, notes


def _steps(value: float) -> str:
    return f"{value:,.0f}"


@dataclass(frozen=True)
class AucTable:
    """Success AUC of an experiment.

    Attributes:
        table: one row per configuration: config_hash, label, the varied params, auc_mean,
            auc_ci_low, auc_ci_high (bootstrap CI of the mean over seeds), auc_iqm,
            auc_iqm_ci_low, auc_iqm_ci_high (CIs NaN for a single seed), seeds (runs with an
            eval curve), budget (the env steps its runs' AUCs span, [0, budget]).
        per_run: run_id -> AUC over that run's own [0, budget].
        budgets: run_id -> budget (``trainer.train_steps``; see `run_budgets`).
        notes: anything the reader of the numbers must know.
    """

    table: pd.DataFrame
    per_run: dict[str, float]
    budgets: dict[str, float]
    notes: list[str] = field(default_factory=list)

    def budget_values(self) -> list[float]:
        """The distinct budgets of the configurations, ascending (NaN left out)."""
        return sorted({float(b) for b in self.table["budget"] if np.isfinite(b)})


def auc_table(
    data: ExperimentRuns,
    *,
    metric: str = SUCCESS,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> AucTable:
    """AUC per run over its own [0, budget], then per configuration over seeds."""
    curves = metric_curves(data.tidy, metric)
    budgets, notes = run_budgets(data.runs, curves)
    if not curves:
        notes.append(f"no run logged {metric}: no AUC")
    per_run = auc_per_run(curves, budgets)
    short = [r for r, (x, _) in curves.items() if x[-1] < budgets.get(r, -np.inf)]
    if short:
        notes.append(f"{len(short)} run(s) stop evaluating before their budget: their last eval value is "
                     "carried to the budget in their AUC")
    rows = []
    for _, config in data.configs.iterrows():
        values = np.array([per_run[r] for r in config["run_ids"] if r in per_run])
        s = summarize(values, confidence=confidence, n_resamples=n_resamples, seed=seed)
        mine = {budgets[r] for r in config["run_ids"] if r in budgets and np.isfinite(budgets[r])}
        if len(mine) > 1:
            notes.append(f"the runs of configuration {config['label']} have different budgets "
                         f"({', '.join(_steps(b) for b in sorted(mine))} env steps)")
        rows.append({
            "config_hash": config["config_hash"], "label": config["label"],
            **{k: config[k] for k in data.varied},
            "auc_mean": s.mean, "auc_ci_low": s.ci_low, "auc_ci_high": s.ci_high,
            "auc_iqm": s.iqm, "auc_iqm_ci_low": s.iqm_ci_low, "auc_iqm_ci_high": s.iqm_ci_high,
            "seeds": s.n, "budget": max(mine) if mine else float("nan"),
        })
    columns = ["config_hash", "label", *data.varied, "auc_mean", "auc_ci_low", "auc_ci_high",
               "auc_iqm", "auc_iqm_ci_low", "auc_iqm_ci_high", "seeds", "budget"]
    table = pd.DataFrame(rows, columns=columns)
    distinct = sorted({float(b) for b in table["budget"] if np.isfinite(b)})
    if len(distinct) > 1:
        notes.append(f"the configurations have {len(distinct)} different budgets (`{BUDGET_KEY}` = "
                     f"{', '.join(_steps(b) for b in distinct)}): each AUC spans its own run's [0, budget], "
                     "so AUCs are comparable only within one budget")
    return AucTable(table, per_run, budgets, notes)
