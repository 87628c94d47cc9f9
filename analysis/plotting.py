"""What every figure shares: axis labels, the param keys and orders of the paper's grids, the
aggregated curve of one configuration (`config_band`: mean or IQM over seeds with a 95%
bootstrap CI), and drawing one line per configuration (`plot_configs`).

Figures are built with `matplotlib.figure.Figure` directly, not pyplot: no global figure
registry to leak from, and no GUI backend -- PNGs render with Agg, PDFs with the pdf backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dqt.analysis.auc import common_range, resample, union_grid
from dqt.analysis.labels import config_label, short_names
from dqt.analysis.load import Curve
from dqt.analysis.selection import ExperimentRuns
from dqt.analysis.stats import curve_band
from dqt.core.metrics import EVAL_METRICS, EVAL_RETURN

STEP_LABEL = "env steps (all agents)"
STEP_LABEL_PER_AGENT = "env steps per agent (each agent ran the budget)"
STEP_LABEL_MIXED = "env steps on each run's budget clock (all agents' or one agent's)"
TIME_LABEL = "wall-clock time (s)"
# Which success a panel shows (the runs' eval.success; runs without it were scored at any step).
SUCCESS_LABELS = {
    "last-step": "eval success, last step (the paper's)",
    "any-step": "eval success, any step (MetaWorld's)",
}
SUCCESS_LABEL = SUCCESS_LABELS["last-step"]
EVAL_RETURN_LABEL = EVAL_METRICS.get(EVAL_RETURN).label
AUC_LABEL = "success AUC (normalised, 0–1)"

AGENTS_KEY = "trainer.num_agents"
AGENTS_KEYS = (AGENTS_KEY, "learner.lr_schedule")
NOISE_KEYS = ("noise.mean", "noise.std")
TASK_KEY = "trainer.task"
LR_KEY = "learner.lr_schedule"
ROBUST_KEY = "noise.robust"
# Columns in the paper's order; unknown values follow alphabetically.
LR_ORDER = ("linear", "log-curve", "linear-log-n", "linear-n", "constant")
ROBUST_ORDER = ("none", "median", "mean", "trimmed-mean")
# The paper's two controlled noise grids share (μ = 0, σ = 1); other specs fall back to the
# most common value (see `_fixed_value`).
PREFERRED_FIXED_MEAN = 0.0
PREFERRED_FIXED_STD = 1.0
# The noise-free arm (μ = 0, σ = 0; the estimator is moot without noise) is the noise figure's
# reference line, drawn in every panel.
NOISE_FREE_LABEL = "noise-free (μ 0, σ 0)"
NOISE_FREE_GID = "noise-free-reference"

# More grid points than this only thin the line (a per-episode return has thousands).
MAX_POINTS = 300
# Beyond this many lines a legend covers the plot and colours repeat: the table names them.
MAX_LEGEND = 20

# Caption of each figure for report.md.
# ---- aggregated curves -------------------------------------------------------------------

@dataclass(frozen=True)
class Band:
    """One configuration's aggregated curve: grid x, center line, CI low/high, seeds n."""

    x: np.ndarray
    center: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: int


def config_band(
    curves: Mapping[str, Curve],
    run_ids: Iterable[str],
    *,
    statistic: str = "mean",
    seed: int = 0,
    max_points: int = MAX_POINTS,
) -> Band | None:
    """Aggregate the runs' curves over seeds on their common range; None without curves."""
    mine = {r: curves[r] for r in run_ids if r in curves}
    if not mine:
        return None
    try:
        lo, hi = common_range(mine)
    except ValueError:
        return None
    grid = union_grid(mine, lo, hi)
    if grid.size > max_points:
        grid = np.linspace(lo, hi, max_points)
    matrix = np.stack([resample(x, y, grid) for x, y in mine.values()])
    center, low, high = curve_band(matrix, statistic=statistic, seed=seed)
    return Band(grid, center, low, high, len(mine))


def label_colors(labels: Sequence[str]) -> dict[str, Any]:
    """A distinct colour per legend label (tab10, tab20 beyond ten)."""
    from matplotlib import colormaps

    unique = list(dict.fromkeys(labels))
    cmap = colormaps["tab10" if len(unique) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(unique)}


