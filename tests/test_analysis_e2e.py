"""Analysis end to end: a real tiny sweep on toy-reach, then `dqt figures` on its store.

The runs are logged by the real `dqt sweep` -> `dqt train` path (agents, learner, evaluator)
into a temporary SQLite store; `dqt figures` must then write every figure that applies to a
noise grid (success, noise; PNG and PDF), summary.csv and report.md, log them to the sweep's
parent run, and its AUC per configuration must equal the one computed here, independently,
from the raw MLflow metric histories.

Slow (6 real training runs, 2 at a time, about a minute on 2 cores):
`pytest -m slow tests/test_analysis_e2e.py`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_dqt

pytestmark = pytest.mark.slow

EXPERIMENT = "e2e-noise"
TRAIN_STEPS = 600
EVAL_EVERY = 300
SEEDS = 2
STDS = (0, 1)
ROBUSTS = ("none", "median")
# (noise.std, noise.robust) of every configuration: the noise-free reference, then the noisy
# std with and without the median filter, as sweeps/noise.yaml lays out its grid.
CONFIGS = {(float(STDS[0]), "none")} | {(float(STDS[1]), robust) for robust in ROBUSTS}

# The TINY_TOY trainer budget of conftest.py as a sweep spec; the grids vary noise.std (so
# the noise figure applies) and the robust estimator, at noise mean 0.
SPEC = f"""\
name: {EXPERIMENT}
description: tiny noise grid on toy-reach for the analysis end-to-end test
base:
  trainer: {{task: toy-reach, train_steps: {TRAIN_STEPS}}}
  eval: {{every: {EVAL_EVERY}, episodes: 2}}
  model: {{embed_dim: 32, num_heads: 2, num_layers: 1, num_bins: 11}}
  learner: {{batch_size: 32, warmup_decisions: 50, updates_per_step: 0.25}}
grids:
  - noise.mean: [0]
    noise.std: [{STDS[0]}]
  - noise.mean: [0]
    noise.std: [{STDS[1]}]
    noise.robust: [{", ".join(ROBUSTS)}]
