"""Every command leaves ``mlflow.db`` self-contained: a copy of that one file (what a researcher
shares or archives), without ``-wal``/``-shm``/``-journal`` beside it, holds every run with its
final status and every metric point the store holds.

The bug this guards against: with WAL journaling, committed writes sat in ``mlflow.db-wal``
until a checkpoint, and processes leaving through ``os._exit`` never ran one, so a copy of
``mlflow.db`` alone showed FINISHED runs as RUNNING and lacked metric points.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import pytest
from conftest import REPO, TINY_TOY, dqt_command

from dqt.core.tracking import RunTracker, _dispose_engines, ensure_store, settle_store, sqlite_path

SIDE_FILES = ("-wal", "-shm", "-journal")


# ---- helpers ----------------------------------------------------------------------------------
def db_of(uri: str) -> Path:
    db = sqlite_path(uri)
    assert db is not None
    return db


def journal_mode(db: Path) -> str:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute("PRAGMA journal_mode").fetchone()[0].lower()


def wal_bytes(db: Path) -> int:
    wal = Path(f"{db}-wal")
    return wal.stat().st_size if wal.exists() else 0


def copy_alone(db: Path, dest: Path) -> str:
    """Copy ONLY the database file, as `cp mlflow.db elsewhere/` would; its URI."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(db, dest / db.name)
    assert not [p for p in dest.iterdir() if p.name != db.name]
    return f"sqlite:///{dest / db.name}"


def snapshot(uri: str) -> dict[str, tuple[str, str, dict[str, list[tuple[int, int, str]]]]]:
    """Every run of every experiment, read through MLflow: name, status, full metric histories."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp_ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    out = {}
    for run in client.search_runs(exp_ids, run_view_type=ViewType.ALL, max_results=1000):
        history = {key: sorted((m.step, m.timestamp, repr(m.value))
                               for m in client.get_metric_history(run.info.run_id, key))
                   for key in run.data.metrics}
        out[run.info.run_id] = (run.info.run_name, run.info.status, history)
    return out


def metric_rows(db: Path) -> int:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]


def points(snap, run_id: str) -> int:
    return sum(len(h) for h in snap[run_id][2].values())


def assert_copy_is_complete(db: Path, tmp_path: Path, statuses: set[str]) -> dict:
    """Copy `db` alone, then check the copy against the original read through MLflow."""
    assert wal_bytes(db) == 0, f"{db}-wal still holds {wal_bytes(db)} bytes"
    assert not Path(f"{db}-journal").exists(), "a hot rollback journal: a write was cut off"
    copy = copy_alone(db, tmp_path / "shared")
    copied = snapshot(copy)  # read the copy first: reading the original must not be what fixes it
    original = snapshot(f"sqlite:///{db}")
    assert copied == original
    assert copied, "no runs at all"
    assert {status for _, status, _ in copied.values()} <= statuses, copied
    assert metric_rows(db_of(copy)) == metric_rows(db)
    return copied


def run_python(script: str, timeout: float = 120) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=REPO, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


# ---- the store's journal ------------------------------------------------------------------------
def test_store_uses_the_rollback_journal(store: str) -> None:
    db = db_of(ensure_store(store))
    assert journal_mode(db) == "delete"
    tracker = RunTracker(store, "journal", flush_every_s=0.0)
    tracker.log_metrics({"x": 1.0}, step=0)
    tracker.end()
    assert not [p.name for p in db.parent.iterdir() if p.name.endswith(SIDE_FILES)]


def test_flushed_points_are_in_the_file_even_when_the_process_os_exits(store: str, tmp_path: Path) -> None:
    """A learner killed between two flushes (here: os._exit without ending the run) leaves
    every flushed point in mlflow.db itself; an ended run leaves its final status."""
    run_python(f"""
        import os
        from dqt.core.tracking import RunTracker
        from dqt.core.ipc.procutil import exit_now
        done = RunTracker({store!r}, "exits", run_name="ended", flush_every_s=0.0)
        for step in range(40):
            done.log_metrics({{"loss/td": step / 3, "q/mean": -step}}, step=step)
        done.end("FINISHED")
        cut = RunTracker({store!r}, "exits", run_name="cut", flush_every_s=0.0)
        for step in range(25):
            cut.log_metrics({{"loss/td": step / 7}}, step=step)
        cut.flush()  # returns once MLflow's writer threads wrote every point
        os._exit(0)  # no end(), no atexit, no interpreter teardown
    """)
    snap = assert_copy_is_complete(db_of(store), tmp_path, {"FINISHED", "RUNNING"})
    by_name = {name: (status, hist) for name, status, hist in snap.values()}
    assert by_name["ended"][0] == "FINISHED"
    assert [len(h) for h in by_name["ended"][1].values()] == [40, 40]
    assert by_name["cut"][0] == "RUNNING"
    assert [s for s, _, _ in by_name["cut"][1]["loss/td"]] == list(range(25))


# A process of the old code: WAL journaling, writes, leaves through os._exit (no checkpoint).
_OLD_WAL_WRITER = """
    import os, sqlite3
    from mlflow.tracking import MlflowClient
    db = {db!r}
    sqlite3.connect(db).execute("PRAGMA journal_mode=WAL").fetchone()
    client = MlflowClient("sqlite:///" + db)
    run = client.create_run("0", run_name="old-wal")
    for step in range(30):
        client.log_metric(run.info.run_id, "loss/td", step * 0.5, step=step)
    client.set_terminated(run.info.run_id, "FINISHED")
    os._exit(0)