def plot_configs(
    ax: Any,
    curves: Mapping[str, Curve],
    configs: pd.DataFrame,
    label_keys: Sequence[str],
    colors: Mapping[str, Any],
    *,
    statistic: str,
    seed: int,
    reference: Sequence[str] = (),
    common: Mapping[str, Any] | None = None,
    legend: bool = True,
) -> int:
    """One line with a CI band per configuration in `configs` (no band for a single seed: it
    has no CI), plus the noise-free `reference` runs as one black dashed line when given;
    labelled by `label_keys` (only what differs from `common`, when given); returns how many
    lines were drawn."""
    drawn = 0
    for _, config in configs.iterrows():
        band = config_band(curves, config["run_ids"], statistic=statistic, seed=seed)
        if band is None:
            continue
        name = config_label(config, label_keys, common)
        color = colors.get(name)
        ax.plot(band.x, band.center, color=color, lw=1.6, label=f"{name} (n={band.n})")
        if band.n > 1:
            ax.fill_between(band.x, band.low, band.high, color=color, alpha=0.2, lw=0)
        drawn += 1
    if reference:
        band = config_band(curves, reference, statistic=statistic, seed=seed)
        if band is not None:
            ax.plot(band.x, band.center, color="black", ls="--", lw=1.4, zorder=3, gid=NOISE_FREE_GID,
                    label=f"{NOISE_FREE_LABEL}, n={band.n}")
            drawn += 1
    if drawn and legend:
        names = short_names(label_keys)
        title = ", ".join(names[k] for k in label_keys) or None
        ax.legend(title=title, fontsize="small", title_fontsize="small", loc="best")
    elif not drawn:
        ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.grid(alpha=0.3)
    return drawn


def band_note(statistic: str) -> str:
    center = "IQM" if statistic == "iqm" else "mean"
    return f"lines: {center} over seeds (n in legend)\nbands: 95% bootstrap CI (none for a single seed)"


def ordered(values: Iterable[Any], order: Sequence[Any] = ()) -> list[Any]:
    """Unique values, those in `order` first in that order, the rest sorted (numbers numerically)."""
    unique = list(dict.fromkeys(values))
    first = [v for v in order if v in unique]
    rest = [v for v in unique if v not in first]
    try:
        rest.sort()
    except TypeError:
        rest.sort(key=str)
    return first + rest


def column(data: ExperimentRuns, key: str, order: Sequence[Any] = ()) -> list[Any]:
    """The values of `key` that split panels: each varied value, else the single shared value."""
    if key in data.varied:
        return ordered(data.configs[key], order)
    if key in data.runs.columns and len(data.runs):
        return [data.runs[key].iloc[0]]
    return [None]


def where(configs: pd.DataFrame, key: str, value: Any) -> pd.DataFrame:
    """Configurations whose `key` equals `value` (all of them when `key` is not a column)."""
    if key not in configs.columns or value is None:
        return configs
    column = configs[key]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        numeric = pd.to_numeric(column, errors="coerce")
        return configs[np.isclose(numeric.to_numpy(dtype=float), float(value))]
    return configs[column == value]


def format_steps(value: float, _pos: object = None) -> str:
    """Tick text for env steps: 300000 -> "300k", 1500000 -> "1.5M" (sci notation is unreadable)."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def step_rows(data: ExperimentRuns) -> tuple[tuple[str, str], ...]:
    """The rows of every figure against env steps: the declared figure metrics the runs have
    (`core.metrics.figure_metrics`: eval return above eval success, then any registered one),
    success labelled with the runs' convention (`analysis.selection.figure_rows`)."""
    return data.rows


def steps_axis(ax: Any, label: str = STEP_LABEL) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.set_xlabel(label)
    ax.xaxis.set_major_formatter(FuncFormatter(format_steps))


def new_figure(nrows: int, ncols: int, width: float = 4.2, height: float = 3.2) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(max(5.0, width * ncols), height * nrows + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes
