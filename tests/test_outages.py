"""Outages of the services a sweep leans on, for real: a tracking server that goes down mid-run
and comes back (the run trains on, its metric points buffered, and ends FINISHED with every point
written once), and a claim database restarted mid-sweep (the sweep ends 0, every point once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import REPO, TINY_TOY, dqt_command
from services import MlflowServer, Postgres, pg_bin


@pytest.mark.slow  # an mlflow server started twice and a toy run: ~90 s
def test_a_run_outlasts_its_tracking_server_going_down_and_coming_back(tmp_path):
    from mlflow.tracking import MlflowClient

    backend, artifacts = f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts"
    server = MlflowServer.start(backend, artifacts, tmp_path / "server-1.log")
    port = int(server.url.rsplit(":", 1)[1])
    budget = 2400
    proc = subprocess.Popen(dqt_command("train", *TINY_TOY, "--train-steps", str(budget), "--eval-every", "300",
                                        "--set", "trainer.checkpoint_every=300", "--tracking-uri", server.url,
                                        "--quiet"),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        client = MlflowClient(server.url)
        deadline = time.monotonic() + 240
        run_id = None
        while time.monotonic() < deadline and run_id is None:  # the run is up and has logged an eval
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            exp = client.get_experiment_by_name("dqt")
            for run in client.search_runs([exp.experiment_id]) if exp else []:
                if client.get_metric_history(run.info.run_id, "eval/success_rate"):
                    run_id = run.info.run_id
            time.sleep(0.5)
        assert run_id is not None, "the run never logged an evaluation"
        server.stop()
        time.sleep(20)  # the run goes on without its store (or ends, and its last flush waits)
        server = MlflowServer.start(backend, artifacts, tmp_path / "server-2.log", port=port)
        _, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err[-3000:]
        client = MlflowClient(server.url)
        assert client.get_run(run_id).info.status == "FINISHED"
        evals = [m.step for m in client.get_metric_history(run_id, "eval/success_rate")]
        assert sorted(evals) == list(range(0, budget + 1, 300)), evals  # every eval, each once
        episodes = [m.step for m in client.get_metric_history(run_id, "train/episode_return")]
        assert len(episodes) == len(set(episodes)) == budget // 60 and max(episodes) == budget
        assert [a.path for a in client.list_artifacts(run_id, "checkpoint")] == ["checkpoint/checkpoint.pt"]
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()


SWEEP = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
import fake_train as fake
from dqt.sweeps.expand import expand
from dqt.sweeps.runner import SweepOptions, run_sweep
from dqt.sweeps.spec import load_spec
spec = load_spec(sys.argv[1])
opts = SweepOptions(jobs=2, tracking_uri=sys.argv[2], storage=sys.argv[4], train_cmd=fake.command(), grace_s=10,
                    workdir=Path(sys.argv[5]), heartbeat_s=1.0, stale_after_s=30.0, poll_s=0.5)
sys.exit(run_sweep(spec, expand(spec), opts).exit_code)
"""


@pytest.mark.slow  # PostgreSQL started and restarted, four stand-in points: ~40 s
@pytest.mark.skipif(pg_bin("pg_ctl") is None, reason="PostgreSQL (pg_ctl) is not installed")
def test_a_sweep_outlasts_its_claim_database_restarting_mid_sweep(tmp_path, monkeypatch):
    """PostgreSQL stops at once (every connection drops) while two points run, and is back 8 s
    later: the claim-queue calls (closing claims, heartbeats, the next claims) retry through the
    outage, and the sweep ends 0 with every point run once."""
    from dqt.core.tracking import ensure_store

    log = tmp_path / "starts.jsonl"
    log.touch()
    uri = ensure_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    spec = tmp_path / "db.yaml"
    spec.write_text("name: db\nbase: {trainer: {task: toy-reach, train_steps: 300}, learner: {warmup_decisions: 50}, "
                    "eval: {every: 100}, noise: {mean: 33, std: 6}}\ngrid: {learner.lr: [1.0e-4, 2.0e-4, 3.0e-4, "
                    "4.0e-4]}\nseeds: 1\n")
    pg = Postgres.start(("optuna",))
    try:
        sweep = subprocess.Popen([sys.executable, "-c", SWEEP, str(spec), uri, str(REPO / "tests"), pg.url("optuna"),
                                  str(tmp_path / "work")],
                                 env={**os.environ, "PYTHONPATH": str(REPO), "FAKE_TRAIN_LOG": str(log)},
                                 stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while sum('"running"' in line for line in log.read_text().splitlines()) < 2:
            assert sweep.poll() is None and time.monotonic() < deadline, sweep.communicate()[1][-3000:]
            time.sleep(0.2)
        pg.restart(down_s=8.0)
        _, err = sweep.communicate(timeout=300)
        assert sweep.returncode == 0, err[-3000:]
        # the two points running at the restart end (6 s) while the database is down (8 s): closing
        # their claims had to wait it out, and so did the heartbeats and the next claims
        starts = [json.loads(line) for line in log.read_text().splitlines() if '"hash"' in line]
        assert len(starts) == 4 and len({s["hash"] for s in starts}) == 4  # each point once
    finally:
        pg.stop()
