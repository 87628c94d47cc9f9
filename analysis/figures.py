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

What they share (labels, keys, the per-configuration band, one line per configuration) is
`analysis.plotting`; the noise figure is `analysis.figure_noise`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dqt.analysis.auc import AucTable
from dqt.analysis.figure_noise import figure_noise
from dqt.analysis.labels import common_values, config_label, format_value, short_names
from dqt.analysis.load import SUCCESS, WALL, metric_curves, wall_time_curves
from dqt.analysis.plotting import (
    AGENTS_KEY,
    AGENTS_KEYS,
    AUC_LABEL,
    LR_KEY,
    LR_ORDER,
    MAX_LEGEND,
    NOISE_KEYS,
    ROBUST_KEY,
    ROBUST_ORDER,
    TASK_KEY,
    TIME_LABEL,
    band_note,
    column,
    label_colors,
    new_figure,
    plot_configs,
    step_rows,
    steps_axis,
    where,
)
from dqt.analysis.selection import ExperimentRuns

DESCRIPTIONS = {
    "success": "Eval return (top) and eval success rate (bottom) vs env steps, one line per "
               "configuration (greedy, noise-free eval episodes).",
    "agents": "Eval return (top) and eval success (bottom) vs env steps per LR schedule, "
              "one line per agent count (cf. DQT figure 2); a one-agent run made under one schedule only "
              "is drawn in every column (the schedules coincide at n = 1).",
    "agents_time": "Eval success vs wall-clock seconds per LR schedule, one line per agent count.",
    "noise": "Eval return and, below it, eval success vs env steps under reward noise: row pairs fix "
             "μ or σ, columns noisy vs robust reward; the black dashed line is the noise-free "
             "runs (μ 0, σ 0) in every panel (cf. DQT figure 4).",
    "tasks": "Success AUC per task and configuration; in a noise grid, noisy vs robust reward per noise "
             "setting (cf. DQT figure 5).",
}


# ---- DQT figure 2 ------------------------------------------------------------------------

def single_agent_everywhere(data: ExperimentRuns, configs: pd.DataFrame) -> pd.DataFrame:
    """`configs` plus the one-agent configuration when it ran under one schedule only: with n = 1
    the four schedules of DQT 4.2 are the same function, so that run stands in every column."""
    if AGENTS_KEY not in data.configs.columns or LR_KEY not in data.configs.columns:
        return configs
    single = data.configs[pd.to_numeric(data.configs[AGENTS_KEY], errors="coerce") == 1]
    if len(single) != 1 or single.index[0] in configs.index:
        return configs
    return pd.concat([single, configs])


def figure_agents(data: ExperimentRuns, *, statistic: str = "mean", seed: int = 0) -> Figure:
    """Per LR schedule (columns): eval return (top row) and eval success (bottom row) vs env steps."""
    schedules = column(data, LR_KEY, LR_ORDER)
    label_keys = [k for k in data.varied if k != LR_KEY]
    colors = label_colors([config_label(c, label_keys) for _, c in data.configs.iterrows()])
    fig, axes = new_figure(len(step_rows(data)), len(schedules))
    for r, (metric, ylabel) in enumerate(step_rows(data)):
        curves = metric_curves(data.tidy, metric)
        for c, schedule in enumerate(schedules):
            ax = axes[r, c]
            configs = single_agent_everywhere(data, where(data.configs, LR_KEY, schedule))
            plot_configs(ax, curves, configs, label_keys, colors, statistic=statistic, seed=seed)
            ax.set_title(f"LR schedule: {format_value(schedule)}" if schedule is not None else "all runs")
            steps_axis(ax, data.step_label)
            ax.set_ylabel(ylabel)
            if metric == SUCCESS:
                ax.set_ylim(-0.03, 1.03)
    fig.suptitle(f"{data.name}: eval return and success vs env steps by agent count and LR schedule\n"
                 f"{band_note(statistic)}")
    return fig


