"""The paper's figures, drawn from an experiment's runs; every function returns its Figure.

Every figure with env steps on its x axis shows eval return (``eval/return``) in a row above
eval success (``eval/success_rate``), as the paper's figure 2 plots reward above success: the
return shows progress long before the first success.  Both come from the same greedy,
noise-free eval episodes.

- `figure_agents` (DQT fig. 2): one column per LR schedule; eval return (top) and eval
  success (bottom) against env steps, one line per agent count (per configuration, in general).
- `figure_agents_time`: the success curves against wall-clock seconds, because more agents
  buy steps per second, which a steps axis hides.
- `figure_noise` (DQT fig. 4): row pairs "μ fixed, σ varies" and "σ fixed, μ varies", each an
  eval-return row above an eval-success row; columns noisy (noise.robust = none) and robust
  (median, ...).  The noise-free runs (μ = 0 and σ = 0, any estimator) are no line of their
  own but one black dashed reference line in every panel.
- `figure_tasks` (DQT fig. 5): success AUC per task, noisy vs robust bars per noise setting,
  with CI error bars.
- `figure_success`: eval return (top) and eval success (bottom) of every configuration;
  every experiment gets it.

Lines are the mean (or IQM) over seeds of the runs' curves interpolated onto a common grid;
bands and error bars are 95 % bootstrap CIs over seeds (`analysis.stats`).  A single seed has
no CI, so its line has no band and its bar no error bar.  A line's colour follows its legend
label, so one agent count has one colour in every panel.

Figures are built with `matplotlib.figure.Figure` directly, not pyplot: no global figure
registry to leak from, and no GUI backend -- PNGs render with Agg, PDFs with the pdf backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.auc import AucTable, common_range, resample, union_grid
from analysis.labels import common_values, config_label, format_value, short_names
from analysis.load import EVAL_RETURN, SUCCESS, WALL, Curve, metric_curves, wall_time_curves
from analysis.selection import ExperimentRuns
from analysis.stats import curve_band

STEP_LABEL = "env steps (all agents)"
TIME_LABEL = "wall-clock time (s)"
SUCCESS_LABEL = "eval success rate (greedy, noise-free)"
EVAL_RETURN_LABEL = "eval return (greedy, noise-free)"
# The rows of every figure against env steps: eval return above eval success.
STEP_ROWS = ((EVAL_RETURN, EVAL_RETURN_LABEL), (SUCCESS, SUCCESS_LABEL))
AUC_LABEL = "success AUC (normalised, 0–1)"

AGENTS_KEYS = ("trainer.num_agents", "learner.lr_schedule")
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
DESCRIPTIONS = {
    "success": "Eval return (top) and eval success rate (bottom) vs env steps, one line per "
               "configuration (greedy, noise-free eval episodes).",
    "agents": "Eval return (top) and eval success (bottom) vs env steps per LR schedule, "
              "one line per agent count (cf. DQT figure 2).",
    "agents_time": "Eval success vs wall-clock seconds per LR schedule, one line per agent count.",
    "noise": "Eval return and, below it, eval success vs env steps under reward noise: row pairs fix "
             "μ or σ, columns noisy vs robust reward; the black dashed line is the noise-free "
             "runs (μ 0, σ 0) in every panel (cf. DQT figure 4).",
    "tasks": "Success AUC per task and configuration; in a noise grid, noisy vs robust reward per noise "
             "setting (cf. DQT figure 5).",
}


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


def _colors(labels: Sequence[str]) -> dict[str, Any]:
    """A distinct colour per legend label (tab10, tab20 beyond ten)."""
    from matplotlib import colormaps

    unique = list(dict.fromkeys(labels))
    cmap = colormaps["tab10" if len(unique) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(unique)}


def _plot_configs(
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


def _band_note(statistic: str) -> str:
    center = "IQM" if statistic == "iqm" else "mean"
    return f"lines: {center} over seeds (n in legend)\nbands: 95% bootstrap CI (none for a single seed)"


def _ordered(values: Iterable[Any], order: Sequence[Any] = ()) -> list[Any]:
    """Unique values, those in `order` first in that order, the rest sorted (numbers numerically)."""
    unique = list(dict.fromkeys(values))
    first = [v for v in order if v in unique]
    rest = [v for v in unique if v not in first]
    try:
        rest.sort()
    except TypeError:
        rest.sort(key=str)
    return first + rest


def _column(data: ExperimentRuns, key: str, order: Sequence[Any] = ()) -> list[Any]:
    """The values of `key` that split panels: each varied value, else the single shared value."""
    if key in data.varied:
        return _ordered(data.configs[key], order)
    if key in data.runs.columns and len(data.runs):
        return [data.runs[key].iloc[0]]
    return [None]


def _where(configs: pd.DataFrame, key: str, value: Any) -> pd.DataFrame:
    """Configurations whose `key` equals `value` (all of them when `key` is not a column)."""
    if key not in configs.columns or value is None:
        return configs
    column = configs[key]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        numeric = pd.to_numeric(column, errors="coerce")
        return configs[np.isclose(numeric.to_numpy(dtype=float), float(value))]
    return configs[column == value]


def _format_steps(value: float, _pos: object = None) -> str:
    """Tick text for env steps: 300000 -> "300k", 1500000 -> "1.5M" (sci notation is unreadable)."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _steps_axis(ax: Any) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.set_xlabel(STEP_LABEL)
    ax.xaxis.set_major_formatter(FuncFormatter(_format_steps))


