"""Read an experiment's training runs from MLflow into one tidy table, cached per run.

The tidy table has one row per (run, metric, step) and these columns:

    run_id, run_name, status, start_time, end_time, parent_run_id    the run (times in ms)
    config_hash, seed, sweep, profile                                its dqt tags
    metric, step, value, timestamp                                   one logged point
    <param key>, ...                                                 e.g. "trainer.num_agents"

Params keep their raw MLflow keys as column names: the run config's keys are already
namespaced ("section.field"), so they cannot collide with the base columns, which have no
dot; a param that does collide (a run logged by another tool) is renamed "param.<key>".
Param values are parsed back from MLflow's strings into int / float / bool where they look
like one, so ``runs["noise.std"] == 1`` works.  Run-level columns are categoricals because a
paper-scale sweep has ~10^6 points and ~50 params: codes keep that in tens of MB.

Only training runs are read: parent runs (tag ``dqt.role=parent``) hold no curves.  A run
without a ``config_hash`` tag (logged by hand) gets a hash of its params without the seed.

Cache: each run's metric histories are pickled to ``<cache_dir>/<run_id>.pkl`` with the run's
fingerprint -- status, end time and the (step, timestamp) of the latest point of every metric,
which ``search_runs`` returns at no cost.  Logging any new point changes its metric's latest
(step, timestamp), so an unchanged fingerprint means an unchanged history: a second call reads
only runs that changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd
from mlflow.entities import Experiment, Run, ViewType
from mlflow.tracking import MlflowClient

from core.config import ConfigError

SUCCESS = "eval/success_rate"
EVAL_RETURN = "eval/return"  # greedy, noise-free eval episodes, logged with eval/success_rate
RETURN = "train/episode_return"
WALL = "time/wall_s"

ROLE_TAG = "dqt.role"
PARENT_ROLE = "parent"
# Seeds are what the mean is taken over, so they never define a configuration.
SEED_PARAMS = frozenset({"trainer.seed"})

RUN_COLUMNS = (
    "run_id", "run_name", "status", "start_time", "end_time", "parent_run_id",
    "config_hash", "seed", "sweep", "profile",
)
POINT_COLUMNS = ("metric", "step", "value", "timestamp")
BASE_COLUMNS = RUN_COLUMNS + POINT_COLUMNS

# Legend names of the params the paper varies; any other key shows its last dotted part.
PRETTY_NAMES = {
    "trainer.num_agents": "agents",
    "learner.lr_schedule": "LR",
    "noise.mean": "μ",
    "noise.std": "σ",
    "noise.robust": "robust",
    "trainer.task": "task",
}
# Labels list these first, in the paper's order of importance; other params follow by name.
LABEL_ORDER = tuple(PRETTY_NAMES)

Curve = tuple[np.ndarray, np.ndarray]


# ---- the store ---------------------------------------------------------------------------

def open_client(tracking_uri: str) -> MlflowClient:
    """A client for `tracking_uri`; a local store that does not exist is bad input.

    MLflow would silently create an empty SQLite file or mlruns folder, which is never what
    ``dqt figures`` on a mistyped path wants.
    """
    path = local_store_path(tracking_uri)
    if path is not None and not path.exists():
        raise ConfigError(f"no MLflow store at {path} (run a sweep first, or pass --tracking-uri)")
    return MlflowClient(tracking_uri=tracking_uri)


def local_store_path(tracking_uri: str) -> Path | None:
    """The file or folder behind a local tracking URI (SQLite, file store); None for servers."""
    if tracking_uri.startswith("sqlite:///"):
        rest = tracking_uri[len("sqlite:///"):]
        return None if rest in ("", ":memory:") else Path(rest)
    if tracking_uri.startswith("file:"):
        return Path(urlparse(tracking_uri).path)
    if "://" not in tracking_uri:
        return Path(tracking_uri)
    return None


def find_experiment(client: MlflowClient, name: str, tracking_uri: str) -> Experiment:
    """The active experiment called `name`, or a ConfigError listing the known ones."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None or experiment.lifecycle_stage != "active":
        known = sorted(e.name for e in client.search_experiments())
        raise ConfigError(
            f"experiment '{name}' not found in {tracking_uri} (known: {', '.join(known) or 'none'})"
        )
    return experiment


def experiments_with_runs(client: MlflowClient) -> list[str]:
    """Names of the active experiments holding at least one run, sorted."""
    return sorted(
        e.name for e in client.search_experiments()
        if client.search_runs([e.experiment_id], max_results=1)
    )


