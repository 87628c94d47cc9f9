"""Reading runs from MLflow: the tidy table, its per-run cache, run selection and labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import empty_store
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from analysis.load import (
    config_label,
    configurations,
    format_value,
    load_tidy,
    local_store_path,
    metric_curves,
    open_client,
    parse_value,
    prepare,
    select_profile,
    select_runs,
    varied_params,
    wall_time_curves,
)
from core.config import ConfigError


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
    assert list(tidy.columns[:14]) == ["run_id", "run_name", "status", "start_time", "end_time", "parent_run_id",
                                       "config_hash", "seed", "sweep", "profile", "metric", "step", "value",
                                       "timestamp"]
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


def test_second_load_reads_only_runs_that_changed(store, tmp_path, monkeypatch):
    client, uri, ids = store
    cache = tmp_path / "cache"
    calls = count_history_reads(monkeypatch)
    first = load_tidy("exp", uri, cache_dir=cache)
    assert len(calls) == 4  # 2 runs x 2 metrics
    assert sorted(p.stem for p in cache.glob("*.pkl")) == sorted([ids["seed0"], ids["seed1"]])

    calls.clear()
    second = load_tidy("exp", uri, cache_dir=cache)
    assert calls == []
    pd.testing.assert_frame_equal(first, second)

    client.log_metric(ids["seed0"], "eval/success_rate", 0.9, timestamp=2000, step=400)
    calls.clear()
    third = load_tidy("exp", uri, cache_dir=cache)
    assert calls == [ids["seed0"], ids["seed0"]]  # the changed run only, both its metrics
    assert len(third) == len(first) + 1 and third["step"].max() == 400

    (cache / f"{ids['seed1']}.pkl").write_bytes(b"not a pickle")  # a broken cache is re-read
    calls.clear()
    pd.testing.assert_frame_equal(load_tidy("exp", uri, cache_dir=cache), third)
    assert calls == [ids["seed1"], ids["seed1"]]


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


def runs_frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["run_id", "status", "start_time", "config_hash", "seed", "noise.std",
                                       "trainer.seed", "trainer.num_agents"])


def test_select_runs_keeps_finished_runs_once_per_point():
    runs = runs_frame([
        ("a", "FAILED", 1, "h1", 0, 1.0, 0, 4),
        ("b", "FINISHED", 2, "h1", 0, 1.0, 0, 4),   # the re-run of a's point
        ("c", "FINISHED", 3, "h1", 1, 1.0, 1, 4),
        ("d", "RUNNING", 4, "h2", 0, 5.0, 0, 4),
        ("e", "FINISHED", 5, "h2", 1, 5.0, 1, 4),
        ("f", "FINISHED", 6, "h2", 1, 5.0, 1, 4),   # the same point finished twice: the latest counts
    ])
    kept, notes = select_runs(runs)
    assert list(kept["run_id"]) == ["b", "c", "f"]
    assert any("2 unfinished" in n for n in notes) and any("1 repeated" in n for n in notes)
    kept, _ = select_runs(runs, include_unfinished=True)
    assert list(kept["run_id"]) == ["b", "c", "d", "f"]  # a's point has a finished run
    only_running, notes = select_runs(runs[runs["status"] == "RUNNING"])
    assert list(only_running["run_id"]) == ["d"] and "no run has finished" in notes[0]


def test_select_profile_shows_one_profile_unless_asked():
    runs = runs_frame([
        ("a", "FINISHED", 1, "h1", 0, 1.0, 0, 4),
        ("b", "FINISHED", 2, "h2", 0, 1.0, 0, 4),
        ("c", "FINISHED", 3, "h3", 0, 1.0, 0, 4),
    ]).assign(profile=["paper", "quick", "quick"])
    kept, profile, notes = select_profile(runs)  # the latest run's profile
    assert profile == "quick" and list(kept["run_id"]) == ["b", "c"]
    assert notes == ["1 run(s) of profile(s) paper left out (pass --profile NAME or --profile all)"]
    kept, profile, _ = select_profile(runs, "paper")
    assert profile == "paper" and list(kept["run_id"]) == ["a"]
    kept, profile, notes = select_profile(runs, "all")
    assert profile is None and len(kept) == 3 and notes == []
    with pytest.raises(ConfigError, match="no run of profile 'gpu' \\(profiles here: paper, quick"):
        select_profile(runs, "gpu")
    single, profile, notes = select_profile(runs.assign(profile="quick"))
    assert profile == "quick" and len(single) == 3 and notes == []


def test_varied_params_labels_and_configurations():
    runs = runs_frame([
        ("a", "FINISHED", 1, "h1", 0, 1.0, 0, 4),
        ("b", "FINISHED", 2, "h1", 1, 1.0, 1, 4),
        ("c", "FINISHED", 3, "h2", 0, 0.1, 0, 4),
        ("d", "FINISHED", 4, "h3", 0, 10.0, 0, 4),
    ])
    assert varied_params(runs) == ["noise.std"]  # the seed varies too, but is what we average over
    configs = configurations(runs, ["noise.std"])
    assert list(configs["label"]) == ["σ=0.1", "σ=1", "σ=10"]  # numeric order, not text order
    assert list(configs["seeds"]) == [1, 2, 1] and configs["run_ids"][1] == ["a", "b"]
    assert config_label({}, []) == "all runs"
    assert config_label({"a.lr": 3e-4, "b.lr": 1}, ["a.lr", "b.lr"]) == "a.lr=0.0003, b.lr=1"
    assert [format_value(v) for v in (10.0, 0.1, 4, np.int64(7), "linear", True)] == [
        "10", "0.1", "4", "7", "linear", "True"]
    same = runs.assign(config_hash=["h1", "h1", "h2", "h2"], **{"noise.std": 1.0})
    labels = configurations(same, [])["label"]
    assert labels.str.startswith("all runs [").all()  # never merge two configurations in a legend


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
