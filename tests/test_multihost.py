"""Many hosts, as a lab runs them: PostgreSQL as the shared claim queue, `mlflow server` on
PostgreSQL as the tracking store, and two `dqt sweep` workers with the same hostname but
separate identities: one started as on an SSH host, the other by the Slurm array script
(`scripts/slurm-sweep.sbatch`, with the Slurm variables set by hand) in its own PID
namespace, like a second container.  Both queue the points at once (offering is idempotent).

The Slurm task is SIGKILLed mid-point with everything it started (a container killed); the
first worker must take its claim over once the heartbeat stops and finish every point
exactly once.  Then `dqt figures` reads the server as it reads a SQLite file.  Real
processes throughout; the test starts and stops its own services.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO, alive, sigkill_session
from services import MlflowServer, Postgres, pg_bin, separate_pid_namespace

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(pg_bin("pg_ctl") is None, reason="PostgreSQL (pg_ctl) is not installed")]

EXPERIMENT = "hosts"
# 2 configurations x 2 seeds; checkpoints every 200 env steps so a killed point can resume.
SPEC = f"""\
name: {EXPERIMENT}
base:
  trainer: {{task: toy-reach, train_steps: 1000, checkpoint_every: 200}}
  env: {{episode_length: 40}}
  learner: {{batch_size: 32, warmup_decisions: 50, updates_per_step: 0.25, replay_capacity: 5000}}
  model: {{embed_dim: 32, num_layers: 1, num_heads: 2, num_bins: 11}}
  eval: {{every: 800, episodes: 2}}
grid:
  learner.lr: [1.0e-3, 3.0e-3]
seeds: 2
"""
HEARTBEAT = ["--heartbeat", "1", "--stale-after", "8"]


@pytest.fixture
def services(tmp_path):
    pg = Postgres.start(("optuna", "mlflow"))
    server = None
    try:
        server = MlflowServer.start(pg.url("mlflow"), tmp_path / "artifacts", tmp_path / "mlflow-server.log")
        yield pg, server
    finally:
        if server is not None:
            server.stop()
        pg.stop()
    assert not alive(server.proc.pid) if server else True


def point_runs(uri: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id]) if exp else []
    return [r for r in runs if r.data.tags.get("dqt.role") == "point"]


def test_two_workers_one_killed_every_point_once_then_figures(services, tmp_path):
    pg, server = services
    spec = tmp_path / "hosts.yaml"
    spec.write_text(SPEC)
    storage = pg.url("optuna")
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # `dqt` for the script
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("a", "b")}
    a = subprocess.Popen([sys.executable, "-m", "dqt.cli", "sweep", str(spec), "--storage", storage,
                          "--tracking-uri", server.url, *HEARTBEAT, "--worker-id", "a"],
                         cwd=REPO, env=env, stdout=logs["a"], stderr=subprocess.STDOUT, start_new_session=True)
    slurm = {"SLURM_ARRAY_JOB_ID": "4242", "SLURM_ARRAY_TASK_ID": "1", "SLURM_JOB_ID": "4243",
             "DQT_SPEC": str(spec), "DQT_STORAGE": storage,
             "DQT_TRACKING_URI": server.url, "DQT_HEARTBEAT": "1", "DQT_STALE_AFTER": "8"}
    namespace = separate_pid_namespace()
    b = subprocess.Popen([*namespace, "bash", str(REPO / "scripts" / "slurm-sweep.sbatch")], cwd=REPO,
                         env={**env, **slurm}, stdout=logs["b"], stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # Kill b (and its `dqt train`, agents, evaluator) once its point has a checkpoint.
        deadline, victim = time.monotonic() + 300, None
        while victim is None and time.monotonic() < deadline and b.poll() is None:
            time.sleep(0.5)
            for run in point_runs(server.url):
                if run.data.tags.get("dqt.worker", "").startswith("slurm-4242-1|") and run.info.status == "RUNNING":
                    from mlflow import MlflowClient

                    if MlflowClient(server.url).list_artifacts(run.info.run_id, "checkpoint"):
                        victim = run
        assert victim is not None, f"b never had a point with a checkpoint: {(tmp_path / 'b.log').read_text()}"
        sigkill_session(os.getsid(b.pid))
        b.wait(timeout=30)
        assert a.wait(timeout=600) == 0, (tmp_path / "a.log").read_text()[-3000:]
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                sigkill_session(os.getsid(proc.pid))
                proc.wait()

    runs = point_runs(server.url)
    per_point = Counter((r.data.tags["config_hash"], r.data.tags["seed"]) for r in runs)
    finished = Counter((r.data.tags["config_hash"], r.data.tags["seed"]) for r in runs
                       if r.info.status == "FINISHED")
    assert len(per_point) == 4 and set(finished.values()) == {1}, finished  # every point FINISHED once
    killed = (victim.data.tags["config_hash"], victim.data.tags["seed"])
    assert all(n == 1 for key, n in per_point.items() if key != killed), per_point  # no point run twice
    assert per_point[killed] <= 2, per_point  # the killed one resumed (1 run) or re-run once (2)
    a_log = (tmp_path / "a.log").read_text()
    assert "4 points" in a_log, a_log[-2000:]

    out = tmp_path / "report"
    fig = subprocess.run([sys.executable, "-m", "dqt.cli", "figures", EXPERIMENT, "--tracking-uri", server.url,
                          "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert fig.returncode == 0, fig.stderr[-3000:]
    out = out / EXPERIMENT  # dqt figures writes DIR/<experiment>/
    summary = (out / "summary.csv").read_text()
    assert summary.count("\n") >= 3, summary  # a header and a row per configuration
    assert (out / "report.md").exists() and (out / "success.png").exists()
