"""DQT figure 4: eval return and success under reward noise.

Row pairs "μ fixed, σ varies" and "σ fixed, μ varies", each an eval-return row above an
eval-success row; columns noisy (noise.robust = none) and robust (median, ...).  The
noise-free runs (μ = 0 and σ = 0, any estimator) are no line of their own but one black
dashed reference line in every panel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dqt.analysis.labels import config_label, format_value, short_names
from dqt.analysis.load import SUCCESS, metric_curves
from dqt.analysis.plotting import (
    NOISE_FREE_LABEL,
    NOISE_KEYS,
    PREFERRED_FIXED_MEAN,
    PREFERRED_FIXED_STD,
    ROBUST_KEY,
    ROBUST_ORDER,
    band_note,
    column,
    label_colors,
    new_figure,
    ordered,
    plot_configs,
    step_rows,
    steps_axis,
    where,
)
from dqt.analysis.selection import ExperimentRuns


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


def noise_label(data: ExperimentRuns) -> str:
    """How the runs' noise kinds name themselves (`core.noise.NOISE_KINDS`): "N(μ, σ²)" for the paper's."""
    from dqt.core.noise import NOISE_KINDS

    kinds = sorted({str(k) for k in data.runs["noise.kind"].dropna()}) if "noise.kind" in data.runs else []
    labels = [NOISE_KINDS.get(k).label if k in NOISE_KINDS else k for k in kinds or ["gaussian"]]
    return " / ".join(labels)


def figure_noise(data: ExperimentRuns, *, statistic: str = "mean", seed: int = 0) -> Figure:
    """Eval return above eval success vs env steps: row pairs fix μ (σ varies) or σ (μ varies);
    columns per robust estimator, noisy (none) first -- 4 rows x 2 columns for the paper's noise
    sweep.  The noise-free runs (μ 0, σ 0) are one black dashed reference line in every panel."""
    rows = noise_rows(data) or [("", float("nan"), "")]
    noisy = _noisy_configs(data)
    reference = noise_free_run_ids(data)
    robusts = (ordered(noisy[ROBUST_KEY], ROBUST_ORDER) if ROBUST_KEY in noisy.columns and len(noisy)
               else column(data, ROBUST_KEY, ROBUST_ORDER))
    metric_rows = step_rows(data)
    curves = {metric: metric_curves(data.tidy, metric) for metric, _ in metric_rows}
    fig, axes = new_figure(len(metric_rows) * len(rows), len(robusts))
    for r, (fixed_key, fixed_value, varying_key) in enumerate(rows):
        label_keys = [k for k in data.varied if k not in (ROBUST_KEY, fixed_key)]
        in_row = where(noisy, fixed_key, fixed_value) if fixed_key else noisy
        colors = label_colors([config_label(c, label_keys) for _, c in in_row.iterrows()])
        names = short_names([fixed_key, varying_key]) if fixed_key else {}
        row_title = (f"{names[fixed_key]} = {format_value(fixed_value)} fixed, "
                     f"{names[varying_key]} varies" if fixed_key else "")
        for m, (metric, ylabel) in enumerate(metric_rows):
            for c, robust in enumerate(robusts):
                ax = axes[len(metric_rows) * r + m, c]
                configs = where(in_row, ROBUST_KEY, robust)
                plot_configs(ax, curves[metric], configs, label_keys, colors, statistic=statistic, seed=seed,
                              reference=reference)
                ax.set_title(f"{_robust_title(robust)}\n{row_title}".strip(), fontsize="medium")
                steps_axis(ax, data.step_label)
                ax.set_ylabel(ylabel)
                if metric == SUCCESS:
                    ax.set_ylim(-0.03, 1.03)
    ref = f"\ndashed black: {NOISE_FREE_LABEL}, the same in every panel" if reference else ""
    fig.suptitle(f"{data.name}: eval return and success under reward noise {noise_label(data)}, noisy vs robust "
                 f"reward\n{band_note(statistic)}{ref}")
    return fig
