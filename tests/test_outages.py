"""A tracking server that goes down mid-run and comes back: the run trains on through the outage
(its metric points stay buffered, a periodic checkpoint the store refuses is skipped) and ends
FINISHED with every point written once."""

from __future__ import annotations

import subprocess
import time

import pytest
from conftest import REPO, TINY_TOY, dqt_command
from services import MlflowServer


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