"""


def test_a_store_left_in_wal_mode_is_converted_with_its_data(store: str, tmp_path: Path) -> None:
    db = db_of(store)
    run_python(_OLD_WAL_WRITER.format(db=str(db)))
    assert wal_bytes(db) > 0  # the bug: the writes sit in mlflow.db-wal ...
    stale = snapshot(copy_alone(db, tmp_path / "before"))
    assert not stale or {s for _, s, _ in stale.values()} != {"FINISHED"}  # ... not in the copy

    ensure_store(store)
    assert journal_mode(db) == "delete"
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()
    snap = assert_copy_is_complete(db, tmp_path, {"FINISHED"})
    (name, status, history), = snap.values()
    assert (name, status, len(history["loss/td"])) == ("old-wal", "FINISHED", 30)


_WAL_HOLDER = """
    import sqlite3, sys, time
    conn = sqlite3.connect({db!r}, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("SELECT COUNT(*) FROM runs").fetchone()  # a reader has the WAL open from now on
    print("open", flush=True)
    line = sys.stdin.readline()           # "read": hold a read transaction (an old snapshot)
    conn.execute("BEGIN")
    conn.execute("SELECT COUNT(*) FROM runs").fetchone()
    print("reading", flush=True)
    time.sleep(float(line.split()[1]))
    conn.execute("COMMIT")
    sys.stdin.readline()                  # stay connected (idle) until told to go
"""


def test_a_run_ending_checkpoints_a_wal_another_process_holds_open(store: str, tmp_path: Path) -> None:
    """A store another process keeps open in WAL mode (an MLflow UI of the old code) cannot
    leave WAL; ending a run then checkpoints the WAL into the file, retrying while a reader
    of that process blocks the checkpoint (SQLITE_BUSY), and leaves the WAL empty."""
    db = db_of(store)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_WAL_HOLDER.format(db=str(db)))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        tracker = RunTracker(store, "held", run_name="held", flush_every_s=0.0)  # cannot convert: held
        assert journal_mode(db) == "wal"
        for step in range(60):
            tracker.log_metrics({"loss/td": step, "q/mean": step / 2}, step=step)
        tracker.flush()  # written, not just handed to MLflow's writer threads
        assert wal_bytes(db) > 0
        holder.stdin.write("read 3\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "reading"
        t0 = time.monotonic()
        tracker.end("FINISHED")  # its checkpoint is BUSY until the reader commits, ~3 s
        assert time.monotonic() - t0 > 1.0
        assert holder.poll() is None  # still connected: the WAL was checkpointed, not removed
        snap = assert_copy_is_complete(db, tmp_path, {"FINISHED"})
        assert points(snap, tracker.run_id) == 120
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert settle_store(store) and journal_mode(db) == "wal"  # an empty WAL: nothing to do
    _dispose_engines(db)  # this process's idle MLflow connections would hold the WAL open too
    run_python(f"from dqt.core.tracking import ensure_store; ensure_store({store!r})")  # the next command
    assert journal_mode(db) == "delete"  # alone now: it leaves WAL mode for good
    assert not [p.name for p in db.parent.iterdir() if p.name.endswith(SIDE_FILES)]


def test_exit_now_settles_a_wal_store_written_without_a_tracker(store: str, tmp_path: Path) -> None:
    """A store kept in WAL mode on request, written through a bare MlflowClient (as the sweep
    runner writes its parent run) by a process leaving through `exit_now` (os._exit): the
    WAL is checkpointed on the way out."""
    run_python(f"""
        from mlflow.tracking import MlflowClient
        from dqt.core.ipc.procutil import exit_now
        from dqt.core.tracking import ensure_store
        uri = ensure_store({store!r}, wal=True)
        client = MlflowClient(uri)
        run = client.create_run("0", run_name="parent")
        for step in range(20):
            client.log_metric(run.info.run_id, "best", step / 4, step=step)
        client.set_terminated(run.info.run_id, "FINISHED")
        exit_now(0)
    """)
    db = db_of(store)
    assert journal_mode(db) == "wal"
    snap = assert_copy_is_complete(db, tmp_path, {"FINISHED"})
    (name, _, history), = snap.values()
    assert (name, len(history["best"])) == ("parent", 20)


def test_settle_store_ignores_servers_and_missing_files(tmp_path: Path) -> None:
    assert settle_store("http://localhost:5000")
    assert settle_store(f"sqlite:///{tmp_path / 'absent.db'}")
    assert not (tmp_path / "absent.db").exists()  # settling never creates a database


# ---- parallel writers and a reader share the rollback-journal store -----------------------------
STEPS = 150


def _writer(uri: str, index: int) -> tuple[str, int]:
    tracker = RunTracker(uri, "shared", run_name=f"writer-{index}", flush_every_s=0.0)
    for step in range(STEPS):
        tracker.log_metrics({"loss/td": step, "q/mean": -step}, step=step)
    tracker.end()
    return tracker.run_id, tracker.retries


def _reader(uri: str, seconds: float) -> int:
    """What the MLflow UI does while runs train: search runs, read whole histories."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    reads = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        exp = client.get_experiment_by_name("shared")
        for run in client.search_runs([exp.experiment_id]) if exp else []:
            client.get_metric_history(run.info.run_id, "loss/td")
        reads += 1
    return reads


@pytest.mark.slow
def test_parallel_writers_and_a_busy_reader_lose_no_point(store: str, tmp_path: Path) -> None:
    import multiprocessing as mp

    ensure_store(store)
    t0 = time.monotonic()
    with mp.get_context("spawn").Pool(3) as pool:
        reader = pool.apply_async(_reader, (store, 8.0))
        writers = [pool.apply_async(_writer, (store, i)) for i in range(2)]
        results = [w.get(300) for w in writers]
        reads = reader.get(300)
    snap = assert_copy_is_complete(db_of(store), tmp_path, {"FINISHED"})
    assert sorted(run_id for run_id, _ in results) == sorted(snap)
    for run_id, _ in results:
        assert {k: [s for s, _, _ in h] for k, h in snap[run_id][2].items()} == \
            {"loss/td": list(range(STEPS)), "q/mean": list(range(STEPS))}
    print(f"2 writers x {STEPS} flushes beside a reader ({reads} passes): {time.monotonic() - t0:.1f} s, "
          f"retries {[r for _, r in results]}")


# ---- real `dqt train` processes ------------------------------------------------------------------
def start_train(store: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(dqt_command("train", *TINY_TOY, "--num-agents", "1", "--tracking-uri", store,
                                        "--quiet", *extra),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_four_parallel_trains_lose_no_point_and_leave_a_self_contained_store(store: str, tmp_path: Path) -> None:
    """Four async `dqt train` processes write one SQLite store at once: every episode of every
    run is a metric point, every eval reaches the budget, and mlflow.db alone holds it all."""
    from mlflow.tracking import MlflowClient

    procs = [start_train(store, "--train-steps", "1500", "--mode", "async", "--run-name", f"par{i}", "--seed", str(i))
             for i in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err[-3000:]
    snap = assert_copy_is_complete(db_of(store), tmp_path, {"FINISHED"})
    assert sorted(name for name, _, _ in snap.values()) == ["par0", "par1", "par2", "par3"]
    client = MlflowClient(store)
    for run_id, (name, _, history) in snap.items():
        agents = json.loads(Path(client.download_artifacts(run_id, "agents.json")).read_text())
        episodes = sum(a["episodes"] for a in agents.values())
        for key in ("train/episode_return", "train/success"):
            assert len(history[key]) == episodes, (name, key)
        assert [s for s, _, _ in history["eval/success_rate"]][-1] == 1500, name


@pytest.mark.slow
@pytest.mark.serial  # races a running process (a kill or Ctrl-C mid-run): run alone
def test_an_interrupted_train_leaves_its_killed_run_in_the_file(store: str, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    proc = start_train(store, "--train-steps", "10000000", "--run-name", "interrupted")
    client = MlflowClient(store)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # wait until metric points are being written
        exp = client.get_experiment_by_name("dqt")
        runs = client.search_runs([exp.experiment_id]) if exp else []
        if runs and client.get_metric_history(runs[0].info.run_id, "train/episode_return"):
            break
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.5)
    else:
        pytest.fail("the run never logged an episode")
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    snap = assert_copy_is_complete(db_of(store), tmp_path, {"KILLED"})
    (name, status, history), = snap.values()
    assert (name, status) == ("interrupted", "KILLED")
    assert history["train/episode_return"], "the interrupted run's points are missing"
