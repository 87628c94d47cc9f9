"""A tracking server behind MLflow's basic-auth app: workers pass credentials through the
environment, never the URI, and no password shows in a run's params or tags, or in what the
commands print; without credentials, one line says what to set."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import REPO, dqt_command
from services import MlflowServer

SECRET = "s3cret-Pass-99"
SPEC = """\
name: auth
base: {trainer: {task: toy-reach, train_steps: 300}, learner: {warmup_decisions: 20}, eval: {every: 300, episodes: 1},
       model: {embed_dim: 32, num_heads: 2, num_layers: 1, num_bins: 11}}
grid: {noise.std: [0, 1]}
seeds: 1
"""


@pytest.mark.slow  # an mlflow server with basic auth and a two-point sweep: ~60 s
def test_a_sweep_against_a_server_with_basic_auth_never_shows_the_password(tmp_path):
    pytest.importorskip("flask_wtf")
    ini = tmp_path / "auth.ini"
    ini.write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{tmp_path / 'auth.db'}\n"
                   f"admin_username = admin\nadmin_password = {SECRET}\n"
                   "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    server = MlflowServer.start(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts", tmp_path / "server.log",
                                extra=("--app-name", "basic-auth"),
                                env={"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_FLASK_SERVER_SECRET_KEY": "k"})
    try:
        spec = tmp_path / "auth.yaml"
        spec.write_text(SPEC)
        plain = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
        command = dqt_command("sweep", str(spec), "--tracking-uri", server.url, "--storage", str(tmp_path / "q.journal"))
        out = subprocess.run(command, cwd=REPO, env=plain, capture_output=True, text=True, timeout=300)
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr[-2000:]
        assert "asks for credentials" in out.stderr and "MLFLOW_TRACKING_USERNAME" in out.stderr
        creds = {**plain, "MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": SECRET}
        out = subprocess.run(command, cwd=REPO, env=creds, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        assert SECRET not in out.stdout + out.stderr

        from mlflow.tracking import MlflowClient

        os.environ.update({"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": SECRET})
        try:
            client = MlflowClient(server.url)
            runs = client.search_runs([client.get_experiment_by_name("auth").experiment_id])
        finally:
            for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
                os.environ.pop(key, None)
        assert sorted(r.info.status for r in runs) == ["FINISHED"] * 3  # the parent and two points
        for r in runs:
            shown = [*r.data.params.values(), *r.data.tags.values()]
            assert not [v for v in shown if SECRET in v], r.info.run_id
    finally:
        server.stop()
