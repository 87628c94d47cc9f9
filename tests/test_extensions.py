"""Extending the toolkit in one place: an env family, a noise kind and an eval metric, each one
registration in a plugin module (tests/plugins/dqt_example_plugin.py), taken end to end from
the spec through the sweep's trainers and agents (other processes) to the figure."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO, dqt_command

PLUGIN_DIR = REPO / "tests" / "plugins"
SPEC = """\
name: ext
base:
  trainer: {task: toy-line, train_steps: 400}
  model: {embed_dim: 32, num_heads: 2, num_layers: 1, num_bins: 11}
  learner: {batch_size: 32, warmup_decisions: 50, updates_per_step: 0.25}
  noise: {kind: uniform, mean: 0, std: 1}
  eval: {every: 200, episodes: 3}
grid:
  noise.robust: [none, median]
seeds: 1
"""
AXES = """
import sys
from dqt.analysis.figures import figure_success
from dqt.analysis.load import load_tidy
from dqt.analysis.selection import prepare
data = prepare("ext", load_tidy("ext", sys.argv[1]), figures=True)
print([ax.get_ylabel() for ax in figure_success(data).axes if ax.get_ylabel()])
"""


def run(args: list[str], env: dict, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


@pytest.mark.slow  # one sweep of two tiny runs, then figures: ~40 s
def test_an_env_family_a_noise_kind_and_a_metric_added_in_one_place_run_from_spec_to_figure(tmp_path, store):
    spec = tmp_path / "ext.yaml"
    spec.write_text(SPEC)
    plain = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{PLUGIN_DIR}"}
    plugged = {**plain, "DQT_PLUGINS": "dqt_example_plugin"}
    # without the plugin, the spec names an unknown task: one line, exit 2
    out = run(dqt_command("sweep", str(spec), "--tracking-uri", store), plain)
    assert out.returncode == 2 and "unknown task 'toy-line'" in out.stderr and len(out.stderr.splitlines()) == 1
    out = run(dqt_command("sweep", str(spec), "--tracking-uri", store), plugged)
    assert out.returncode == 0, out.stderr[-3000:]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    runs = [r for r in client.search_runs([client.get_experiment_by_name("ext").experiment_id])
            if r.data.tags.get("dqt.role") == "point"]
    assert len(runs) == 2
    for r in runs:
        assert r.data.params["trainer.task"] == "toy-line" and r.data.params["noise.kind"] == "uniform"
        assert [m.step for m in client.get_metric_history(r.info.run_id, "eval/return_spread")] == [0, 200, 400]
    out = run(dqt_command("figures", "ext", "--tracking-uri", store, "--out", str(tmp_path / "reports")), plugged)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "reports" / "ext" / "success.png").stat().st_size > 1000
    # the figure's rows follow the declared metrics: return, success, then the plugin's
    out = run([sys.executable, "-c", AXES, store], plugged)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == str(["eval return (full episode, env reward)", "eval success, last step (the paper's)",
                                      "eval return spread (std over episodes)"])


@pytest.mark.slow  # one tiny run
def test_a_declared_figure_metric_missing_from_the_store_is_an_error_that_names_it(tmp_path, store):
    out = run(dqt_command("train", "--task", "toy-reach", "--train-steps", "300", "--eval-every", "300",
                          "--eval-episodes", "1", "--set", "model.embed_dim=32", "--set", "model.num_heads=2",
                          "--set", "learner.warmup_decisions=20", "--tracking-uri", store, "--quiet"),
              {**os.environ})
    assert out.returncode == 0, out.stderr[-3000:]
    plugged = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{PLUGIN_DIR}", "DQT_PLUGINS": "dqt_example_plugin"}
    out = run(dqt_command("figures", "dqt", "--tracking-uri", store, "--out", str(tmp_path)), plugged)
    assert out.returncode == 2
    assert out.stderr.strip() == ("dqt: error: experiment 'dqt': no run logged the figure metric 'eval/return_spread' "
                                  "(eval return spread (std over episodes); declared in dqt.core.metrics)")


@pytest.mark.slow  # one tiny run on a gymnasium task
def test_a_gymnasium_task_without_success_is_judged_by_its_return_and_the_report_says_so(tmp_path, store):
    out = run(dqt_command("train", "--task", "gym:Pendulum-v1", "--train-steps", "800", "--eval-every", "400",
                          "--eval-episodes", "2", "--set", "model.embed_dim=32", "--set", "model.num_heads=2",
                          "--set", "model.num_bins=11", "--set", "learner.batch_size=32",
                          "--set", "learner.warmup_decisions=100", "--tracking-uri", store, "--quiet"), {**os.environ})
    assert out.returncode == 0, out.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    (r,) = client.search_runs([client.get_experiment_by_name("dqt").experiment_id])
    assert r.data.tags["dqt.success_signal"] == "false"
    assert "eval/return" in r.data.metrics and not [k for k in r.data.metrics if "success" in k]
    assert [m.value for m in client.get_metric_history(r.info.run_id, "eval/episode_length")] == [200.0] * 3
    out = run(dqt_command("figures", "dqt", "--tracking-uri", store, "--out", str(tmp_path)), {**os.environ})
    assert out.returncode == 0, out.stderr[-3000:]
    report = (tmp_path / "dqt" / "report.md").read_text()
    assert "the task reports no success signal: its runs are judged by their return alone" in report
