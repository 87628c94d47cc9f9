"""Which runs an analysis uses (profile, finished, once per point) and what their
configurations are called."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dqt.analysis.labels import config_label, format_value, short_names
from dqt.analysis.selection import configurations, select_profile, select_runs, varied_params
from dqt.core.config import ConfigError


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


def test_short_names_use_the_papers_symbols_else_the_unique_last_part():
    names = short_names(["noise.std", "trainer.num_agents", "learner.lr", "model.dropout", "env.dropout"])
    assert names == {"noise.std": "σ", "trainer.num_agents": "agents", "learner.lr": "lr",
                     "model.dropout": "model.dropout", "env.dropout": "env.dropout"}


def test_per_agent_runs_are_drawn_and_scored_on_one_agents_steps():
    """The paper's figure 2: n agents each ran train_steps; MLflow steps count all agents, the
    analysis counts one agent's (step / n), so the budget and the x-axis are the paper's."""
    from dqt.analysis.auc import run_budgets
    from dqt.analysis.plotting import STEP_LABEL, STEP_LABEL_MIXED, STEP_LABEL_PER_AGENT
    from dqt.analysis.selection import on_budget_clock

    runs = runs_frame([("a", "FINISHED", 1, "h1", 0, 0.0, 0, 1), ("b", "FINISHED", 2, "h2", 0, 0.0, 0, 4)])
    runs = runs.assign(**{"trainer.budget": "per-agent", "trainer.train_steps": 1000})
    tidy = pd.DataFrame({"run_id": ["a", "a", "b", "b"], "metric": "eval/success_rate",
                         "step": [0, 1000, 0, 4000], "value": [0.0, 1.0, 0.0, 1.0]})
    clocked, label, notes = on_budget_clock(runs, tidy)
    assert label == STEP_LABEL_PER_AGENT and notes == []
    assert clocked["step"].tolist() == [0, 1000, 0, 1000]
    budgets, _ = run_budgets(runs, {})
    assert budgets == {"a": 1000.0, "b": 1000.0}  # one budget: the AUCs share a table
    total = runs.assign(**{"trainer.budget": "total"})
    assert on_budget_clock(total, tidy)[0]["step"].tolist() == [0, 1000, 0, 4000]
    assert on_budget_clock(total, tidy)[1] == STEP_LABEL
    assert on_budget_clock(runs.drop(columns="trainer.budget"), tidy)[1] == STEP_LABEL  # older runs
    mixed = runs.assign(**{"trainer.budget": ["per-agent", "total"]})
    clocked, label, notes = on_budget_clock(mixed, tidy)
    assert label == STEP_LABEL_MIXED and clocked["step"].tolist() == [0, 1000, 0, 4000] and "1 of 2" in notes[0]


def test_the_success_axis_names_the_runs_convention():
    from dqt.analysis.plotting import SUCCESS_LABELS
    from dqt.analysis.selection import success_convention

    runs = runs_frame([("a", "FINISHED", 1, "h1", 0, 0.0, 0, 1), ("b", "FINISHED", 2, "h2", 0, 0.0, 0, 4)])
    assert success_convention(runs.assign(**{"eval.success": "last-step"})) == (SUCCESS_LABELS["last-step"], [])
    # runs from before eval.success existed were scored at any step
    assert success_convention(runs) == (SUCCESS_LABELS["any-step"], [])
    label, notes = success_convention(runs.assign(**{"eval.success": ["last-step", None]}))
    assert label == "eval success (mixed conventions)" and "any-step, last-step" in notes[0]


def test_the_one_agent_run_of_one_schedule_is_drawn_under_every_schedule():
    from dqt.analysis.figures import single_agent_everywhere
    from dqt.analysis.selection import ExperimentRuns

    configs = pd.DataFrame({"config_hash": ["a", "b", "c"], "trainer.num_agents": [1, 2, 2],
                            "learner.lr_schedule": ["linear", "linear", "linear-n"]})
    data = ExperimentRuns("agents", pd.DataFrame(), pd.DataFrame(), configs, ["trainer.num_agents",
                                                                              "learner.lr_schedule"])
    linear_n = configs[configs["learner.lr_schedule"] == "linear-n"]
    assert list(single_agent_everywhere(data, linear_n)["config_hash"]) == ["a", "c"]
    linear = configs[configs["learner.lr_schedule"] == "linear"]
    assert list(single_agent_everywhere(data, linear)["config_hash"]) == ["a", "b"]  # not twice
    both = pd.concat([configs, configs.iloc[[0]].assign(config_hash="d", **{"learner.lr_schedule": "linear-n"})])
    data2 = ExperimentRuns("agents", pd.DataFrame(), pd.DataFrame(), both.reset_index(drop=True),
                           ["trainer.num_agents", "learner.lr_schedule"])
    only = data2.configs[data2.configs["learner.lr_schedule"] == "linear-n"]
    assert list(single_agent_everywhere(data2, only)["config_hash"]) == ["c", "d"]  # n = 1 ran under each