def training_runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    """Every active run of the experiment except sweep parents, oldest first."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000,
            order_by=["attributes.start_time ASC"], page_token=token,
        )
        runs.extend(r for r in page if r.data.tags.get(ROLE_TAG) != PARENT_ROLE)
        token = page.token
        if not token:
            return runs


def latest_parent_run(client: MlflowClient, experiment_id: str, profile: str | None = None) -> Run | None:
    """The most recently started sweep parent run of the experiment (of `profile`, if given)."""
    parents = client.search_runs(
        [experiment_id], filter_string=f"tags.`{ROLE_TAG}` = '{PARENT_ROLE}'",
        run_view_type=ViewType.ACTIVE_ONLY, order_by=["attributes.start_time DESC"], max_results=1000,
    )
    # Filtered here, not in the query: a profile name then needs no quoting rules.
    return next((r for r in parents if profile is None or r.data.tags.get("profile") == profile), None)


# ---- one run -----------------------------------------------------------------------------

_INT = re.compile(r"[+-]?\d+")


def parse_value(text: str | None) -> Any:
    """An MLflow param/tag string back as int, float or bool where it is one."""
    if text is None:
        return None
    if _INT.fullmatch(text):
        return int(text)
    if text in ("True", "False", "true", "false"):
        return text.lower() == "true"
    if "_" not in text:  # float() accepts "1_0", a config value never looks like that
        try:
            return float(text)
        except ValueError:
            pass
    return text


def fingerprint(run: Run) -> tuple:
    """What changes whenever the run's histories change (see the module docstring)."""
    latest = sorted((m.key, m.step, m.timestamp) for m in run.data.to_proto().metrics)
    return (run.info.status, run.info.end_time, tuple(latest))


def read_history(client: MlflowClient, run: Run) -> pd.DataFrame:
    """Every logged point of every metric of the run: columns metric, step, value, timestamp."""
    keys: list[str] = []
    steps: list[int] = []
    values: list[float] = []
    stamps: list[int] = []
    for key in sorted(run.data.metrics):
        for point in client.get_metric_history(run.info.run_id, key):
            keys.append(key)
            steps.append(point.step)
            values.append(point.value)
            stamps.append(point.timestamp)
    return pd.DataFrame({
        "metric": pd.Series(keys, dtype=object),
        "step": np.asarray(steps, dtype=np.int64),
        "value": np.asarray(values, dtype=np.float64),
        "timestamp": np.asarray(stamps, dtype=np.int64),
    })


def cached_history(client: MlflowClient, run: Run, cache_dir: Path | None) -> pd.DataFrame:
    """`read_history`, skipped when ``<cache_dir>/<run_id>.pkl`` has the run's fingerprint."""
    if cache_dir is None:
        return read_history(client, run)
    path = Path(cache_dir) / f"{run.info.run_id}.pkl"
    key = fingerprint(run)
    try:
        with path.open("rb") as fh:
            cached = pickle.load(fh)
        if cached["fingerprint"] == key:
            return cached["points"]
    except Exception:  # missing, stale-format or half-written cache: just read the run again
        pass
    points = read_history(client, run)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with tmp.open("wb") as fh:
        pickle.dump({"fingerprint": key, "points": points}, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)  # atomic, so a concurrent reader never sees half a file
    return points


def params_hash(params: Mapping[str, str]) -> str:
    """A 12-hex id of a run's params without its seed, for runs without a config_hash tag."""
    blob = json.dumps({k: v for k, v in params.items() if k not in SEED_PARAMS}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_row(run: Run) -> dict[str, Any]:
    """The run-level columns of the tidy table for one run."""
    tags, params = run.data.tags, run.data.params
    row: dict[str, Any] = {
        "run_id": run.info.run_id,
        "run_name": tags.get("mlflow.runName", run.info.run_name),
        "status": run.info.status,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "parent_run_id": tags.get("mlflow.parentRunId"),
        "config_hash": tags.get("config_hash") or params_hash(params),
        "seed": parse_value(tags.get("seed", params.get("trainer.seed"))),
        "sweep": tags.get("sweep"),
        "profile": tags.get("profile"),
    }
    for key, value in params.items():
        row[f"param.{key}" if key in BASE_COLUMNS else key] = parse_value(value)
    return row


# ---- the tidy table ----------------------------------------------------------------------

def load_tidy(
    experiment: str,
    tracking_uri: str,
    *,
    cache_dir: Path | None = None,
    metrics: Iterable[str] | None = None,
    client: MlflowClient | None = None,
) -> pd.DataFrame:
    """The tidy table of every training run of `experiment` (see the module docstring).

    `metrics` keeps only those metric names (the cache always holds every metric, so a later
    call asking for more does not re-read).  An unknown experiment raises ConfigError.
    """
    client = client or open_client(tracking_uri)
    exp = find_experiment(client, experiment, tracking_uri)
    wanted = None if metrics is None else set(metrics)
    rows: list[dict[str, Any]] = []
    parts: list[pd.DataFrame] = []
    for run in training_runs(client, exp.experiment_id):
        points = cached_history(client, run, cache_dir)
        if wanted is not None:
            points = points[points["metric"].isin(wanted)]
        rows.append(run_row(run))
        parts.append(points.assign(run_id=run.info.run_id))
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in BASE_COLUMNS})
    run_frame = pd.DataFrame(rows)
    for col in run_frame.columns:
        if col != "run_id":  # categorical before the merge, so the big table never holds objects
            run_frame[col] = run_frame[col].astype("category")
    points = pd.concat(parts, ignore_index=True)
    tidy = points.merge(run_frame, on="run_id", how="left", validate="many_to_one")
    tidy["run_id"] = tidy["run_id"].astype("category")
    tidy["metric"] = tidy["metric"].astype("category")
    params = sorted(c for c in tidy.columns if c not in BASE_COLUMNS)
    return tidy[list(BASE_COLUMNS) + params]


