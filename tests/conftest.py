"""Shared test fixtures: throwaway MLflow stores and running the real `dqt` command."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# The smallest trainer config that still exercises every part (agents, learner, eval).
TINY_TOY = [
    "--task", "toy-reach", "--train-steps", "600", "--eval-every", "300", "--eval-episodes", "2",
    "--set", "env.episode_length=60",
    "--set", "model.embed_dim=32", "--set", "model.num_heads=2", "--set", "model.num_layers=1",
    "--set", "model.num_bins=11", "--set", "learner.batch_size=32", "--set", "learner.warmup_decisions=50",
    "--set", "learner.updates_per_step=0.25",
]


# A learner that always takes >= 3 ms an update: how far the agents outrun it no longer depends on
# how this machine shares its cores (CI once saw a learner keep up, and the unbounded peak was 212).
SLOW_LEARNER = ("import sys, time, dqt.core.learning.learner as l; update = l.Learner.update; "
                "l.Learner.update = lambda self, b: (time.sleep(0.003), update(self, b))[1]; "
                "from dqt.cli import entry; sys.argv[0] = 'dqt'; entry()")


# A run that holds still once the learner has taken in HOLD_AT env steps: it touches HOLD_MARKER and
# sleeps until a signal ends it, so a test that interrupts a run mid-way never races the run's end,
# on a machine of any speed (the asynchronous metric writes it could wait on arrive late).
HOLD_RUN = ("import os, pathlib, time, dqt.core.running.learner_loop as ll; take = ll.LearnerLoop.take_episode\n"
            "def hold(self, msg):\n"
            "    take(self, msg)\n"
            "    if self.env_steps >= int(os.environ['HOLD_AT']):\n"
            "        pathlib.Path(os.environ['HOLD_MARKER']).touch()\n"
            "        while True: time.sleep(1)\n"
            "ll.LearnerLoop.take_episode = hold\n"
            "import sys; from dqt.cli import entry; sys.argv[0] = 'dqt'; entry()")


# A learner whose batch carries a NaN reward at update POISON_AT: a corrupted reward must fail the run.
POISON_RUN = ("import os, dqt.core.learning.learner as l; update = l.Learner.update\n"
              "def poisoned(self, batch):\n"
              "    if self.updates == int(os.environ['POISON_AT']):\n"
              "        batch.ret[0] = float('nan')\n"
              "    return update(self, batch)\n"
              "l.Learner.update = poisoned\n"
              "import sys; from dqt.cli import entry; sys.argv[0] = 'dqt'; entry()")


def empty_store(tmp_path_factory, root: Path) -> str:
    """URI of a fresh SQLite store in `root`, copied from one initialised per test session:
    MLflow's schema migrations take seconds, copying the file takes none."""
    from mlflow.tracking import MlflowClient

    template = tmp_path_factory.getbasetemp() / "mlflow-template.db"
    if not template.exists():
        MlflowClient(f"sqlite:///{template}").search_experiments()
    shutil.copy(template, root / "mlflow.db")
    return f"sqlite:///{root / 'mlflow.db'}"


@pytest.fixture
def store(tmp_path_factory, tmp_path) -> str:
    """Tracking URI of a fresh, empty SQLite store in this test's tmp dir."""
    return empty_store(tmp_path_factory, tmp_path)


def dqt_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dqt.cli", *args]


def run_dqt(*args: str, timeout: float = 240, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`dqt ARGS` in a process of its own; `env` is added to this process's environment."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(dqt_command(*args), capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or REPO, env=env)


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state, ppid, ...); None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def children_of(pid: int) -> set[int]:
    """Every live descendant of `pid` (from /proc)."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := proc_stat(int(entry.name))) is not None:
            parent[int(entry.name)] = int(stat[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - found
        found |= frontier
    return found


def sigkill_session(sid: int) -> None:
    """SIGKILL every process of the session: a sweep's own process group and the group each
    `dqt train` leads (with its agents), as a crash or the OOM killer would leave them.  All
    are stopped first, so none runs a handler (a trainer told by its dying sweep to stop would
    otherwise end its run) before the kill lands."""
    pids = []
    for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
        try:
            if os.getsid(pid) == sid:
                os.kill(pid, signal.SIGSTOP)
                pids.append(pid)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def pytest_collection_modifyitems(config, items):
    """End-to-end (`slow`) tests first: with `make test`'s one-test-at-a-time scheduling over
    two workers, the long runs start early and the many second-long tests fill the gaps, so no
    worker is left finishing a minute-long run alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
