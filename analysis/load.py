"""Read an experiment's training runs from MLflow into one tidy table, cached per run.

The tidy table has one row per (run, metric, step) and these columns:

    run_id, run_name, status, start_time, end_time, parent_run_id    the run (times in ms)
    config_hash, seed, sweep, profile, success_signal                its dqt tags
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

Cache: a `joblib.Memory` in ``cache_dir`` memoises `read_history`, keyed by the run's
`fingerprint` alone -- its id, status, end time and the (step, timestamp) of the latest point
of every metric, which ``search_runs`` returns at no cost.  Logging any new point changes its
metric's latest (step, timestamp), so an unchanged fingerprint means an unchanged history: a
second call reads only runs that changed.  joblib drops the entries when `read_history`'s
code changes and reads a broken entry again.  A run's earlier fingerprints (it was still
running) are never asked for again, so entries not read for `CACHE_MAX_AGE` (by their file's
access time) are deleted.

Opening the store and listing its runs is `analysis.store`; which runs an analysis uses,
`analysis.selection`; what their configurations are called, `analysis.labels`.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from dqt.analysis.store import find_experiment, open_client, training_runs
from dqt.core.config import SEED_KEY, config_hash, recorded_config_hash
from dqt.core.metrics import EVAL_RETURN, SUCCESS  # noqa: F401 - declared once, with the other metrics

RETURN = "train/episode_return"
WALL = "time/wall_s"

# Seeds are what the mean is taken over, so they never define a configuration.
SEED_PARAMS = frozenset({SEED_KEY})

RUN_COLUMNS = (
    "run_id", "run_name", "status", "start_time", "end_time", "parent_run_id",
    "config_hash", "seed", "sweep", "profile", "success_signal",
)
POINT_COLUMNS = ("metric", "step", "value", "timestamp")
BASE_COLUMNS = RUN_COLUMNS + POINT_COLUMNS

# Cache entries not read for this long are deleted (see the module docstring).
CACHE_MAX_AGE = datetime.timedelta(days=30)

Curve = tuple[np.ndarray, np.ndarray]


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
    """The run's id and what changes whenever its histories change: the cache key."""
    latest = sorted((m.key, m.step, m.timestamp) for m in run.data.to_proto().metrics)
    return (run.info.run_id, run.info.status, run.info.end_time, tuple(latest))


def read_history(client: MlflowClient, run: Run, key: tuple = ()) -> pd.DataFrame:
    """Every logged point of every metric of the run: columns metric, step, value, timestamp.

    `key` is unused here: `history_reader` passes the run's `fingerprint` for joblib to key
    the cache by.
    """
    names: list[str] = []
    steps: list[int] = []
    values: list[float] = []
    stamps: list[int] = []
    for name in sorted(run.data.metrics):
        for point in client.get_metric_history(run.info.run_id, name):
            names.append(name)
            steps.append(point.step)
            values.append(point.value)
            stamps.append(point.timestamp)
    return pd.DataFrame({
        "metric": pd.Series(names, dtype=object),
        "step": np.asarray(steps, dtype=np.int64),
        "value": np.asarray(values, dtype=np.float64),
        "timestamp": np.asarray(stamps, dtype=np.int64),
    })


def history_reader(memory: joblib.Memory) -> Callable[[MlflowClient, Run], pd.DataFrame]:
    """f(client, run): `read_history` memoised in `memory` under the run's `fingerprint` (the
    client and the Run object are not part of the key).  ``joblib.Memory(None)`` caches nothing."""
    cached = memory.cache(read_history, ignore=["client", "run"])
    return lambda client, run: cached(client, run, fingerprint(run))


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
        "config_hash": recorded_config_hash(tags, params) or config_hash(params),
        "seed": parse_value(tags.get("seed", params.get("trainer.seed"))),
        "sweep": tags.get("sweep"),
        "profile": tags.get("profile"),
        # "false": the task reports no success flag, so it is judged by its return alone
        "success_signal": tags.get("dqt.success_signal"),
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
    call asking for more does not re-read); `cache_dir` None reads every run.  An unknown
    experiment raises ConfigError.
    """
    client = client or open_client(tracking_uri)
    exp = find_experiment(client, experiment, tracking_uri)
    wanted = None if metrics is None else set(metrics)
    memory = joblib.Memory(cache_dir, verbose=0)
    history = history_reader(memory)
    rows: list[dict[str, Any]] = []
    parts: list[pd.DataFrame] = []
    for run in training_runs(client, exp.experiment_id):
        points = history(client, run)
        if wanted is not None:
            points = points[points["metric"].isin(wanted)]
        rows.append(run_row(run))
        parts.append(points.assign(run_id=run.info.run_id))
    if cache_dir is not None:
        memory.reduce_size(age_limit=CACHE_MAX_AGE)
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