def _new_figure(nrows: int, ncols: int, width: float = 4.2, height: float = 3.2) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(max(5.0, width * ncols), height * nrows + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


# ---- DQT figure 2 ------------------------------------------------------------------------

def figure_agents(data: ExperimentRuns, *, statistic: str = "mean", seed: int = 0) -> Figure:
    """Per LR schedule (columns): eval return (top row) and eval success (bottom row) vs env steps."""
    schedules = _column(data, LR_KEY, LR_ORDER)
    label_keys = [k for k in data.varied if k != LR_KEY]
    colors = _colors([config_label(c, label_keys) for _, c in data.configs.iterrows()])
    fig, axes = _new_figure(2, len(schedules))
    for r, (metric, ylabel) in enumerate(STEP_ROWS):
        curves = metric_curves(data.tidy, metric)
        for c, schedule in enumerate(schedules):
            ax = axes[r, c]
            configs = _where(data.configs, LR_KEY, schedule)
            _plot_configs(ax, curves, configs, label_keys, colors, statistic=statistic, seed=seed)
            ax.set_title(f"LR schedule: {format_value(schedule)}" if schedule is not None else "all runs")
            _steps_axis(ax)
            ax.set_ylabel(ylabel)
            if metric == SUCCESS:
                ax.set_ylim(-0.03, 1.03)
    fig.suptitle(f"{data.name}: eval return and success vs env steps by agent count and LR schedule\n"
                 f"{_band_note(statistic)}")
    return fig


def figure_agents_time(data: ExperimentRuns, *, statistic: str = "mean", seed: int = 0) -> Figure:
    """Per LR schedule: eval success vs wall-clock seconds, one line per agent count."""
    schedules = _column(data, LR_KEY, LR_ORDER)
    label_keys = [k for k in data.varied if k != LR_KEY]
    colors = _colors([config_label(c, label_keys) for _, c in data.configs.iterrows()])
    curves = wall_time_curves(data.tidy, SUCCESS)
    fig, axes = _new_figure(1, len(schedules))
    for c, schedule in enumerate(schedules):
        ax = axes[0, c]
        configs = _where(data.configs, LR_KEY, schedule)
        _plot_configs(ax, curves, configs, label_keys, colors, statistic=statistic, seed=seed)
        ax.set_title(f"LR schedule: {format_value(schedule)}" if schedule is not None else "all runs")
        ax.set_xlabel(TIME_LABEL)
        ax.set_ylabel(SUCCESS_LABEL)
        ax.set_ylim(-0.03, 1.03)
    fig.suptitle(f"{data.name}: eval success vs wall-clock time by agent count\n{_band_note(statistic)}")
    return fig


# ---- DQT figure 4 ------------------------------------------------------------------------

def _fixed_value(values: pd.Series, preferred: float) -> float:
    """`preferred` if some configuration has it, else the most common value (smallest on ties)."""
    numeric = pd.to_numeric(values, errors="coerce").dropna().astype(float)
    if np.isclose(numeric, preferred).any() or numeric.empty:
        return preferred
    counts = numeric.value_counts()
    return float(min(counts[counts == counts.max()].index))


def _noise_free(data: ExperimentRuns, frame: pd.DataFrame) -> np.ndarray:
    """Which rows of `frame` (configs or runs) are noise-free: noise.mean == 0 and noise.std == 0.

    A key that does not vary is not a configs column; its one value is then read from the runs.
    """
    mask = np.ones(len(frame), dtype=bool)
    for key in NOISE_KEYS:
        if key in frame.columns:
            column = frame[key]
        elif key in data.runs.columns and len(data.runs):
            column = pd.Series([data.runs[key].iloc[0]] * len(frame), index=frame.index)
        else:
            return np.zeros(len(frame), dtype=bool)
        numeric = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
        mask &= np.isclose(numeric, 0.0)  # NaN (not a number) is never noise-free
    return mask


def noise_free_run_ids(data: ExperimentRuns) -> list[str]:
    """The runs of the noise-free arm (μ = 0, σ = 0, any robust estimator): the reference line."""
    return [str(r) for r in data.runs["run_id"][_noise_free(data, data.runs)]] if len(data.runs) else []


def _noisy_configs(data: ExperimentRuns) -> pd.DataFrame:
    """The configurations with reward noise: every one but the noise-free arm."""
    return data.configs[~_noise_free(data, data.configs)]


def noise_rows(data: ExperimentRuns) -> list[tuple[str, float, str]]:
    """The noise figure's rows as (fixed key, fixed value, varying key), one per key that varies
    across the noisy configurations.  The noise-free arm (μ 0, σ 0) is the reference line, not
    a row: it neither makes σ vary nor counts towards the fixed value."""
    noisy = _noisy_configs(data)

    def values(key: str) -> pd.Series:
        # A key that does not vary is not a configs column, but every run still has it.
        if key in noisy.columns:
            return noisy[key]
        return data.runs[key] if key in data.runs.columns else pd.Series(dtype=float)

    def varies(key: str) -> bool:
        return key in noisy.columns and noisy[key].astype(str).nunique(dropna=False) > 1

    rows = []
    if varies("noise.std"):  # σ varies at a fixed μ
        rows.append(("noise.mean", _fixed_value(values("noise.mean"), PREFERRED_FIXED_MEAN), "noise.std"))
    if varies("noise.mean"):  # μ varies at a fixed σ
        rows.append(("noise.std", _fixed_value(values("noise.std"), PREFERRED_FIXED_STD), "noise.mean"))
    return rows


def _robust_title(value: Any) -> str:
    if value in (None, "none"):
        return "noisy reward (no robust estimator)"
    return f"robust reward ({value} of the noisy draws)"


def figure_noise(data: ExperimentRuns, *, statistic: str = "mean", seed: int = 0) -> Figure:
    """Eval return above eval success vs env steps: row pairs fix μ (σ varies) or σ (μ varies);
    columns per robust estimator, noisy (none) first -- 4 rows x 2 columns for the paper's noise
    sweep.  The noise-free runs (μ 0, σ 0) are one black dashed reference line in every panel."""
    rows = noise_rows(data) or [("", float("nan"), "")]
    noisy = _noisy_configs(data)
    reference = noise_free_run_ids(data)
    robusts = (_ordered(noisy[ROBUST_KEY], ROBUST_ORDER) if ROBUST_KEY in noisy.columns and len(noisy)
               else _column(data, ROBUST_KEY, ROBUST_ORDER))
    curves = {metric: metric_curves(data.tidy, metric) for metric, _ in STEP_ROWS}
    fig, axes = _new_figure(len(STEP_ROWS) * len(rows), len(robusts))
    for r, (fixed_key, fixed_value, varying_key) in enumerate(rows):
        label_keys = [k for k in data.varied if k not in (ROBUST_KEY, fixed_key)]
        in_row = _where(noisy, fixed_key, fixed_value) if fixed_key else noisy
        colors = _colors([config_label(c, label_keys) for _, c in in_row.iterrows()])
        names = short_names([fixed_key, varying_key]) if fixed_key else {}
        row_title = (f"{names[fixed_key]} = {format_value(fixed_value)} fixed, "
                     f"{names[varying_key]} varies" if fixed_key else "")
        for m, (metric, ylabel) in enumerate(STEP_ROWS):
            for c, robust in enumerate(robusts):
                ax = axes[len(STEP_ROWS) * r + m, c]
                configs = _where(in_row, ROBUST_KEY, robust)
                _plot_configs(ax, curves[metric], configs, label_keys, colors, statistic=statistic, seed=seed,
                              reference=reference)
                ax.set_title(f"{_robust_title(robust)}\n{row_title}".strip(), fontsize="medium")
                _steps_axis(ax)
                ax.set_ylabel(ylabel)
                if metric == SUCCESS:
                    ax.set_ylim(-0.03, 1.03)
    ref = f"\ndashed black: {NOISE_FREE_LABEL}, the same in every panel" if reference else ""
    fig.suptitle(f"{data.name}: eval return and success under reward noise N(μ, σ²), noisy vs robust reward\n"
                 f"{_band_note(statistic)}{ref}")
    return fig


# ---- DQT figure 5 ------------------------------------------------------------------------

def figure_tasks(data: ExperimentRuns, auc: AucTable, *, statistic: str = "mean") -> Figure:
    """Success AUC per task (panels): bars per setting (x; a noise setting in the paper's grid)
    and robust estimator (hue, when it varies)."""
    table = auc.table
    tasks = _column(data, TASK_KEY)
    robusts = _column(data, ROBUST_KEY, ROBUST_ORDER)
    noise_grid = ROBUST_KEY in data.varied
    setting_keys = [k for k in data.varied if k not in (TASK_KEY, ROBUST_KEY)]
    common = common_values([row for _, row in table.iterrows()], setting_keys)
    settings = list(dict.fromkeys(config_label(row, setting_keys, common) for _, row in table.iterrows()))
    colors = _colors([str(r) for r in robusts])
    ncols = min(len(tasks), 4)
    nrows = -(-len(tasks) // ncols)
    longest = max((len(name) for name in settings), default=0)
    fig, axes = _new_figure(nrows, ncols, width=max(3.6, 1.1 * len(settings) * max(1, len(robusts)) + 1.5),
                            height=3.2 + 0.06 * longest)
    center = "auc_iqm" if statistic == "iqm" else "auc_mean"
    lo_col, hi_col = (("auc_iqm_ci_low", "auc_iqm_ci_high") if statistic == "iqm"
                      else ("auc_ci_low", "auc_ci_high"))
    width = 0.8 / max(1, len(robusts))
    for i, task in enumerate(tasks):
        ax = axes[i // ncols, i % ncols]
        in_task = _where(table, TASK_KEY, task)
        for h, robust in enumerate(robusts):
            rows = _where(in_task, ROBUST_KEY, robust)
            xs, heights, err_x, err_y, errs = [], [], [], [], [[], []]
            for _, row in rows.iterrows():
                if np.isnan(row[center]):
                    continue
                x = settings.index(config_label(row, setting_keys, common)) + (h - (len(robusts) - 1) / 2) * width
                xs.append(x)
                heights.append(row[center])
                if np.isfinite(row[lo_col]) and np.isfinite(row[hi_col]):  # one seed: no CI, no error bar
                    err_x.append(x)
                    err_y.append(row[center])
                    errs[0].append(max(0.0, row[center] - row[lo_col]))
                    errs[1].append(max(0.0, row[hi_col] - row[center]))
            if xs:
                name = "noisy" if robust in (None, "none") else f"robust ({robust})"
                ax.bar(xs, heights, width=width * 0.95, color=colors[str(robust)], label=name if noise_grid else None)
            if err_x:
                ax.errorbar(err_x, err_y, yerr=errs, fmt="none", ecolor="black", elinewidth=1, capsize=3)
        ax.set_xticks(range(len(settings)), settings, rotation=30 if len(settings) > 3 else 0,
                      ha="right" if len(settings) > 3 else "center", fontsize="small")
        ax.set_title(f"task: {task}" if task is not None else "all runs")
        what = "reward noise setting" if noise_grid else "configuration"
        ax.set_xlabel(what + (f" ({', '.join(short_names(setting_keys).values())})" if setting_keys and not common
                              else " (what differs from the baseline)" if common else ""))
        ax.set_ylabel(AUC_LABEL)
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
        if ax.containers and noise_grid:
            ax.legend(title="reward", fontsize="small", title_fontsize="small")
    for j in range(len(tasks), nrows * ncols):
        axes[j // ncols, j % ncols].set_visible(False)
    seeds = table["seeds"][table["seeds"] > 0]
    n = f"{seeds.min()}–{seeds.max()}" if seeds.nunique() > 1 else f"{seeds.max() if len(seeds) else 0}"
    what = "IQM" if statistic == "iqm" else "mean"
    fig.suptitle(f"{data.name}: success AUC by task" + (", noisy vs robust reward" if noise_grid else "") + "\n"
                 f"(bars: {what} over {n} seeds; error bars: 95% bootstrap CI, none for one seed)")
    return fig


# ---- every experiment --------------------------------------------------------------------

def figure_success(data: ExperimentRuns, *, statistic: str = "mean", seed: int = 0) -> Figure:
    """Eval return (top) and eval success (bottom) vs env steps of every configuration; one
    column per task when the task varies (returns of different tasks share no scale), one
    legend below the panels, each configuration the same colour in every column."""
    tasks = _column(data, TASK_KEY) if TASK_KEY in data.varied else [None]
    keys = [k for k in data.varied if k != TASK_KEY] if tasks != [None] else list(data.varied)
    rows = [c for _, c in data.configs.iterrows()]
    common = common_values(rows, keys)
    colors = _colors(list(dict.fromkeys(config_label(c, keys, common) for c in rows)))
    fig = Figure(figsize=(max(6.5, 4.6 * len(tasks)), 8.0 + 0.22 * min(len(colors), MAX_LEGEND)),
                 layout="constrained")
    axes = fig.subplots(len(STEP_ROWS), len(tasks), squeeze=False)
    curves = {metric: metric_curves(data.tidy, metric) for metric, _ in STEP_ROWS}
    for j, task in enumerate(tasks):
        configs = data.configs if task is None else _where(data.configs, TASK_KEY, task)
        for i, (metric, ylabel) in enumerate(STEP_ROWS):
            ax = axes[i, j]
            _plot_configs(ax, curves[metric], configs, keys, colors, statistic=statistic, seed=seed,
                          common=common, legend=False)
            _steps_axis(ax)
            ax.set_ylabel(ylabel if j == 0 else "")
            if metric == SUCCESS:
                ax.set_ylim(-0.03, 1.03)
            if task is not None and i == 0:
                ax.set_title(f"task: {task}")
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label.rsplit(" (n=", 1)[0], (handle, label))
    if len(data.configs) > MAX_LEGEND:  # an Optuna study: a legend would hide the plot
        fig.text(0.01, 0.01, f"{len(data.configs)} configurations (labels in summary.csv)", fontsize="small",
                 color="gray")
    elif handles:
        names = short_names(keys)
        title = ", ".join(names[k] for k in keys) + (" (only what differs from the baseline)" if common else "")
        fig.legend([h for h, _ in handles.values()], [lab for _, lab in handles.values()], loc="outside lower center",
                   title=title or None, fontsize="small", title_fontsize="small", ncol=1 if len(tasks) < 2 else 2)
    fig.suptitle(f"{data.name}: eval return and success per configuration\n{_band_note(statistic)}")
    return fig


def applicable(data: ExperimentRuns) -> list[str]:
    """The figures an experiment gets, decided by which params vary across its runs."""
    names = ["success"]
    if any(k in data.varied for k in AGENTS_KEYS):
        names.append("agents")
        if (data.tidy["metric"] == WALL).any():
            names.append("agents_time")
    if any(k in data.varied for k in NOISE_KEYS):
        names.append("noise")
    if TASK_KEY in data.varied:
        names.append("tasks")
    return names


def build_figures(data: ExperimentRuns, auc: AucTable, *, statistic: str = "mean", seed: int = 0) -> dict[str, Figure]:
    """Every applicable figure of the experiment, by name (see `DESCRIPTIONS`)."""
    makers = {
        "success": lambda: figure_success(data, statistic=statistic, seed=seed),
        "agents": lambda: figure_agents(data, statistic=statistic, seed=seed),
        "agents_time": lambda: figure_agents_time(data, statistic=statistic, seed=seed),
        "noise": lambda: figure_noise(data, statistic=statistic, seed=seed),
        "tasks": lambda: figure_tasks(data, auc, statistic=statistic),
    }
    return {name: makers[name]() for name in applicable(data)}


def save_figure(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    """Write `name`.png (150 dpi) and `name`.pdf into `out_dir`; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    return paths
