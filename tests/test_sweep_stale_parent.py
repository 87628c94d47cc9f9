"""A `dqt sweep` killed with SIGKILL cannot end its parent run; the next `dqt sweep` of the same
spec and profile must (real `dqt sweep` and `dqt train` processes on toy-reach).

Slow: `pytest -m slow tests/test_sweep_stale_parent.py`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import sigkill_session

from dqt.core.tracking import ensure_store

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

SPEC = """\
name: stale
base:
  trainer: {task: toy-reach, train_steps: 1200, checkpoint_every: 200}
  learner: {batch_size: 32, warmup_decisions: 25, updates_per_step: 0.25, replay_capacity: 5000}
  model: {embed_dim: 32, num_layers: 1, num_heads: 2, num_bins: 16}
  eval: {every: 400, episodes: 2}
seeds: 1
profiles: {quick: {}}
"""


def dqt_sweep(spec: Path, uri: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dqt.cli", "sweep", str(spec), "--tracking-uri", uri],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def runs(uri: str, role: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("stale")
    found = client.search_runs([exp.experiment_id]) if exp else []
    return [r for r in found if r.data.tags.get("dqt.role") == role]


@pytest.mark.serial  # races a running process (a kill or Ctrl-C mid-run): run alone
def test_the_next_sweep_kills_the_parent_a_sigkilled_sweep_left_running(tmp_path):
    spec = tmp_path / "stale.yaml"
    spec.write_text(SPEC)
    uri = ensure_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    sweep = dqt_sweep(spec, uri, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(r.info.status == "RUNNING" for r in runs(uri, "point")):
        assert sweep.poll() is None, sweep.communicate()[0]  # it must still be at work when killed
        time.sleep(0.5)
    (old,) = runs(uri, "parent")
    assert sweep.poll() is None and old.info.status == "RUNNING"
    os.killpg(sweep.pid, signal.SIGKILL)  # the sweep's whole process group ...
    sigkill_session(sweep.pid)  # ... and each `dqt train` group (their own; the session is the sweep's pid)
    sweep.wait(timeout=30)
    assert [r.info.status for r in runs(uri, "parent")] == ["RUNNING"]  # what SIGKILL leaves behind

    again = dqt_sweep(spec, uri)
    out = again.communicate(timeout=900)[0]
    assert again.returncode == 0, out
    parents = {r.info.run_id: r for r in runs(uri, "parent")}
    assert parents[old.info.run_id].info.status == "KILLED"
    assert "1 parent run(s) of dead sweeps marked KILLED" in out
    assert "gone" in parents[old.info.run_id].data.tags["dqt.failure_reason"]
    assert old.data.tags["dqt.pid"] == str(sweep.pid)  # what told the next sweep it was gone
    (new,) = [r for rid, r in parents.items() if rid != old.info.run_id]
    assert new.info.status == "FINISHED"
    points = runs(uri, "point")
    assert any(r.info.status == "FINISHED" for r in points)
    assert not any(r.info.status == "RUNNING" for r in points)
