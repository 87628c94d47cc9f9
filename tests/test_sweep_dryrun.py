"""`dqt sweep --dry-run`: the expanded table with each point's status in the store; nothing runs."""

from __future__ import annotations

import textwrap
from pathlib import Path

from dqt.cli import main
from dqt.core.tracking import ensure_store
from dqt.sweeps.expand import expand
from dqt.sweeps.spec import load_spec

SPEC = """\
name: demo
base: {trainer: {task: toy-reach, train_steps: 300}, learner: {warmup_decisions: 50}}
grid: {noise.std: [0, 1], noise.robust: [none, median]}
seeds: 2
"""


def make_spec(tmp_path: Path) -> Path:
    path = tmp_path / "demo.yaml"
    path.write_text(SPEC)
    return path


def log_run(client, experiment_id: str, config_hash: str, seed: int, status: str) -> str:
    run = client.create_run(experiment_id, tags={"config_hash": config_hash, "seed": str(seed)})
    client.set_terminated(run.info.run_id, status=status)
    return run.info.run_id


def test_dry_run_shows_store_status_and_runs_nothing(tmp_path, capsys):
    from mlflow import MlflowClient

    spec_path = make_spec(tmp_path)
    uri = ensure_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient(uri)
    exp = client.create_experiment("demo")
    points = expand(load_spec(spec_path))
    log_run(client, exp, points[0].config_hash, points[0].seed, "FINISHED")
    log_run(client, exp, points[1].config_hash, points[1].seed, "KILLED")
    log_run(client, exp, points[1].config_hash, points[1].seed, "FINISHED")  # a retry that finished
    log_run(client, exp, points[2].config_hash, points[2].seed, "FAILED")
    before = len(client.search_runs([exp]))

    assert main(["sweep", str(spec_path), "--dry-run", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("demo: 4 configurations x 2 seeds = 8 runs")
    assert lines[1].split() == ["config_hash", "std", "robust", "seed", "status"]
    rows = {(r.split()[0], int(r.split()[3])): r.split() for r in lines[2:10]}
    assert rows[points[0].key] == [points[0].config_hash, "0", "none", str(points[0].seed), "FINISHED"]
    assert rows[points[1].key][-1] == "FINISHED"
    assert rows[points[2].key][-1] == "FAILED"
    assert [rows[p.key][-1] for p in points[3:]] == ["-"] * 5
    assert lines[10] == "6 to run, 2 FINISHED, 1 FAILED"
    assert len(client.search_runs([exp])) == before  # no parent run, no point run


def test_dry_run_without_a_store_creates_none(tmp_path, capsys):
    spec_path = make_spec(tmp_path)
    db = tmp_path / "mlflow.db"
    assert main(["sweep", str(spec_path), "--dry-run", "--tracking-uri", f"sqlite:///{db}"]) == 0
    out = capsys.readouterr().out
    assert "8 to run, 0 FINISHED" in out
    assert not db.exists() and not (tmp_path / "optuna.journal").exists()


def test_bad_spec_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(SPEC).replace("noise.std", "noise.sdt"))
    assert main(["sweep", str(path), "--dry-run", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]) == 2
    err = capsys.readouterr().err
    assert err == (f"dqt: error: {path}: grid: unknown config key 'noise.sdt' (did you mean 'noise.std'?)\n")


def test_bad_jobs_is_exit_2(tmp_path, capsys):
    assert main(["sweep", str(make_spec(tmp_path)), "--jobs", "0", "--dry-run"]) == 2
    assert "--jobs must be an integer >= 1" in capsys.readouterr().err


def test_search_spec_dry_run_describes_the_space(tmp_path, capsys):
    spec = Path(__file__).resolve().parents[1] / "sweeps" / "search.yaml"
    assert main(["sweep", str(spec), "--profile", "paper", "--dry-run",
                 "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("search[paper]: Optuna search, 30 trials x 1 seeds")
    assert "  learner.lr: [1e-05, 0.001] log" in out
    assert "  learner.n_step: choices [1, 3, 5]" in out
    assert "study: not started" in out
    assert list(tmp_path.iterdir()) == []