def param_columns(frame: pd.DataFrame) -> list[str]:
    """The param columns of a tidy or run table (everything that is not a base column)."""
    return [c for c in frame.columns if c not in BASE_COLUMNS and c != "label"]


def run_table(tidy: pd.DataFrame) -> pd.DataFrame:
    """One row per run of a tidy table: the run-level and param columns as plain dtypes."""
    cols = [c for c in tidy.columns if c not in POINT_COLUMNS]
    runs = tidy[cols].drop_duplicates("run_id").reset_index(drop=True)
    plain = {c: np.asarray(runs[c], dtype=object) for c in cols}
    return pd.DataFrame(plain).infer_objects()


# ---- which runs count, and what their configurations are called ---------------------------

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


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """Legend names for param keys: the paper's symbols, else the last dotted part if unique."""
    tails = [k.rsplit(".", 1)[-1] for k in keys]
    return {
        k: PRETTY_NAMES.get(k, t if tails.count(t) == 1 else k) for k, t in zip(keys, tails, strict=True)
    }


def format_value(value: Any) -> str:
    """A param value as a legend shows it: 10.0 -> "10", 0.10000 -> "0.1"."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return str(value)


def config_label(values: Mapping[str, Any], keys: Sequence[str]) -> str:
    """``"agents=4, LR=linear"`` from a run's values of `keys`; "all runs" when none vary."""
    names = short_names(keys)
    return ", ".join(f"{names[k]}={format_value(values[k])}" for k in keys) or "all runs"


def configurations(runs: pd.DataFrame, varied: Sequence[str]) -> pd.DataFrame:
    """One row per configuration: config_hash, label, the varied params, seeds, run_ids.

    Sorted by the varied params so tables and legends read in order.  Two configurations
    with the same label (they differ only in a param that is not varied elsewhere, which
    should not happen) get their hash appended so they never merge in a legend.
    """
    rows = []
    for config_hash, group in runs.groupby("config_hash", sort=False):
        first = group.iloc[0]
        row = {"config_hash": config_hash, "label": config_label(first, varied)}
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
    """

    name: str
    tidy: pd.DataFrame
    runs: pd.DataFrame
    configs: pd.DataFrame
    varied: list[str]
    notes: list[str] = field(default_factory=list)
    profile: str | None = None


def prepare(
    name: str, tidy: pd.DataFrame, include_unfinished: bool = False, profile: str | None = None
) -> ExperimentRuns:
    """Select the runs of a tidy table (one profile, finished, once per point) and name their
    configurations.  Raises ConfigError for a `profile` that no run has."""
    runs, profile, notes = select_profile(run_table(tidy), profile)
    runs, more = select_runs(runs, include_unfinished)
    notes += more
    varied = varied_params(runs)
    configs = configurations(runs, varied)
    labels = dict(zip(configs["config_hash"], configs["label"], strict=True))
    runs = runs.assign(label=runs["config_hash"].map(labels))
    kept = tidy[tidy["run_id"].isin(set(runs["run_id"]))]
    return ExperimentRuns(name, kept, runs, configs, varied, notes, profile)


# ---- curves ------------------------------------------------------------------------------

def metric_curves(tidy: pd.DataFrame, metric: str) -> dict[str, Curve]:
    """Per run, the metric as (steps, values) sorted by step, NaNs dropped.

    Points logged twice at one step (two agents ending episodes at the same global step, a
    resumed run logging an eval again) are averaged, so every curve is a function of step.
    """
    sub = tidy.loc[tidy["metric"] == metric, ["run_id", "step", "value"]].dropna(subset=["value"])
    curves: dict[str, Curve] = {}
    for run_id, group in sub.groupby("run_id", observed=True, sort=False):
        mean = group.groupby("step", sort=True)["value"].mean()
        curves[str(run_id)] = (mean.index.to_numpy(dtype=float), mean.to_numpy(dtype=float))
    return curves


def wall_time_curves(tidy: pd.DataFrame, metric: str) -> dict[str, Curve]:
    """Per run, the metric against wall-clock seconds instead of env steps.

    ``time/wall_s`` is logged with step = env steps like every metric, so each point's time is
    the run's wall-clock curve interpolated at its step.  Runs without it are left out.
    """
    walls = metric_curves(tidy, WALL)
    curves: dict[str, Curve] = {}
    for run_id, (steps, values) in metric_curves(tidy, metric).items():
        if run_id in walls:
            wall_steps, seconds = walls[run_id]
            # A clock never runs backwards; a resumed run's restart must not fold the curve.
            times = np.interp(steps, wall_steps, np.maximum.accumulate(seconds))
            curves[run_id] = (times, values)
    return curves
