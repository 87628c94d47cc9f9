"""One experiment's report: figures, ``summary.csv`` and ``report.md``, logged to MLflow.

`build_report` is the whole of ``dqt figures EXPERIMENT``: read the runs (cached), compute
the success AUC per configuration, draw the applicable figures, write everything to
``<out_root>/<experiment>/`` and log the same files as artifacts (under ``report/``) of the
experiment's latest sweep parent run, when there is one.

``summary.csv`` has one row per configuration: config_hash, label, the varied params,
auc_mean, auc_ci_low, auc_ci_high, auc_iqm, auc_iqm_ci_low, auc_iqm_ci_high, seeds, budget
(the env steps [0, budget] each of its runs' AUC spans).  A configuration of one seed has no
CI: its CI cells are empty in summary.csv and "n/a" in report.md.
``report.md`` shows the same numbers (3 decimals) and embeds the figures by relative link, so
the folder reads the same on disk, on GitHub and in the MLflow artifact view.  When the runs
have different budgets (``trainer.train_steps``), report.md says so and shows one AUC table
per budget: AUCs over different step ranges are never ranked against each other.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from dqt.analysis.auc import BUDGET_KEY, AucTable, auc_table
from dqt.analysis.figures import DESCRIPTIONS, build_figures, save_figure
from dqt.analysis.labels import format_value
from dqt.analysis.load import EVAL_RETURN, SUCCESS, WALL, load_tidy
from dqt.analysis.selection import ExperimentRuns, prepare
from dqt.analysis.store import find_experiment, latest_parent_run, open_client
from dqt.core.config import ConfigError

ARTIFACT_PATH = "report"


def figure_metric_names() -> tuple[str, ...]:
    """The metrics the figures read (the declared figure rows, success for the AUC, wall time);
    the cache still holds every metric of a run."""
    from dqt.core.metrics import figure_metrics

    return tuple(dict.fromkeys([*(m.name for m in figure_metrics()), SUCCESS, EVAL_RETURN, WALL]))


BOOTSTRAP_RESAMPLES = 10_000


@dataclass(frozen=True)
class ReportResult:
    """What `build_report` wrote: the folder, every file, the figures, the parent run the files
    were logged to (None when there is none or logging was off or failed), and the runs and
    AUCs they show."""

    experiment: str
    out_dir: Path
    files: list[Path]
    figures: list[str]
    parent_run_id: str | None
    data: ExperimentRuns | None = None  # the runs the files were drawn from
    auc: AucTable | None = None


def summary_frame(auc: AucTable) -> pd.DataFrame:
    """The per-configuration AUC table as written to summary.csv."""
    return auc.table.reset_index(drop=True)


def _num(value: float) -> str:
    return "–" if value is None or np.isnan(value) else f"{value:.3f}"


def _ci(low: float, high: float) -> str:
    """A CI cell: "[low, high]", or "n/a" when there is none (one seed, or no AUC)."""
    if low is None or high is None or np.isnan(low) or np.isnan(high):
        return "n/a"
    return f"[{_num(low)}, {_num(high)}]"


def _steps(value: float) -> str:
    return f"{value:,.0f}"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _cell(value: object) -> str:
    return format_value(value).replace("|", "\\|")


def markdown_auc_table(auc: AucTable, varied: Sequence[str], rows: pd.DataFrame | None = None) -> str:
    """The AUC table (or its `rows`) as GitHub Markdown, one row per configuration; a missing
    CI (one seed) reads "n/a"."""
    head = ["configuration", *varied, "mean AUC", "95% CI", "IQM", "IQM 95% CI", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * (1 + len(varied)) + ["---:"] * 5) + "|"]
    for _, row in (auc.table if rows is None else rows).iterrows():
        cells = [_cell(row["label"]), *(_cell(row[k]) for k in varied),
                 _num(row["auc_mean"]), _ci(row["auc_ci_low"], row["auc_ci_high"]),
                 _num(row["auc_iqm"]), _ci(row["auc_iqm_ci_low"], row["auc_iqm_ci_high"]),
                 str(int(row["seeds"]))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _best(rows: pd.DataFrame) -> list[str]:
    """The "highest mean AUC" line of a table of at least two configurations with an AUC."""
    ranked = rows.dropna(subset=["auc_mean"])
    if len(ranked) < 2:
        return []
    best = ranked.loc[ranked["auc_mean"].idxmax()]
    return [f"Highest mean AUC: **{_cell(best['label'])}** ({_num(best['auc_mean'])}).", ""]


def render_report(
    data: ExperimentRuns,
    auc: AucTable,
    figures: Sequence[str],
    *,
    tracking_uri: str,
    parent_run_id: str | None,
    seed: int,
) -> str:
    """The text of report.md."""
    seeds = data.configs["seeds"] if len(data.configs) else pd.Series([0])
    seed_range = f"{seeds.min()}" if seeds.nunique() <= 1 else f"{seeds.min()}–{seeds.max()}"
    varied = ", ".join(f"`{k}`" for k in data.varied) or "none"
    out = [f"# `{data.name}`: DQT sweep report", ""]
    out.append(f"- Store `{tracking_uri}`, experiment `{data.name}`"
               + (f", profile `{data.profile}`" if data.profile else "")
               + (f"; sweep parent run `{parent_run_id}` (these files are also its artifacts under "
                  f"`{ARTIFACT_PATH}/`)." if parent_run_id else "."))
    out.append(f"- {_plural(len(data.runs), 'training run')} in {_plural(len(data.configs), 'configuration')}, "
               f"{seed_range} seed(s) each. Varied params: {varied}.")
    out.extend(f"- Note: {note}." for note in [*data.notes, *auc.notes])
    out += ["", "## Success AUC", ""]
    budgets = auc.budget_values()
    span = (f"[0, {_steps(budgets[0])}] env steps" if len(budgets) == 1
            else "[0, its own budget]" if budgets else "no budget (no eval curve)")
    out.append(
        "A run's AUC is the area under its eval success-rate curve over env steps "
        f"[0, budget] divided by the budget (`{BUDGET_KEY}`; here {span}): 0 = never succeeds, "
        "1 = succeeds at every evaluation. The curve is linear between evaluations, holds the "
        "first value before the first evaluation and carries the last value to the budget, so a "
        "run's AUC depends on that run alone. Per configuration: mean over seeds with a 95% "
        f"bootstrap CI (BCa; percentile for two seeds or equal values; {BOOTSTRAP_RESAMPLES:,} resamples "
        f"of the seeds, seed {seed}), and the interquartile mean (IQM) with its CI; a single seed has "
        "no CI (n/a)."
    )
    if len(budgets) > 1:
        out += ["", f"**Runs of {len(budgets)} different budgets** (`{BUDGET_KEY}` = "
                f"{', '.join(_steps(b) for b in budgets)} env steps): AUCs over different step ranges "
                "are not comparable, so each budget has its own table below and no configuration is "
                "ranked against one of another budget.", ""]
        for budget in budgets:
            rows = auc.table[np.isclose(auc.table["budget"].to_numpy(dtype=float), budget)]
            out += [f"### Budget {_steps(budget)} env steps", "", markdown_auc_table(auc, data.varied, rows), ""]
            out += _best(rows)
        rest = auc.table[~np.isfinite(auc.table["budget"].to_numpy(dtype=float))]
        if len(rest):
            out += ["### No eval curve", "", markdown_auc_table(auc, data.varied, rest), ""]
    else:
        out += ["", markdown_auc_table(auc, data.varied), ""]
        out += _best(auc.table)
    out += ["## Figures", ""]
    for name in figures:
        out += [f"### {name}", "", DESCRIPTIONS.get(name, ""), "", f"![{name}]({name}.png)", "",
                f"[{name}.pdf]({name}.pdf)", ""]
    return "\n".join(out)


def log_to_parent(client: MlflowClient, run_id: str, files: Sequence[Path]) -> bool:
    """Log `files` as artifacts of run `run_id` under ``report/``; False (with a warning on
    stderr) when the artifact store refuses -- the files on disk are the primary output."""
    try:
        for path in files:
            client.log_artifact(run_id, str(path), artifact_path=ARTIFACT_PATH)
    except (MlflowException, OSError) as exc:
        print(f"dqt figures: warning: could not log the report to run {run_id}: {exc}", file=sys.stderr)
        return False
    return True


def build_report(
    experiment: str,
    tracking_uri: str,
    out_root: Path,
    *,
    cache_dir: Path | None = None,
    include_unfinished: bool = False,
    profile: str | None = None,
    statistic: str = "mean",
    seed: int = 0,
    log_artifacts: bool = True,
    client: MlflowClient | None = None,
) -> ReportResult:
    """Figures, summary.csv and report.md of `experiment` in ``out_root/<experiment>/``.

    `profile` picks the sweep profile (default: that of the latest run; "all": every run).
    Raises ConfigError for an unknown experiment, one without training runs, or an unknown
    profile.
    """
    client = client or open_client(tracking_uri)
    tidy = load_tidy(experiment, tracking_uri, cache_dir=cache_dir, metrics=figure_metric_names(), client=client)
    if tidy.empty:
        raise ConfigError(f"experiment '{experiment}' has no training runs with metrics in {tracking_uri}")
    data = prepare(experiment, tidy, include_unfinished, profile, figures=True)
    auc = auc_table(data, n_resamples=BOOTSTRAP_RESAMPLES, seed=seed)
    out_dir = Path(out_root) / _safe_name(experiment)
    files: list[Path] = []
    figures = build_figures(data, auc, statistic=statistic, seed=seed)
    for name, fig in figures.items():
        files += save_figure(fig, out_dir, name)
    summary = out_dir / "summary.csv"
    summary_frame(auc).to_csv(summary, index=False)
    exp_id = find_experiment(client, experiment, tracking_uri).experiment_id
    parent = latest_parent_run(client, exp_id, data.profile)
    parent_id = parent.info.run_id if parent is not None and log_artifacts else None
    report = out_dir / "report.md"
    report.write_text(render_report(data, auc, list(figures), tracking_uri=tracking_uri,
                                    parent_run_id=parent_id, seed=seed))
    files += [summary, report]
    if parent_id is not None and not log_to_parent(client, parent_id, files):
        parent_id = None
    return ReportResult(experiment, out_dir, files, list(figures), parent_id, data, auc)


def _safe_name(experiment: str) -> str:
    """The experiment name as one folder name (MLflow allows '/' in names)."""
    return experiment.replace("/", "_").replace("\\", "_") or "_"
