"""Optuna mode: the AUC objective, the sampled values, and a study over stand-in runs."""

from __future__ import annotations

import io
from pathlib import Path

import fake_train as fake
import optuna
import pytest

from dqt.analysis.auc import budget_auc, normalized_auc
from dqt.core.config import RunConfig
from dqt.core.tracking import ensure_store
from dqt.sweeps.claims import open_storage, study_name
from dqt.sweeps.runner import SweepOptions
from dqt.sweeps.search import run_search, success_auc, suggest
from dqt.sweeps.spec import load_spec


def test_success_auc_is_the_reports_auc_over_the_runs_budget():
    # over [0, 200]: 0 -> 1 linearly on [0, 100], then 1 carried to the budget: (50 + 100) / 200
    assert success_auc([(0, 0.0), (100, 1.0)], budget=200) == pytest.approx(0.75)
    history = [(0, 0.0), (40, 0.5), (100, 0.25)]
    assert success_auc(history, 300) == budget_auc([s for s, _ in history], [v for _, v in history], 300)


def test_success_auc_is_the_normalised_trapezoid():
    assert success_auc([(0, 0.0), (100, 1.0)]) == pytest.approx(0.5)
    assert success_auc([(200, 1.0), (0, 0.0), (100, 1.0)]) == pytest.approx(0.75)  # order does not matter
    assert success_auc([(10, 1.0), (20, 1.0), (30, 1.0)]) == pytest.approx(1.0)
    assert success_auc([(5, 0.4)]) == pytest.approx(0.4)
    assert success_auc([]) == 0.0
    history = [(0, 0.0), (40, 0.5), (100, 0.25)]
    assert success_auc(history) == normalized_auc([s for s, _ in history], [v for _, v in history])


def test_result_keys_are_mlflow_metric_names():
    from dqt.analysis.load import SUCCESS
    from dqt.core.tracking.writer import _check_key
    from dqt.sweeps.parent import SUCCESS as PARENT_SUCCESS
    from dqt.sweeps.parent import result_key, results_prefix

    assert PARENT_SUCCESS == SUCCESS  # dqt.sweeps.parent keeps its own copy to import analysis lazily
    assert result_key(results_prefix(), "std=5 robust=median") == "success_auc/std:5 robust:median"
    assert results_prefix("eval/return") == "eval/return_auc"
    for name in ("task=mw/door", "a,b=c+d", "x" * 400):
        _check_key(result_key(results_prefix(), name), "metric")  # raises on a name MLflow refuses


def test_suggest_follows_the_config_field_types(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nbase: {trainer: {task: toy-reach}}\nsearch:\n  n_trials: 1\n  space:\n"
                    "    learner.lr: {low: 1.0e-5, high: 1.0e-3, log: true}\n"
                    "    learner.n_step: {low: 1, high: 5}\n"
                    "    noise.robust: {choices: [none, median]}\n")
    space = load_spec(path).search.space
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        values = suggest(study.ask(), space, RunConfig())
        assert 1e-5 <= values["learner.lr"] <= 1e-3 and isinstance(values["learner.lr"], float)
        assert values["learner.n_step"] in range(1, 6) and isinstance(values["learner.n_step"], int)
        assert values["noise.robust"] in ("none", "median")


def make_spec(tmp_path: Path, space: str, n_trials: int) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text("name: demo\nbase: {trainer: {task: toy-reach, train_steps: 300}, learner: {warmup_decisions: 50}, eval: {every: 100}}\n"
                    f"seeds: 1\nsearch:\n  n_trials: {n_trials}\n  sampler_seed: 0\n  space:\n    {space}\n"
                    "profiles: {quick: {}}\n")
    return path


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_TRAIN_LOG", str(tmp_path / "starts.jsonl"))
    return ensure_store(f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_search_records_the_best_trial_and_continues_the_study(tmp_path, env, capsys):
    from mlflow import MlflowClient

    spec = load_spec(make_spec(tmp_path, "learner.lr: {choices: [1.0e-4, 5.0e-4, 1.0e-3]}", n_trials=3))
    # jobs=1: two trials running at once may sample the same lr, and neither can reuse the other's
    # run before it has FINISHED; the reuse rule is checked below without that race.
    opts = SweepOptions(tracking_uri=env, train_cmd=fake.command(), jobs=1, stream=io.StringIO(),
                        workdir=tmp_path / "work")
    result = run_search(spec, opts)
    assert result.exit_code == 0 and result.completed == 3
    # the stand-in's success curve rises linearly to min(1, 1000 lr): AUC = 500 lr
    assert result.best_value == pytest.approx(500 * result.best_params["learner.lr"])
    name = study_name("search", spec)
    assert name == f"search/demo/quick/{spec.content_hash}"
    assert f"{name}: best max AUC" in capsys.readouterr().out

    client = MlflowClient(env)
    runs = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("dqt.role") == "parent"]
    assert parent.data.tags["dqt.mode"] == "search" and parent.info.status == "FINISHED"
    assert float(parent.data.tags["best.value"]) == pytest.approx(result.best_value)
    assert float(parent.data.params["best.learner.lr"]) == result.best_params["learner.lr"]
    study = optuna.load_study(study_name=name, storage=open_storage(str(tmp_path / "optuna.journal")))
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 3
    # a trial that samples a configuration already FINISHED in the store reuses its run
    children = [r for r in runs if r.data.tags.get("dqt.role") == "point"]
    assert len(children) == len({t.params["learner.lr"] for t in trials})
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    assert {r.data.tags["optuna.trial"] for r in children} <= {"0", "1", "2"}
    for r in children:  # the name says the trial and its configuration
        trial, lr = r.data.tags["optuna.trial"], float(r.data.params["learner.lr"])
        assert r.info.run_name == f"trial {trial} lr={lr:g} seed=0"
    assert parent.data.metrics["success_auc/best"] == pytest.approx(result.best_value)
    assert {k: v for k, v in parent.data.metrics.items() if k != "success_auc/best"} == pytest.approx(
        {f"success_auc/lr:{t.params['learner.lr']:g}": t.value for t in trials})
    assert parent.data.tags["dqt.trials_completed"] == "3"

    again = run_search(spec, SweepOptions(tracking_uri=env, train_cmd=fake.command(), stream=io.StringIO(),
                                          workdir=tmp_path / "work"))
    assert again.completed == 0 and again.exit_code == 0  # the study already holds n_trials
    assert len(client.search_runs([client.get_experiment_by_name("demo").experiment_id])) == len(runs)


def test_a_search_whose_trials_all_fail_ends(tmp_path, env):
    spec = load_spec(make_spec(tmp_path, "noise.mean: {choices: [13]}", n_trials=2))
    result = run_search(spec, SweepOptions(tracking_uri=env, train_cmd=fake.command(), stream=io.StringIO(),
                                           workdir=tmp_path / "work"))
    assert result.exit_code == 1 and result.failed == 2 and result.completed == 0


def test_two_search_specs_of_one_name_do_not_share_a_study(tmp_path):
    a = load_spec(make_spec(tmp_path, "learner.lr: {choices: [1.0e-4, 5.0e-4]}", n_trials=3))
    b = load_spec(make_spec(tmp_path, "learner.lr: {choices: [1.0e-4, 1.0e-3]}", n_trials=3))
    c = load_spec(make_spec(tmp_path, "learner.lr: {choices: [1.0e-4, 5.0e-4]}", n_trials=3))
    assert a.name == b.name and study_name("search", a) != study_name("search", b)
    assert study_name("search", a) == study_name("search", c)  # the same spec finds its study again