def figure_agents_time(data: ExperimentRuns, *, statistic: str = "mean", seed: int = 0) -> Figure:
    """Per LR schedule: eval success vs wall-clock seconds, one line per agent count."""
    schedules = column(data, LR_KEY, LR_ORDER)
    label_keys = [k for k in data.varied if k != LR_KEY]
    colors = label_colors([config_label(c, label_keys) for _, c in data.configs.iterrows()])
    curves = wall_time_curves(data.tidy, SUCCESS)
    fig, axes = new_figure(1, len(schedules))
    for c, schedule in enumerate(schedules):
        ax = axes[0, c]
        configs = where(data.configs, LR_KEY, schedule)
        plot_configs(ax, curves, configs, label_keys, colors, statistic=statistic, seed=seed)
        ax.set_title(f"LR schedule: {format_value(schedule)}" if schedule is not None else "all runs")
        ax.set_xlabel(TIME_LABEL)
        ax.set_ylabel(data.success_label)
        ax.set_ylim(-0.03, 1.03)
    fig.suptitle(f"{data.name}: eval success vs wall-clock time by agent count\n{band_note(statistic)}")
    return fig


# ---- DQT figure 5 ------------------------------------------------------------------------

def figure_tasks(data: ExperimentRuns, auc: AucTable, *, statistic: str = "mean") -> Figure:
    """Success AUC per task (panels): bars per setting (x; a noise setting in the paper's grid)
    and robust estimator (hue, when it varies)."""
    table = auc.table
    tasks = column(data, TASK_KEY)
    robusts = column(data, ROBUST_KEY, ROBUST_ORDER)
    noise_grid = ROBUST_KEY in data.varied
    setting_keys = [k for k in data.varied if k not in (TASK_KEY, ROBUST_KEY)]
    common = common_values([row for _, row in table.iterrows()], setting_keys)
    settings = list(dict.fromkeys(config_label(row, setting_keys, common) for _, row in table.iterrows()))
    colors = label_colors([str(r) for r in robusts])
    ncols = min(len(tasks), 4)
    nrows = -(-len(tasks) // ncols)
    longest = max((len(name) for name in settings), default=0)
    fig, axes = new_figure(nrows, ncols, width=max(3.6, 1.1 * len(settings) * max(1, len(robusts)) + 1.5),
                            height=3.2 + 0.06 * longest)
    center = "auc_iqm" if statistic == "iqm" else "auc_mean"
    lo_col, hi_col = (("auc_iqm_ci_low", "auc_iqm_ci_high") if statistic == "iqm"
                      else ("auc_ci_low", "auc_ci_high"))
    width = 0.8 / max(1, len(robusts))
    for i, task in enumerate(tasks):
        ax = axes[i // ncols, i % ncols]
        in_task = where(table, TASK_KEY, task)
        for h, robust in enumerate(robusts):
            rows = where(in_task, ROBUST_KEY, robust)
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
    tasks = column(data, TASK_KEY) if TASK_KEY in data.varied else [None]
    keys = [k for k in data.varied if k != TASK_KEY] if tasks != [None] else list(data.varied)
    rows = [c for _, c in data.configs.iterrows()]
    common = common_values(rows, keys)
    colors = label_colors(list(dict.fromkeys(config_label(c, keys, common) for c in rows)))
    fig = Figure(figsize=(max(6.5, 4.6 * len(tasks)), 8.0 + 0.22 * min(len(colors), MAX_LEGEND)),
                 layout="constrained")
    metric_rows = step_rows(data)
    axes = fig.subplots(len(metric_rows), len(tasks), squeeze=False)
    curves = {metric: metric_curves(data.tidy, metric) for metric, _ in metric_rows}
    for j, task in enumerate(tasks):
        configs = data.configs if task is None else where(data.configs, TASK_KEY, task)
        for i, (metric, ylabel) in enumerate(metric_rows):
            ax = axes[i, j]
            plot_configs(ax, curves[metric], configs, keys, colors, statistic=statistic, seed=seed,
                          common=common, legend=False)
            steps_axis(ax, data.step_label)
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
    fig.suptitle(f"{data.name}: eval return and success per configuration\n{band_note(statistic)}")
    return fig


def applicable(data: ExperimentRuns) -> list[str]:
    """The figures an experiment gets, decided by which params vary across its runs."""
    names = ["success"]
    if any(k in data.varied for k in AGENTS_KEYS):
        names.append("agents")
        if (data.tidy["metric"] == WALL).any() and (data.tidy["metric"] == SUCCESS).any():
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
