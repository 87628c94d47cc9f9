"""Bad `dqt train` input fails with one line and exit 2 before the tracking store is opened:
no empty ``mlflow.db`` is left behind (the real CLI, in a throwaway folder)."""

from __future__ import annotations

import pytest
from conftest import TINY_TOY, empty_store, run_dqt


def one_line_error(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dqt: error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize("args,words", [
    (["--experiment", "", *TINY_TOY], ["--experiment", "''"]),
    (["--experiment", "   ", *TINY_TOY], ["--experiment"]),
    (["--resume", "X"], ["--resume X", "no such run", "does not exist"]),
    (["--resume", "X", *TINY_TOY], ["--resume X", "no such run"]),
    (["--parent-run-id", "0123abc", *TINY_TOY], ["--parent-run-id 0123abc", "no such run"]),
], ids=["empty experiment", "blank experiment", "resume alone", "resume with config", "parent run"])
def test_bad_train_input_creates_no_store(tmp_path, args, words):
    proc = run_dqt("train", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", *args, timeout=180, cwd=tmp_path)
    line = one_line_error(proc)
    for word in words:
        assert word in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no mlflow.db, no lock file, no artifacts


def test_bad_train_input_with_the_default_store_leaves_the_cwd_alone(tmp_path):
    proc = run_dqt("train", "--experiment", "", *TINY_TOY, "--tracking-uri", "sqlite:///mlflow.db", cwd=tmp_path)
    one_line_error(proc)
    assert not (tmp_path / "mlflow.db").exists()


def test_resume_of_an_unknown_run_in_an_existing_store(tmp_path_factory, tmp_path):
    uri = empty_store(tmp_path_factory, tmp_path)
    before = (tmp_path / "mlflow.db").read_bytes()
    line = one_line_error(run_dqt("train", "--tracking-uri", uri, "--resume", "0" * 32, cwd=tmp_path))
    assert f"--resume {'0' * 32}: no such run" in line
    assert (tmp_path / "mlflow.db").read_bytes() == before
