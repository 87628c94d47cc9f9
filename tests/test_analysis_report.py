"""Figures, AUC table and report from a synthetic MLflow store (no trainer needed).

The store is built once per module with MlflowClient in a temporary SQLite file: sweep-like
experiments laid out as docs/CONTRACTS.md says (a parent run tagged dqt.role=parent, child
runs with config_hash / seed / sweep / profile tags and RunConfig-style params), plus a plain
`dqt train`-like experiment without any of the sweep tags.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import empty_store
from matplotlib.container import BarContainer, ErrorbarContainer
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from dqt.analysis import cli as analysis_cli
from dqt.analysis.auc import auc_table
from dqt.analysis.figure_noise import noise_rows
from dqt.analysis.figures import (
    applicable,
    build_figures,
    figure_agents,
    figure_agents_time,
    figure_noise,
    figure_success,
    figure_tasks,
)
from dqt.analysis.load import RUN_COLUMNS, load_tidy
from dqt.analysis.plotting import EVAL_RETURN_LABEL, NOISE_FREE_GID, STEP_LABEL, SUCCESS_LABEL, TIME_LABEL
from dqt.analysis.report import build_report, render_report, summary_frame
from dqt.analysis.selection import ExperimentRuns, prepare
from dqt.core.config import ConfigError, config_hash

TOTAL = 100_000
EVAL_STEPS = np.arange(0, TOTAL + 1, 10_000)
BASE = {"trainer.train_steps": TOTAL, "trainer.task": "door-unlock", "trainer.num_agents": 1,
        "learner.lr_schedule": "linear", "noise.mean": 0.0, "noise.std": 0.0, "noise.robust": "none",
        "eval.success": "last-step"}


def success_curve(skill: float, seed: int, steps: np.ndarray) -> np.ndarray:
    """A deterministic learning curve: faster for higher skill, a little different per seed."""
    return np.clip((skill + 0.05 * seed) * steps / TOTAL * 1.5, 0.0, 1.0)


def eval_return_curve(skill: float, seed: int, steps: np.ndarray) -> np.ndarray:
    """The eval return: rising from the start, well before the first success."""
    return 50.0 * skill * steps / TOTAL + seed + 1.0


class Store:
    """A temporary tracking store, and the success curves logged into it (for the checks)."""

    def __init__(self, uri: str, root: Path):
        self.uri = uri
        self.root = root
        self.client = MlflowClient(self.uri)
        self.curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}  # exp -> run -> curve
        self.parents: dict[str, str] = {}

    def experiment(self, name: str, parent: bool = True) -> str:
        exp_id = self.client.create_experiment(name, artifact_location=(self.root / "mlartifacts" / name).as_uri())
        self.curves[name] = {}
        if parent:
            run = self.client.create_run(exp_id, tags={"dqt.role": "parent", "sweep": name, "profile": "test"})
            self.client.set_terminated(run.info.run_id)
            self.parents[name] = run.info.run_id
        return exp_id

    def run(self, exp_name: str, exp_id: str, overrides: dict, seed: int, skill: float, *,
            steps: np.ndarray = EVAL_STEPS, status: str = "FINISHED", sweep_tags: bool = True) -> str:
        params = {**BASE, **overrides, "trainer.seed": seed}
        tags = {"seed": str(seed), "git_commit": "abc", "device": "cpu"}
        if sweep_tags:
            tags.update({"dqt.role": "point", "config_hash": config_hash(params), "sweep": exp_name,
                         "profile": "test", "mlflow.parentRunId": self.parents[exp_name]})
        run_id = self.client.create_run(exp_id, tags=tags).info.run_id
        success = success_curve(skill, seed, steps)
        agents = int(params["trainer.num_agents"])
        ret_steps = np.arange(5_000, int(steps[-1]) + 1, 5_000)
        metrics = [Metric("eval/success_rate", float(v), 1_000 + int(s), int(s)) for s, v in zip(steps, success, strict=True)]
        metrics += [Metric("eval/return", float(v), 1_000 + int(s), int(s))
                    for s, v in zip(steps, eval_return_curve(skill, seed, steps), strict=True)]
        metrics += [Metric("train/episode_return", float(100 * skill * s / TOTAL), 1_000 + int(s), int(s))
                    for s in ret_steps]
        metrics += [Metric("time/wall_s", float(s / (1_000 * agents)), 1_000 + int(s), int(s)) for s in steps]
        metrics += [Metric("loss/td", 1.0, 1_000 + int(s), int(s)) for s in steps]
        self.client.log_batch(run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
        self.client.set_terminated(run_id, status)
        self.curves[exp_name][run_id] = (steps.astype(float), success)
        return run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    root = tmp_path_factory.mktemp("store")
    s = Store(empty_store(tmp_path_factory, root), root)
    exp = s.experiment("agents")
    for lr_i, lr in enumerate(("linear", "log-curve")):
        for n in (1, 4):
            for seed in range(2):
                s.run("agents", exp, {"learner.lr_schedule": lr, "trainer.num_agents": n}, seed,
                      skill=0.3 + 0.2 * lr_i + 0.05 * n)
    # An interrupted run whose short curve must not enter the analysis.
    s.run("agents", exp, {"trainer.num_agents": 4}, 9, 0.1, steps=EVAL_STEPS[:3], status="FAILED")

    exp = s.experiment("noise")
    settings = [(0.0, 0.1), (0.0, 1.0), (10.0, 1.0)]  # the paper's two grids share (0, 1)
    for mean, std in settings:
        for robust in ("none", "median"):
            for seed in range(2):
                skill = 0.8 / (1 + std + mean / 5) + (0.2 if robust == "median" else 0.0)
                s.run("noise", exp, {"noise.mean": mean, "noise.std": std, "noise.robust": robust}, seed, skill)

    exp = s.experiment("tasks")
    for task_i, task in enumerate(("door-unlock", "hammer")):
        for mean in (0.0, 10.0):
            for robust in ("none", "median"):
                for seed in range(2):
                    # Seeds evaluate at different steps over the same range: AUC must not care.
                    steps = EVAL_STEPS if seed == 0 else np.array([0, 15_000, 40_000, 45_000, 80_000, TOTAL])
                    skill = 0.5 + 0.2 * task_i - mean / 40 + (0.1 if robust == "median" else 0.0)
                    s.run("tasks", exp, {"trainer.task": task, "noise.mean": mean, "noise.std": 1.0,
                                         "noise.robust": robust}, seed, skill, steps=steps)

    exp = s.experiment("dqt", parent=False)  # `dqt train` alone: no sweep tags, no parent
    for seed in range(2):
        s.run("dqt", exp, {}, seed, 0.5, sweep_tags=False)
    s.client.create_experiment("empty")
    return s


@pytest.fixture(scope="module")
def prepared(store: Store):
    return {name: prepare(name, load_tidy(name, store.uri)) for name in ("agents", "noise", "tasks", "dqt")}


def independent_auc(curve: tuple[np.ndarray, np.ndarray]) -> float:
    steps, values = curve
    return float(np.trapezoid(values, steps) / (steps[-1] - steps[0]))


def lines(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines()]


# ---- the tidy table ------------------------------------------------------------------------

def test_tidy_table_has_one_row_per_point_of_training_runs_only(store: Store):
    tidy = load_tidy("noise", store.uri)
    assert set(RUN_COLUMNS) <= set(tidy.columns)
    assert {"metric", "step", "value", "timestamp", "noise.mean", "noise.robust", "trainer.seed"} <= set(tidy.columns)
    assert store.parents["noise"] not in set(tidy["run_id"])
    assert tidy["run_id"].nunique() == 12
    per_run = 11 + 11 + 20 + 11 + 11  # success, eval return, train return, wall, loss points of one run
    assert len(tidy) == 12 * per_run
    assert not tidy.duplicated(["run_id", "metric", "step"]).any()
    success = tidy[tidy["metric"] == "eval/success_rate"]
    run_id = next(iter(store.curves["noise"]))
    got = success[success["run_id"] == run_id].sort_values("step")
    np.testing.assert_allclose(got["value"], store.curves["noise"][run_id][1])
    # Params come back typed, tags become columns.
    runs = prepare("noise", tidy).runs
    assert set(runs["noise.std"]) == {0.1, 1.0}
    assert runs["seed"].dtype.kind == "i" and set(runs["sweep"]) == {"noise"}


def test_prepare_keeps_finished_runs_and_names_configurations(prepared):
    agents = prepared["agents"]
    assert len(agents.runs) == 8 and set(agents.runs["status"]) == {"FINISHED"}
    assert any("unfinished" in note for note in agents.notes)
    assert agents.varied == ["trainer.num_agents", "learner.lr_schedule"]
    assert list(agents.configs["seeds"]) == [2, 2, 2, 2]
    assert set(agents.configs["label"]) == {"agents=1, LR=linear", "agents=1, LR=log-curve",
                                            "agents=4, LR=linear", "agents=4, LR=log-curve"}
    plain = prepared["dqt"]
    assert plain.varied == [] and list(plain.configs["label"]) == ["all runs"]
    assert list(plain.configs["seeds"]) == [2]


def test_each_experiment_gets_the_figures_its_varied_params_call_for(prepared):
    assert applicable(prepared["agents"]) == ["success", "agents", "agents_time"]
    assert applicable(prepared["noise"]) == ["success", "noise"]
    assert applicable(prepared["tasks"]) == ["success", "noise", "tasks"]
    assert applicable(prepared["dqt"]) == ["success"]


# ---- figure content ------------------------------------------------------------------------

def test_agents_figure_has_a_column_per_schedule_and_a_line_per_agent_count(prepared):
    fig = figure_agents(prepared["agents"])
    axes = fig.axes
    assert len(axes) == 4  # 2 rows (eval return, eval success) x 2 LR schedules
    titles = [ax.get_title() for ax in axes]
    assert titles == ["LR schedule: linear", "LR schedule: log-curve"] * 2
    assert [ax.get_ylabel() for ax in axes] == [EVAL_RETURN_LABEL] * 2 + [SUCCESS_LABEL] * 2
    for ax in axes:
        assert lines(ax) == ["agents=1 (n=2)", "agents=4 (n=2)"]
        assert ax.get_xlabel() == STEP_LABEL
        assert len(ax.collections) == 2  # one CI band per line
    # The lines are the mean over seeds of the logged eval return (top) and success (bottom).
    data = prepared["agents"]
    cfg = data.configs[(data.configs["trainer.num_agents"] == 1) & (data.configs["learner.lr_schedule"] == "linear")]
    for ax, metric in ((axes[0], "eval/return"), (axes[2], "eval/success_rate")):
        expected = np.mean([prepared_curve(data, r, metric) for r in cfg.iloc[0]["run_ids"]], axis=0)
        np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), expected)


def prepared_curve(data, run_id: str, metric: str = "eval/success_rate") -> np.ndarray:
    rows = data.tidy[(data.tidy["run_id"] == run_id) & (data.tidy["metric"] == metric)]
    return rows.sort_values("step")["value"].to_numpy()


def test_agents_time_figure_plots_success_against_wall_clock(prepared):
    fig = figure_agents_time(prepared["agents"])
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert ax.get_xlabel() == TIME_LABEL
        assert lines(ax) == ["agents=1 (n=2)", "agents=4 (n=2)"]
    one, four = fig.axes[0].get_lines()
    # Four agents log 4x the steps per second, so they finish in a quarter of the time.
    assert one.get_xdata()[-1] == pytest.approx(100.0) and four.get_xdata()[-1] == pytest.approx(25.0)


def test_noise_figure_has_eval_return_above_success_for_fixed_mean_and_fixed_std(prepared):
    fig = figure_noise(prepared["noise"])
    axes = fig.axes
    assert len(axes) == 8  # (return, success) x (μ fixed, σ fixed) rows x (noisy, robust) columns
    fixed_mean = ["σ=0.1 (n=2)", "σ=1 (n=2)"]
    fixed_std = ["μ=0 (n=2)", "μ=10 (n=2)"]
    assert [lines(ax) for ax in axes] == [fixed_mean] * 4 + [fixed_std] * 4
    assert [ax.get_ylabel() for ax in axes] == ([EVAL_RETURN_LABEL] * 2 + [SUCCESS_LABEL] * 2) * 2
    for i in (0, 2):
        assert "noisy" in axes[i].get_title() and "μ = 0 fixed" in axes[i].get_title()
        assert "robust" in axes[i + 1].get_title() and "median" in axes[i + 1].get_title()
    assert all("σ = 1 fixed" in ax.get_title() for ax in axes[4:])
    for ax in axes:
        assert ax.get_xlabel() == STEP_LABEL and ax.get_legend() is not None
        assert reference_lines(ax) == []  # this sweep has no noise-free runs: no reference line
    # Top panel: the mean eval return of the σ = 0.1 noisy runs, as logged.
    data = prepared["noise"]
    cfg = data.configs[(data.configs["noise.std"] == 0.1) & (data.configs["noise.robust"] == "none")]
    expected = np.mean([prepared_curve(data, r, "eval/return") for r in cfg.iloc[0]["run_ids"]], axis=0)
    np.testing.assert_allclose(axes[0].get_lines()[0].get_ydata(), expected)


def reference_lines(ax) -> list:
    return [line for line in ax.get_lines() if line.get_gid() == NOISE_FREE_GID]


def test_tasks_figure_has_a_bar_per_configuration_of_each_task(prepared):
    data = prepared["tasks"]
    auc = auc_table(data, n_resamples=500)
    fig = figure_tasks(data, auc)
    assert [ax.get_title() for ax in fig.axes] == ["task: door-unlock", "task: hammer"]
    for ax in fig.axes:
        bars = [bar for c in ax.containers if isinstance(c, BarContainer) for bar in c]
        assert len(bars) == 4  # 2 noise settings x (noisy, robust)
        assert [t.get_text() for t in ax.get_xticklabels()] == ["μ=0", "μ=10"]
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["noisy", "robust (median)"]
        assert "AUC" in ax.get_ylabel()
    heights = sorted(bar.get_height() for c in fig.axes[0].containers if isinstance(c, BarContainer) for bar in c)
    table = auc.table[auc.table["trainer.task"] == "door-unlock"]
    np.testing.assert_allclose(heights, sorted(table["auc_mean"]))


def test_success_figure_has_eval_return_on_top_and_success_below(prepared):
    for data in prepared.values():
        fig = figure_success(data)
        tasks = sorted(data.configs["trainer.task"].unique()) if "trainer.task" in data.varied else [None]
        axes = np.array(fig.axes).reshape(2, len(tasks))  # return over success, a column per task
        for j, task in enumerate(tasks):
            top, bottom = axes[:, j]
            assert top.get_position().y0 > bottom.get_position().y0
            assert top.get_xlabel() == bottom.get_xlabel() == STEP_LABEL
            if j == 0:
                assert top.get_ylabel() == EVAL_RETURN_LABEL and bottom.get_ylabel() == SUCCESS_LABEL
            in_task = data.configs if task is None else data.configs[data.configs["trainer.task"] == task]
            assert len(top.get_lines()) == len(bottom.get_lines()) == len(in_task)
            assert [line.get_color() for line in top.get_lines()] == [line.get_color() for line in bottom.get_lines()]
            assert top.get_title() == ("" if task is None else f"task: {task}")
        # One legend below the panels: the colours are the same everywhere.
        assert not [ax for ax in fig.axes if ax.get_legend() is not None] and len(fig.legends) == 1
    data = prepared["dqt"]
    top, bottom = figure_success(data).axes
    assert lines(top) == lines(bottom) == ["all runs (n=2)"]
    runs = data.configs.iloc[0]["run_ids"]
    np.testing.assert_allclose(top.get_lines()[0].get_ydata(),
                               np.mean([prepared_curve(data, r, "eval/return") for r in runs], axis=0))
    np.testing.assert_allclose(bottom.get_lines()[0].get_ydata(),
                               np.mean([prepared_curve(data, r) for r in runs], axis=0))


def test_an_ablation_names_only_what_differs_from_the_baseline():
    # One factor at a time around a baseline, on two tasks: legends would otherwise list every
    # param of every arm. Each task gets its own column; an arm has one colour in both.
    arms = [{}, {"env.action_repeat": 1, "env.episode_length": 500}, {"learner.replay_sampling": "return-weighted"},
            {"exploration.greedy_heads": "mean"}]
    base = {"env.action_repeat": 2, "env.episode_length": 200, "learner.replay_sampling": "uniform",
            "exploration.greedy_heads": "min"}
    runs = [({"trainer.task": task, **base, **arm}, seed, 0.3) for task in ("door-unlock", "reach")
            for arm in arms for seed in range(2)]
    data = fabricated(runs, "abl")
    assert sorted(data.configs["label"]) == sorted(
        f"task={t}, {d}" for t in ("door-unlock", "reach")
        for d in ("baseline", "action_repeat=1, episode_length=500", "replay_sampling=return-weighted",
                  "greedy_heads=mean"))
    fig = figure_success(data)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["task: door-unlock", "task: reach"]
    (legend,) = fig.legends
    assert sorted(t.get_text() for t in legend.get_texts()) == [
        "action_repeat=1, episode_length=500 (n=2)", "baseline (n=2)", "greedy_heads=mean (n=2)",
        "replay_sampling=return-weighted (n=2)"]
    left, right = fig.axes[0], fig.axes[1]
    assert {ln.get_label(): ln.get_color() for ln in left.get_lines()} == \
        {ln.get_label(): ln.get_color() for ln in right.get_lines()}
    tasks = figure_tasks(data, auc_table(data, n_resamples=200))
    assert "noisy" not in tasks._suptitle.get_text() and all(ax.get_legend() is None for ax in tasks.axes)


def test_iqm_statistic_changes_what_lines_show(prepared):
    fig = build_figures(prepared["noise"], auc_table(prepared["noise"], n_resamples=200), statistic="iqm")
    assert set(fig) == {"success", "noise"}
    assert "IQM" in fig["noise"]._suptitle.get_text()


# ---- figures and report.md of hand-built tidy tables (no MLflow) --------------------------

def fabricated(runs: list[tuple[dict, int, float]], name: str = "fab") -> ExperimentRuns:
    """`prepare` of a tidy table built by hand: (param overrides, seed, skill) per run, each
    logging eval success and eval return at 6 steps over [0, its trainer.train_steps]."""
    rows = []
    for i, (overrides, seed, skill) in enumerate(runs):
        params = {**BASE, **overrides, "trainer.seed": seed}
        steps = np.linspace(0, params["trainer.train_steps"], 6)
        run = {"run_id": f"run{i}", "run_name": f"run{i}", "status": "FINISHED", "start_time": i,
               "end_time": i + 1, "parent_run_id": None, "config_hash": config_hash(params), "seed": seed,
               "sweep": name, "profile": "test"}
        for metric, values in (("eval/success_rate", success_curve(skill, seed, steps)),
                               ("eval/return", eval_return_curve(skill, seed, steps))):
            rows += [{**run, "metric": metric, "step": int(x), "value": float(v), "timestamp": int(x), **params}
                     for x, v in zip(steps, values, strict=True)]
    return prepare(name, pd.DataFrame(rows))


def run_curve(data: ExperimentRuns, run_id: str, metric: str) -> np.ndarray:
    rows = data.tidy[(data.tidy["run_id"] == run_id) & (data.tidy["metric"] == metric)]
    return rows.sort_values("step")["value"].to_numpy()


def noise_free_ids(data: ExperimentRuns) -> list[str]:
    runs = data.runs
    return list(runs["run_id"][(runs["noise.mean"] == 0) & (runs["noise.std"] == 0)])


def test_noise_figure_draws_the_noise_free_runs_as_one_reference_line_in_every_panel():
    runs = [({"noise.mean": 0.0, "noise.std": 0.0, "noise.robust": robust}, seed, 0.9)
            for robust in ("none", "median") for seed in range(2)]  # the arm: robust is moot
    runs += [({"noise.mean": mean, "noise.std": std, "noise.robust": robust}, seed, 0.3)
             for mean, std in ((0.0, 0.1), (0.0, 1.0), (10.0, 1.0)) for robust in ("none", "median")
             for seed in range(2)]
    data = fabricated(runs)
    # σ = 0 is the reference, not a σ of the "μ fixed" row, nor a row of its own.
    assert noise_rows(data) == [("noise.mean", 0.0, "noise.std"), ("noise.std", 1.0, "noise.mean")]
    axes = figure_noise(data).axes
    assert len(axes) == 8
    reference = noise_free_ids(data)
    assert len(reference) == 4
    for i, ax in enumerate(axes):
        (line,) = reference_lines(ax)  # exactly one, in every panel
        assert line.get_label() == "noise-free (μ 0, σ 0), n=4"
        assert line.get_linestyle() == "--" and line.get_color() == "black"
        metric = "eval/return" if ax.get_ylabel() == EVAL_RETURN_LABEL else "eval/success_rate"
        np.testing.assert_allclose(line.get_ydata(), np.mean([run_curve(data, r, metric) for r in reference], axis=0))
        regular = ["σ=0.1 (n=2)", "σ=1 (n=2)"] if i < 4 else ["μ=0 (n=2)", "μ=10 (n=2)"]
        assert lines(ax) == [*regular, line.get_label()]
        assert line.get_label() in [t.get_text() for t in ax.get_legend().get_texts()]


def test_the_noise_free_arm_neither_makes_sigma_vary_nor_picks_the_fixed_sigma():
    # σ is 2 everywhere but in the arm: without the arm σ does not vary, so the only row is
    # "σ = 2 fixed, μ varies" (the arm's σ = 0 and μ = 0 are not values of the grid).
    runs = [({"noise.mean": 0.0, "noise.std": 0.0, "noise.robust": robust}, 0, 0.9) for robust in ("none", "median")]
    runs += [({"noise.mean": mean, "noise.std": 2.0, "noise.robust": robust}, 0, 0.3)
             for mean in (1.0, 5.0) for robust in ("none", "median")]
    data = fabricated(runs)
    assert set(data.varied) >= {"noise.mean", "noise.std"}
    assert noise_rows(data) == [("noise.std", 2.0, "noise.mean")]
    axes = figure_noise(data).axes
    assert len(axes) == 4  # (return, success) x (noisy, robust)
    for ax in axes:
        assert "σ = 2 fixed, μ varies" in ax.get_title()
        assert lines(ax) == ["μ=1 (n=1)", "μ=5 (n=1)", "noise-free (μ 0, σ 0), n=2"]
    # Without the arm: no reference line.
    plain = fabricated(runs[2:])
    assert all(reference_lines(ax) == [] for ax in figure_noise(plain).axes)


def test_a_single_seed_gets_no_band_and_no_error_bar():
    # Task "a": one seed per configuration; task "b": two seeds.
    runs = [({"trainer.task": task, "noise.robust": robust, "noise.std": 1.0}, seed, 0.4)
            for task, seeds in (("a", 1), ("b", 2)) for robust in ("none", "median") for seed in range(seeds)]
    data = fabricated(runs)
    for ax in figure_success(data).axes:  # a column per task
        assert len(ax.get_lines()) == 2
        assert len(ax.collections) == (2 if ax.get_subplotspec().colspan.start == 1 else 0)  # two-seed task b only
    auc = auc_table(data, n_resamples=200)
    single = auc.table[auc.table["seeds"] == 1]
    assert len(single) == 2 and single[["auc_ci_low", "auc_ci_high"]].isna().all().all()
    one, two = figure_tasks(data, auc).axes
    assert one.get_title() == "task: a" and two.get_title() == "task: b"
    for ax, error_bars in ((one, 0), (two, 2)):
        bars = [bar for c in ax.containers if isinstance(c, BarContainer) for bar in c]
        assert len(bars) == 2
        drawn = sum(len(c.lines[2][0].get_segments()) for c in ax.containers if isinstance(c, ErrorbarContainer))
        assert drawn == error_bars
    report = render_report(data, auc, [], tracking_uri="sqlite:///x.db", parent_run_id=None, seed=0)
    rows = {task: [line for line in report.splitlines() if line.startswith("| robust=") and f"task={task} |" in line]
            for task in ("a", "b")}
    assert len(rows["a"]) == len(rows["b"]) == 2
    assert all(line.count("| n/a |") == 2 for line in rows["a"])  # mean and IQM CIs
    assert all("n/a" not in line for line in rows["b"])


def test_report_keeps_runs_of_different_budgets_apart():
    runs = [({"trainer.train_steps": 40_000, "learner.lr_schedule": lr}, 0, skill)
            for lr, skill in (("linear", 0.3), ("log-curve", 0.9))]
    runs += [({"trainer.train_steps": TOTAL, "learner.lr_schedule": lr}, seed, skill)
             for lr, skill in (("linear", 0.5), ("log-curve", 0.2)) for seed in range(2)]
    data = fabricated(runs)
    auc = auc_table(data, n_resamples=200)
    assert sorted(summary_frame(auc)["budget"]) == [40_000, 40_000, TOTAL, TOTAL]
    report = render_report(data, auc, [], tracking_uri="sqlite:///x.db", parent_run_id=None, seed=0)
    assert "**Runs of 2 different budgets** (`trainer.train_steps` = 40,000, 100,000 env steps)" in report
    short, long = report.split("### Budget 40,000 env steps")[1].split("### Budget 100,000 env steps")
    assert "| LR=linear, train_steps=40000 |" in short and "| LR=log-curve, train_steps=40000 |" in short
    assert "train_steps=100000" not in short
    assert "| LR=linear, train_steps=100000 |" in long and "train_steps=40000" not in long
    # Each budget names its own best; none is ranked against the other budget's.
    assert "Highest mean AUC: **LR=log-curve, train_steps=40000**" in short
    assert "Highest mean AUC: **LR=linear, train_steps=100000**" in long
    assert report.count("Highest mean AUC") == 2


# ---- the command, its files and numbers ---------------------------------------------------

def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dqt")
    analysis_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def reports(store: Store, tmp_path_factory) -> tuple[Path, str]:
    """`dqt figures --all` run once over the store: the output root and what it printed."""
    out = tmp_path_factory.mktemp("reports")
    args = parse(["figures", "--all", "--tracking-uri", store.uri, "--out", str(out)])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert args.handler(args) == 0
    return out, printed.getvalue()


def test_figures_all_reports_every_experiment_with_runs(reports):
    out, printed = reports
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != ".cache") == [
        "agents", "dqt", "noise", "tasks"]
    entries = list((out / ".cache").rglob("output.pkl"))  # joblib.Memory: one entry per run
    assert len(entries) == 9 + 12 + 16 + 2  # every training run, once
    assert "noise: 2 figure(s) (success, noise), summary.csv, report.md" in printed
    assert "tasks: 3 figure(s) (success, noise, tasks)" in printed


@pytest.mark.parametrize("name", ["agents", "noise", "tasks", "dqt"])
def test_report_files_and_auc_match_an_independent_computation(store: Store, reports, name):
    out = reports[0] / name
    data_figures = {"agents": ["success", "agents", "agents_time"], "noise": ["success", "noise"],
                    "tasks": ["success", "noise", "tasks"], "dqt": ["success"]}[name]
    for fig in data_figures:
        for ext in ("png", "pdf"):
            assert (out / f"{fig}.{ext}").stat().st_size > 1000
    summary = pd.read_csv(out / "summary.csv")
    report = (out / "report.md").read_text()
    by_config: dict[str, list[float]] = {}
    for run_id, curve in store.curves[name].items():
        run = store.client.get_run(run_id)
        if run.info.status == "FINISHED":  # the failed agents run is left out
            by_config.setdefault(run.data.tags.get("config_hash", "plain"), []).append(independent_auc(curve))
    assert len(summary) == len(by_config)
    for _, row in summary.iterrows():
        values = by_config.get(row["config_hash"]) or by_config["plain"]
        assert row["auc_mean"] == pytest.approx(np.mean(values), abs=1e-9)
        assert row["auc_ci_low"] <= row["auc_mean"] <= row["auc_ci_high"]
        assert row["seeds"] == len(values)
        assert f"| {row['label']} |" in report
        assert f"{row['auc_mean']:.3f}" in report
    for fig in data_figures:
        assert f"![{fig}]({fig}.png)" in report
    assert "[0, 100,000] env steps" in report and "different budgets" not in report
    assert (summary["budget"] == TOTAL).all()
    if name == "dqt":  # no sweep, no parent run to log to
        assert "parent run" not in report
    else:
        parent = store.parents[name]
        assert f"sweep parent run `{parent}`" in report
        logged = {Path(a.path).name for a in store.client.list_artifacts(parent, "report")}
        assert logged == {p.name for p in out.iterdir()}


def test_build_report_without_logging_and_without_runs(store: Store, tmp_path):
    result = build_report("dqt", store.uri, tmp_path, client=store.client, log_artifacts=False)
    assert result.parent_run_id is None and result.figures == ["success"]
    assert sorted(p.name for p in result.files) == ["report.md", "success.pdf", "success.png", "summary.csv"]
    with pytest.raises(ConfigError, match="no training runs"):
        build_report("empty", store.uri, tmp_path, client=store.client)


def test_figures_command_bad_input_is_one_config_error(store: Store, tmp_path):
    args = parse(["figures", "nope", "--tracking-uri", store.uri, "--out", str(tmp_path)])
    with pytest.raises(ConfigError) as err:
        args.handler(args)
    assert str(err.value) == f"experiment 'nope' not found in {store.uri} (known: Default, agents, dqt, empty, noise, tasks)"
    for argv in (["figures"], ["figures", "noise", "--all"]):
        args = parse([*argv, "--tracking-uri", store.uri])
        with pytest.raises(ConfigError):
            args.handler(args)
    args = parse(["figures", "noise", "--tracking-uri", f"sqlite:///{tmp_path / 'missing.db'}"])
    with pytest.raises(ConfigError, match="no MLflow store"):
        args.handler(args)
    assert not (tmp_path / "missing.db").exists()
