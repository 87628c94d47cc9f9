"""Reading runs from MLflow: the store, the tidy table, its per-run cache (joblib), curves."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import empty_store
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from dqt.analysis.load import CACHE_MAX_AGE, load_tidy, metric_curves, parse_value, wall_time_curves
from dqt.analysis.selection import prepare
from dqt.analysis.store import local_store_path, open_client
from dqt.core.config import ConfigError


@pytest.fixture
def store(tmp_path_factory, tmp_path) -> tuple[MlflowClient, str, dict[str, str]]:
    """Experiment "exp": a parent run and two finished child runs with two metrics each."""
    uri = empty_store(tmp_path_factory, tmp_path)
    client = MlflowClient(uri)
    exp = client.create_experiment("exp", artifact_location=(tmp_path / "artifacts").as_uri())
    parent = client.create_run(exp, tags={"dqt.role": "parent", "sweep": "exp"}).info.run_id
    ids = {"parent": parent}
    for seed in (0, 1):
        run_id = client.create_run(exp, tags={
            "dqt.role": "point", "config_hash": "abc123", "seed": str(seed), "sweep": "exp",
            "profile": "quick", "mlflow.parentRunId": parent}).info.run_id
        metrics = [Metric("eval/success_rate", 0.1 * k, 1000 + k, 100 * k) for k in range(4)]
        metrics += [Metric("loss/td", 1.0 / (k + 1), 1000 + k, 100 * k) for k in range(4)]
        params = {"trainer.num_agents": "4", "noise.std": "0.5", "trainer.seed": str(seed),
                  "noise.robust": "none", "learner.mc_lower_bound": "False", "seed": "7"}
        client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()])
        client.set_terminated(run_id)
        ids[f"seed{seed}"] = run_id
    return client, uri, ids


def count_history_reads(monkeypatch) -> list[str]:
    calls: list[str] = []
    original = MlflowClient.get_metric_history

    def counting(self, run_id, key):
        calls.append(run_id)
        return original(self, run_id, key)

    monkeypatch.setattr(MlflowClient, "get_metric_history", counting)
    return calls


def test_tidy_table_columns_and_values(store):
    client, uri, ids = store
    tidy = load_tidy("exp", uri)
    assert len(tidy) == 2 * 8 and ids["parent"] not in set(tidy["run_id"])
    assert list(tidy.columns[:15]) == ["run_id", "run_name", "status", "start_time", "end_time", "parent_run_id",
                                       "config_hash", "seed", "sweep", "profile", "success_signal", "metric", "step",
                                       "value", "timestamp"]
    # Raw param keys as columns; one colliding with a base column ("seed") is renamed.
    assert {"trainer.num_agents", "noise.std", "trainer.seed", "param.seed"} <= set(tidy.columns)
    row = tidy[(tidy["run_id"] == ids["seed1"]) & (tidy["metric"] == "eval/success_rate") & (tidy["step"] == 300)]
    assert len(row) == 1
    row = row.iloc[0]
    assert row["value"] == pytest.approx(0.3) and row["timestamp"] == 1003
    assert row["seed"] == 1 and row["config_hash"] == "abc123" and row["profile"] == "quick"
    assert row["status"] == "FINISHED" and row["parent_run_id"] == ids["parent"]
    assert row["trainer.num_agents"] == 4 and row["noise.std"] == 0.5 and not row["learner.mc_lower_bound"]
    runs = prepare("exp", tidy).runs  # one row per run, plain dtypes
    assert len(runs) == 2 and runs["learner.mc_lower_bound"].dtype == bool
    assert runs["trainer.num_agents"].dtype.kind == "i" and runs["noise.std"].dtype.kind == "f"
    only = load_tidy("exp", uri, metrics=["loss/td"])
    assert set(only["metric"]) == {"loss/td"} and len(only) == 8


def cache_entries(cache: Path, run_id: str | None = None) -> list[Path]:
    """The joblib.Memory entries (folders) in `cache`, of one run if given."""
    return sorted(p.parent for p in cache.rglob("output.pkl")
                  if run_id is None or run_id in (p.parent / "metadata.json").read_text())


def test_second_load_reads_only_runs_that_changed(store, tmp_path, monkeypatch):
    client, uri, ids = store
    cache = tmp_path / "cache"
    calls = count_history_reads(monkeypatch)
    first = load_tidy("exp", uri, cache_dir=cache)
    assert len(calls) == 4  # 2 runs x 2 metrics
    assert len(cache_entries(cache, ids["seed0"])) == len(cache_entries(cache, ids["seed1"])) == 1
    old_entry = cache_entries(cache, ids["seed0"])[0]

    calls.clear()
    second = load_tidy("exp", uri, cache_dir=cache)
    assert calls == []
    pd.testing.assert_frame_equal(first, second)

    client.log_metric(ids["seed0"], "eval/success_rate", 0.9, timestamp=2000, step=400)
    calls.clear()
    third = load_tidy("exp", uri, cache_dir=cache)
    assert calls == [ids["seed0"], ids["seed0"]]  # the changed run only, both its metrics
    assert len(third) == len(first) + 1 and third["step"].max() == 400
    assert len(cache_entries(cache)) == 3  # the changed run's new fingerprint is a new entry

    # The old fingerprint is never read again: once older than CACHE_MAX_AGE, a load deletes it.
    stale = time.time() - CACHE_MAX_AGE.total_seconds() - 3600
    for path in old_entry.iterdir():
        os.utime(path, (stale, stale))
    calls.clear()
    pd.testing.assert_frame_equal(load_tidy("exp", uri, cache_dir=cache), third)
    assert calls == [] and not old_entry.exists() and len(cache_entries(cache)) == 2

    for entry in cache_entries(cache, ids["seed1"]):  # a broken entry is read again
        (entry / "output.pkl").write_bytes(b"not a pickle")
    calls.clear()
    pd.testing.assert_frame_equal(load_tidy("exp", uri, cache_dir=cache), third)
    assert calls == [ids["seed1"], ids["seed1"]]

    calls.clear()
    load_tidy("exp", uri)  # no cache_dir: every run is read
    assert len(calls) == 4


def test_unknown_experiment_and_missing_store_are_config_errors(store, tmp_path):
    client, uri, _ = store
    with pytest.raises(ConfigError) as err:
        load_tidy("nope", uri)
    assert str(err.value) == f"experiment 'nope' not found in {uri} (known: Default, exp)"
    missing = tmp_path / "none" / "mlflow.db"
    with pytest.raises(ConfigError, match="no MLflow store at"):
        open_client(f"sqlite:///{missing}")
    assert not missing.exists()
    assert local_store_path("http://host:5000") is None
    assert local_store_path("sqlite:////abs/m.db") == Path("/abs/m.db")


@pytest.mark.parametrize("text, value", [
    ("4", 4), ("-2", -2), ("0.5", 0.5), ("1e-05", 1e-05), ("True", True), ("false", False),
    ("none", "none"), ("log-curve", "log-curve"), ("1_000", "1_000"), (None, None),
])
def test_params_are_parsed_back_from_mlflow_strings(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


def test_metric_curves_average_repeated_steps_and_map_to_wall_time(store):
    client, uri, ids = store
    client.log_batch(ids["seed0"], metrics=[
        Metric("train/episode_return", 1.0, 1, 100), Metric("train/episode_return", 3.0, 2, 100),
        Metric("train/episode_return", 5.0, 3, 200),
        Metric("time/wall_s", 0.0, 1, 0), Metric("time/wall_s", 10.0, 2, 200), Metric("time/wall_s", 30.0, 3, 300),
    ])
    data = prepare("exp", load_tidy("exp", uri))
    steps, values = metric_curves(data.tidy, "train/episode_return")[ids["seed0"]]
    np.testing.assert_array_equal(steps, [100, 200])
    np.testing.assert_array_equal(values, [2.0, 5.0])
    timed = wall_time_curves(data.tidy, "eval/success_rate")
    assert list(timed) == [ids["seed0"]]  # the other run logged no wall time
    np.testing.assert_allclose(timed[ids["seed0"]][0], [0.0, 5.0, 10.0, 30.0])