seeds: {SEEDS}
"""

# success: every experiment; noise: noise.std varies (analysis/figures.py `applicable`).
EXPECTED_FIGURES = ("success", "noise")


def trapezoid_auc(xs: list[float], ys: list[float]) -> float:
    """Area under the piecewise-linear curve through (xs, ys) divided by the x range."""
    if xs[-1] == xs[0]:
        return sum(ys) / len(ys)
    area = sum((x1 - x0) * (y0 + y1) / 2 for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:], strict=False))
    return area / (xs[-1] - xs[0])


def interpolate(xs: list[float], ys: list[float], x: float) -> float:
    """The piecewise-linear curve through (xs, ys) at x, held at its first value before xs[0]
    and at its last value after xs[-1]."""
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:], strict=False):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    raise AssertionError(f"{x} not inside [{xs[0]}, {xs[-1]}]")


def expected_aucs(client, runs, metric: str = "eval/success_rate") -> dict[str, float]:
    """config_hash -> mean over seeds of the AUC of `metric`, from the raw metric histories.

    Like analysis/auc.py: each run on its own, over [0, its trainer.train_steps param]: the
    curve through its eval points (points logged twice at one step averaged), evaluated at 0,
    at every eval step inside the budget and at the budget, then integrated and divided by
    the budget.
    """
    per_config: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        by_step: dict[int, list[float]] = defaultdict(list)
        for m in client.get_metric_history(run.info.run_id, metric):
            by_step[m.step].append(m.value)
        steps = sorted(by_step)
        assert len(steps) >= 2, f"run {run.info.run_id} logged {metric} at {steps} only"
        xs = [float(s) for s in steps]
        ys = [sum(by_step[s]) / len(by_step[s]) for s in steps]
        budget = float(run.data.params["trainer.train_steps"])
        assert budget == TRAIN_STEPS
        grid = sorted({0.0, budget} | {x for x in xs if 0 < x < budget})
        per_config[run.data.tags["config_hash"]].append(trapezoid_auc(grid, [interpolate(xs, ys, g) for g in grid]))
    return {h: sum(v) / len(v) for h, v in per_config.items()}


def test_figures_and_report_of_a_real_sweep_match_an_independent_auc(tmp_path: Path, store: str) -> None:
    from mlflow.tracking import MlflowClient

    spec = tmp_path / "e2e.yaml"
    spec.write_text(SPEC)
    sweep = run_dqt("sweep", str(spec), "--jobs", "2", "--tracking-uri", store, timeout=600)
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]

    client = MlflowClient(store)
    exp = client.get_experiment_by_name(EXPERIMENT)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("dqt.role") == "parent"]
    points = [r for r in runs if r.data.tags.get("dqt.role") == "point"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(points) == len(CONFIGS) * SEEDS
    assert all(r.info.status == "FINISHED" for r in points)
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in points)
    hashes = {r.data.tags["config_hash"] for r in points}
    assert len(hashes) == len(CONFIGS)

    out = tmp_path / "reports"
    fig = run_dqt("figures", EXPERIMENT, "--tracking-uri", store, "--out", str(out), timeout=300)
    assert fig.returncode == 0, fig.stdout[-3000:] + fig.stderr[-3000:]
    folder = out / EXPERIMENT
    expected_files = [f"{name}.{ext}" for name in EXPECTED_FIGURES for ext in ("png", "pdf")]
    expected_files += ["summary.csv", "report.md"]
    for name in expected_files:
        path = folder / name
        assert path.is_file() and path.stat().st_size > 0, f"{path} missing or empty"
    assert (folder / "success.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (folder / "noise.pdf").read_bytes()[:5] == b"%PDF-"

    # summary.csv: one row per configuration, both seeds counted, AUC as computed here.
    summary = pd.read_csv(folder / "summary.csv", dtype={"config_hash": str})
    assert set(summary["config_hash"]) == hashes
    assert (summary["seeds"] == SEEDS).all()
    assert {(float(s), r) for s, r in zip(summary["noise.std"], summary["noise.robust"], strict=True)} == CONFIGS
    want = expected_aucs(client, points)
    for _, row in summary.iterrows():
        got = row["auc_mean"]
        assert 0.0 <= got <= 1.0
        assert math.isclose(got, want[row["config_hash"]], rel_tol=1e-9, abs_tol=1e-12), (
            f"{row['label']}: summary.csv AUC {got!r} != independent {want[row['config_hash']]!r}")
        assert row["auc_ci_low"] - 1e-12 <= got <= row["auc_ci_high"] + 1e-12

    # report.md: the same numbers (3 decimals) in the row of each configuration, figures linked.
    report = (folder / "report.md").read_text()
    table_rows = {line.split("|")[1].strip(): line for line in report.splitlines() if line.startswith("| ")}
    for _, row in summary.iterrows():
        line = table_rows.get(row["label"])
        assert line is not None, f"no report row for {row['label']!r}"
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert f"{want[row['config_hash']]:.3f}" in cells, (line, want[row["config_hash"]])
    for name in EXPECTED_FIGURES:
        assert f"({name}.png)" in report and f"({name}.pdf)" in report

    # At this budget toy-reach is rarely solved, so the success AUCs may all be 0. The same
    # gridding and averaging on eval/return (never 0, different in every run) keeps the
    # comparison honest: dqt.analysis.auc on the real histories against the computation here.
    from dqt.analysis.auc import auc_table
    from dqt.analysis.load import load_tidy
    from dqt.analysis.selection import prepare

    data = prepare(EXPERIMENT, load_tidy(EXPERIMENT, store, metrics=["eval/return"]))
    returns = auc_table(data, metric="eval/return", n_resamples=200).table.set_index("config_hash")["auc_mean"]
    want_returns = expected_aucs(client, points, "eval/return")
    assert set(returns.index) == hashes
    assert len({round(v, 9) for v in want_returns.values()}) > 1, want_returns  # not a constant
    for config_hash, value in want_returns.items():
        assert math.isclose(returns[config_hash], value, rel_tol=1e-9, abs_tol=1e-12), (config_hash, value)

    # The same files are artifacts of the sweep's parent run, under report/.
    logged = {Path(a.path).name for a in client.list_artifacts(parents[0].info.run_id, "report")}
    assert set(expected_files) <= logged, logged
