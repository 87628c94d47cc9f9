"""End to end with the real `dqt train` on toy-reach: two workers, resume after SIGKILL, search.

Slow (each run starts the trainer's processes): `pytest -m slow tests/test_sweep_e2e.py`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import sigkill_session

from dqt.core.tracking import ensure_store

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

TINY = """\
  trainer: {task: toy-reach, train_steps: 300, checkpoint_every: 100}
  learner: {batch_size: 32, warmup_decisions: 25, updates_per_step: 0.25, replay_capacity: 5000}
  model: {embed_dim: 32, num_layers: 1, num_heads: 2, num_bins: 16}
  eval: {every: 100, episodes: 2}
"""


def dqt(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dqt.cli", *args], env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def client_runs(uri: str, experiment: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def test_two_workers_share_a_real_sweep(tmp_path):
    import optuna

    from dqt.sweeps.claims import open_storage

    spec = tmp_path / "two.yaml"
    spec.write_text(f"name: two\nbase:\n{TINY}grid: {{noise.robust: [none, median]}}\nseeds: 2\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = dqt("sweep", str(spec), "--tracking-uri", uri)
    journal = tmp_path / "optuna.journal"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the helper starts once the first sweep queued the points
        if journal.exists() and journal.stat().st_size:
            study = optuna.load_study(study_name="sweep/two/default", storage=open_storage(str(journal)))
            if len(study.get_trials(deepcopy=False)) == 4:
                break
        time.sleep(0.5)
    helper = dqt("sweep", str(spec), "--tracking-uri", uri, "--worker")
    out1, out2 = first.communicate(timeout=900)[0], helper.communicate(timeout=900)[0]
    assert first.returncode == 0, out1
    assert helper.returncode == 0, out2
    runs = client_runs(uri, "two")
    parents = {r.info.run_id for r in runs if r.data.tags.get("dqt.role") == "parent"}
    points = [r for r in runs if r.data.tags.get("dqt.role") == "point"]
    assert len(points) == 4 and all(r.info.status == "FINISHED" for r in points)
    assert len({(r.data.tags["config_hash"], r.data.tags["seed"]) for r in points}) == 4  # each point ran once
    assert {r.data.tags["mlflow.parentRunId"] for r in points} == parents and len(parents) == 2  # both worked


@pytest.mark.serial  # races a running process (a kill or Ctrl-C mid-run): run alone
def test_a_sweep_killed_with_sigkill_resumes_from_the_checkpoint(tmp_path):
    from mlflow import MlflowClient

    spec = tmp_path / "one.yaml"
    # A budget long enough that the kill lands mid-run, well after the first checkpoint (100 steps).
    spec.write_text(f"name: one\nbase:\n{TINY.replace('train_steps: 300', 'train_steps: 4000')}seeds: 1\n")
    uri = ensure_store(f"sqlite:///{tmp_path / 'mlflow.db'}")  # created before this test reads it
    sweep = dqt("sweep", str(spec), "--tracking-uri", uri, start_new_session=True)
    deadline = time.monotonic() + 300
    run_id = None
    while time.monotonic() < deadline and run_id is None:
        time.sleep(1.0)
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("one")
        for run in client.search_runs([exp.experiment_id]) if exp else []:
            if run.data.tags.get("dqt.role") == "point" and client.list_artifacts(run.info.run_id, "checkpoint"):
                run_id = run.info.run_id
    assert run_id is not None, "no checkpoint appeared"
    # SIGKILL everything of the sweep: the sweep and each `dqt train` group (same session)
    sigkill_session(os.getsid(sweep.pid))
    sweep.wait(timeout=30)
    assert MlflowClient(uri).get_run(run_id).info.status == "RUNNING"  # left behind by the kill

    again = dqt("sweep", str(spec), "--tracking-uri", uri)
    out = again.communicate(timeout=900)[0]
    assert again.returncode == 0, out
    points = [r for r in client_runs(uri, "one") if r.data.tags.get("dqt.role") == "point"]
    assert [(r.info.run_id, r.info.status) for r in points] == [(run_id, "FINISHED")]  # resumed, not restarted


def test_search_over_real_runs(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(f"name: s\nbase:\n{TINY}seeds: 1\nsearch:\n  n_trials: 2\n  sampler_seed: 0\n  space:\n"
                    "    learner.lr: {low: 1.0e-4, high: 1.0e-2, log: true}\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = dqt("sweep", str(spec), "--tracking-uri", uri, "--jobs", "2")
    out = proc.communicate(timeout=900)[0]
    assert proc.returncode == 0, out
    assert re.search(r"search/s/default/[0-9a-f]{8}: best max AUC", out), out
    (parent,) = [r for r in client_runs(uri, "s") if r.data.tags.get("dqt.role") == "parent"]
    assert 0.0 <= float(parent.data.tags["best.value"]) <= 1.0
    assert "best.learner.lr" in parent.data.params
