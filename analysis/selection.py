"""Which runs of a tidy table an analysis uses, and their configurations.

`prepare` is the whole job: one sweep profile (`select_profile`), finished runs only and one
run per (configuration, seed) point (`select_runs`), the params that vary across them
(`varied_params`) and one labelled row per configuration (`configurations`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from dqt.analysis.labels import LABEL_ORDER, common_values, config_label
from dqt.analysis.load import SEED_PARAMS, param_columns, run_table
from dqt.core.config import ConfigError, clock_divisor

SUCCESS_KEY = "eval.success"
# runs logged before eval.success existed scored success at any step
SUCCESS_DEFAULT_BEFORE = "any-step"

ALL_PROFILES = "all"


def select_profile(runs: pd.DataFrame, profile: str | None = None) -> tuple[pd.DataFrame, str | None, list[str]]:
    """The runs of one sweep profile, that profile, and a note on what was left out.

    A spec's profiles share its experiment, but a quick profile's 4k-step runs and the paper's
    300k-step runs must not share a figure or an AUC range.  By default the profile of the most
    recently started run is shown; `profile` names another, "all" keeps every run.  A profile
    that no run has is bad input.
    """
    present = sorted({str(p) for p in runs["profile"].dropna()})
    if profile == ALL_PROFILES or (profile is None and len(present) <= 1):
        return runs, (present[0] if len(present) == 1 else None), []
    if profile is None:
        latest = runs.sort_values("start_time")["profile"].dropna()
        profile = str(latest.iloc[-1])
    elif profile not in present:
        raise ConfigError(f"no run of profile '{profile}' (profiles here: {', '.join(present) or 'none'}, "
                          f"or '{ALL_PROFILES}')")
    kept = runs[runs["profile"] == profile]
    others = sorted(set(present) - {profile})
    notes = [f"{len(runs) - len(kept)} run(s) of profile(s) {', '.join(others)} left out "
             f"(pass --profile NAME or --profile {ALL_PROFILES})"] if len(kept) < len(runs) else []
    return kept, profile, notes


def select_runs(runs: pd.DataFrame, include_unfinished: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """The runs to analyse, and notes on what was left out and why.

    Unfinished runs (RUNNING, FAILED, KILLED) are left out unless asked for or unless none has
    finished: an interrupted run's AUC would carry its last eval value to the budget, and its
    short curve would cut its configuration's mean curve short in the figures.  A
    (configuration, seed) point run twice (a resumed sweep) counts once: its finished run if
    any, else its latest.
    """
    notes: list[str] = []
    finished = runs["status"] == "FINISHED"
    if not include_unfinished:
        if finished.any():
            if (~finished).any():
                notes.append(f"{int((~finished).sum())} unfinished run(s) left out "
                             "(pass --include-unfinished to keep them)")
            runs = runs[finished]
        elif len(runs):
            notes.append("no run has finished yet: the unfinished runs are shown")
    order = runs.assign(_done=runs["status"] == "FINISHED").sort_values(["_done", "start_time"])
    kept = order.drop_duplicates(["config_hash", "seed"], keep="last").drop(columns="_done")
    if len(kept) < len(runs):
        notes.append(f"{len(runs) - len(kept)} repeated run(s) of a (configuration, seed) point "
                     "left out (the finished or latest one counts)")
    return kept.sort_values("start_time").reset_index(drop=True), notes


def varied_params(runs: pd.DataFrame) -> list[str]:
    """The params that differ across the runs (seed excluded), in label order."""
    varied = [
        c for c in param_columns(runs)
        if c not in SEED_PARAMS and runs[c].astype(str).nunique(dropna=False) > 1
    ]
    known = [k for k in LABEL_ORDER if k in varied]
    return known + sorted(k for k in varied if k not in known)


def configurations(runs: pd.DataFrame, varied: Sequence[str]) -> pd.DataFrame:
    """One row per configuration: config_hash, label, the varied params, seeds, run_ids.

    Sorted by the varied params so tables and legends read in order.  With many varied params
    a label names only the values that differ from the common ones (`labels.common_values`).
    Two configurations
    with the same label (they differ only in a param that is not varied elsewhere, which
    should not happen) get their hash appended so they never merge in a legend.
    """
    rows = []
    firsts = {h: g.iloc[0] for h, g in runs.groupby("config_hash", sort=False)}
    common = common_values(list(firsts.values()), varied)  # many params vary: name only the differences
    for config_hash, group in runs.groupby("config_hash", sort=False):
        first = firsts[config_hash]
        row = {"config_hash": config_hash, "label": config_label(first, varied, common)}
        row.update({k: first[k] for k in varied})
        row["seeds"] = int(group["seed"].nunique(dropna=False))
        row["run_ids"] = list(group["run_id"])
        rows.append(row)
    table = pd.DataFrame(rows, columns=["config_hash", "label", *varied, "seeds", "run_ids"])
    if len(table):
        table = table.sort_values([*varied, "config_hash"], key=_sort_key).reset_index(drop=True)
        dup = table["label"].duplicated(keep=False)
        table.loc[dup, "label"] = table.loc[dup, "label"] + " [" + table.loc[dup, "config_hash"].str[:7] + "]"
    return table


def _sort_key(col: pd.Series) -> pd.Series:
    """Numbers in numeric order, everything else by its text, in one sortable column."""
    numeric = pd.to_numeric(col, errors="coerce")
    if numeric.notna().all():
        return numeric
    return col.astype(str)


@dataclass(frozen=True)
class ExperimentRuns:
    """The runs of one experiment that an analysis uses, with their configurations.

    Attributes:
        name: the MLflow experiment name.
        tidy: the tidy table restricted to the selected runs.
        runs: one row per selected run (plain dtypes) with its configuration ``label``.
        configs: one row per configuration (see `configurations`).
        varied: the param keys that differ across the selected runs.
        notes: what `select_profile` and `select_runs` left out, for the report.
        profile: the sweep profile shown (None: no profile tag, or every profile).
        step_label: what the tidy table's steps count (`on_budget_clock`).
        success_label: which success convention eval/success_rate holds (`success_convention`).
        rows: the declared figure metrics these runs have (`figure_rows`), one row each.
    """

    name: str
    tidy: pd.DataFrame
    runs: pd.DataFrame
    configs: pd.DataFrame
    varied: list[str]
    notes: list[str] = field(default_factory=list)
    profile: str | None = None
    step_label: str = "env steps (all agents)"
    success_label: str = "eval success, last step (the paper's)"
    rows: tuple[tuple[str, str], ...] = ()  # (metric, axis label) of every figure against env steps


def on_budget_clock(runs: pd.DataFrame, tidy: pd.DataFrame) -> tuple[pd.DataFrame, str, list[str]]:
    """The tidy table with each run's steps on its budget's clock, what they count, and a note.

    MLflow steps are env steps of all agents. A run with ``trainer.budget = per-agent`` (the
    DQT code's figure 2: each of n agents runs ``trainer.train_steps``) is drawn, and its AUC
    taken, over one agent's env steps (step / n), as the paper drew it; its budget
    (``trainer.train_steps``) counts on that clock too.
    """
    from dqt.analysis.plotting import STEP_LABEL, STEP_LABEL_MIXED, STEP_LABEL_PER_AGENT

    budget = runs["trainer.budget"].astype(str) if "trainer.budget" in runs.columns else pd.Series(dtype=str)
    per_agent = int((budget == "per-agent").sum())
    if not per_agent:
        return tidy, STEP_LABEL, []
    divisor = {str(r["run_id"]): clock_divisor(r) for _, r in runs.iterrows()}
    scale = tidy["run_id"].astype(str).map(divisor).fillna(1).to_numpy(dtype=float)
    tidy = tidy.assign(step=tidy["step"].to_numpy(dtype=float) / scale)
    if per_agent == len(runs):
        return tidy, STEP_LABEL_PER_AGENT, []
    return tidy, STEP_LABEL_MIXED, [f"{per_agent} of {len(runs)} runs have a per-agent budget: their steps "
                                    "are one agent's (env steps / num_agents), the others' all agents'"]


def figure_rows(name: str, runs: pd.DataFrame, tidy: pd.DataFrame, success_label: str,
                strict: bool = True) -> tuple[tuple[tuple[str, str], ...], list[str]]:
    """The rows of every figure against env steps: the declared figure metrics
    (`core.metrics.figure_metrics`), each with its axis label, and a note for what is left out.

    A success metric is left out when every run's task reports no success flag (those runs are
    judged by their return alone); any other declared metric that no run logged is an error
    that names it, since a figure must not silently show "no runs" where a metric is missing
    (with `strict` off, e.g. for a table read with only some metrics, it is left out)."""
    from dqt.core.metrics import SUCCESS, figure_metrics

    logged = set(tidy["metric"].unique()) if len(tidy) else set()
    no_signal = "success_signal" in runs.columns and len(runs) and (runs["success_signal"] == "false").all()
    rows, notes = [], []
    for m in figure_metrics():
        if m.name in logged:
            rows.append((m.name, success_label if m.name == SUCCESS else m.label))
        elif m.needs_success and no_signal:
            notes.append(f"the task reports no success signal: its runs are judged by their return alone "
                         f"(no {m.name})")
        elif strict:
            raise ConfigError(f"experiment '{name}': no run logged the figure metric '{m.name}' "
                              f"({m.label}; declared in dqt.core.metrics)")
    return tuple(rows), notes


def success_convention(runs: pd.DataFrame) -> tuple[str, list[str]]:
    """The axis label of eval/success_rate for these runs, and a note if they mix conventions."""
    from dqt.analysis.plotting import SUCCESS_LABELS

    values = (runs[SUCCESS_KEY].astype(object).where(runs[SUCCESS_KEY].notna(), SUCCESS_DEFAULT_BEFORE)
              if SUCCESS_KEY in runs.columns else pd.Series([SUCCESS_DEFAULT_BEFORE] * len(runs), dtype=object))
    found = sorted({str(v) for v in values})
    if len(found) == 1:
        return SUCCESS_LABELS.get(found[0], f"eval success ({found[0]})"), []
    return ("eval success (mixed conventions)",
            [f"the runs score eval success under different conventions ({', '.join(found)}; `{SUCCESS_KEY}`): "
             "their curves and AUCs are not comparable"])


def prepare(
    name: str, tidy: pd.DataFrame, include_unfinished: bool = False, profile: str | None = None,
    figures: bool = False,
) -> ExperimentRuns:
    """Select the runs of a tidy table (one profile, finished, once per point) and name their
    configurations.  Raises ConfigError for a `profile` that no run has, and, for `figures`,
    for a declared figure metric that no run logged (`figure_rows`)."""
    runs, profile, notes = select_profile(run_table(tidy), profile)
    runs, more = select_runs(runs, include_unfinished)
    notes += more
    varied = varied_params(runs)
    configs = configurations(runs, varied)
    labels = dict(zip(configs["config_hash"], configs["label"], strict=True))
    runs = runs.assign(label=runs["config_hash"].map(labels))
    kept = tidy[tidy["run_id"].isin(set(runs["run_id"]))]
    kept, step_label, more = on_budget_clock(runs, kept)
    success_label, also = success_convention(runs)
    rows, left_out = figure_rows(name, runs, kept, success_label, strict=figures)
    return ExperimentRuns(name, kept, runs, configs, varied, notes + more + also + left_out, profile, step_label,
                          success_label, rows)
