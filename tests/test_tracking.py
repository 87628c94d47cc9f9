"""core/tracking/ against real SQLite stores in tmp folders and real processes.

A new MLflow SQLite store costs ~3 s of Alembic migrations, so most tests share one store
(module fixture) and use their own experiment; only the concurrency test needs a new one.
"""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dqt.core.config import ConfigError, RunConfig
from dqt.core.tracking import (
    FAILURE_REASON_TAG,
    RunTracker,
    TrackingError,
    artifact_root_for,
    ensure_store,
    get_or_create_experiment,
    is_transient,
    last_logged_step,
    resolve_tracking_uri,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One initialised SQLite store shared by this module's tests."""
    return ensure_store(f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}")


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def steps(uri: str, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client(uri).get_metric_history(run_id, key))


# ---- URIs -----------------------------------------------------------------------------------
def test_default_uri_is_repo_mlflow_db() -> None:
    assert resolve_tracking_uri(None) == f"sqlite:///{REPO / 'mlflow.db'}"
    assert resolve_tracking_uri(None).startswith("sqlite:////")  # absolute path


@pytest.mark.parametrize("uri, expected", [
    ("sqlite:///rel.db", "sqlite:///{tmp}/rel.db"),
    ("sqlite:///./sub/../rel.db?timeout=30", "sqlite:///{tmp}/rel.db?timeout=30"),
    ("sqlite:///{tmp}/abs.db", "sqlite:///{tmp}/abs.db"),
    ("  http://localhost:5000/ ", "http://localhost:5000"),
    ("https://mlflow.example.org", "https://mlflow.example.org"),
    ("postgresql://u:p@db.local:5432/mlflow", "postgresql://u:p@db.local:5432/mlflow"),
    ("mysql+pymysql://u@db.local/mlflow", "mysql+pymysql://u@db.local/mlflow"),
])
def test_resolve_good(uri: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    tmp = tmp_path.resolve()
    assert resolve_tracking_uri(uri.format(tmp=tmp)) == expected.format(tmp=tmp)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]  # nothing created


@pytest.mark.parametrize("uri, problem", [
    ("sqlite:/x", "expected sqlite:///relative/path.db"),
    ("sqlit:///a.db", "unknown scheme 'sqlit'; did you mean 'sqlite'?"),
    ("http//x", "has no scheme://"),
    ("./mlruns", "file stores are deprecated in MLflow 3"),
    ("file:///tmp/mlruns", "file stores are deprecated in MLflow 3"),
    ("sqlite:///no/such/folder/a.db", "folder '{tmp}/no/such/folder' does not exist"),
    ("sqlite:///{tmp}", "is a folder, not a database file"),
    ("sqlite:///:memory:", "in-memory SQLite store cannot be shared"),
    ("sqlite://host/a.db", "SQLite URIs name no host"),
    ("http://", "names no host"),
    ("http://localhost:99999", "invalid port"),
    ("postgres://u@h/db", "write postgresql://"),
    ("mysql:///db", "names no host"),
    ("ftp://h/x", "unknown scheme 'ftp'"),
    ("   ", "is empty"),
])
def test_resolve_bad(uri: str, problem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    uri = uri.format(tmp=tmp_path.resolve())
    with pytest.raises(ConfigError) as err:
        resolve_tracking_uri(uri)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"tracking URI '{uri}': ")
    assert problem.format(tmp=tmp_path.resolve()) in message
    assert list(tmp_path.iterdir()) == []


def test_artifact_root(tmp_path: Path) -> None:
    assert artifact_root_for(f"sqlite:///{tmp_path}/m.db") == (tmp_path.resolve() / "mlartifacts").as_uri()
    assert artifact_root_for("http://localhost:5000") is None
    assert artifact_root_for("postgresql://u@h/db") is None


# ---- runs -----------------------------------------------------------------------------------
def test_run_params_tags_metrics_artifacts(store: str, tmp_path: Path) -> None:
    cfg = RunConfig()
    ckpt = tmp_path / "checkpoint"
    ckpt.mkdir()
    (ckpt / "model.pt").write_bytes(b"weights")
    tags = {"config_hash": cfg.config_hash(), "seed": 0, "device": "cpu", "git_commit": "abc"}
    with RunTracker(store, "plain", run_name="r1", tags=tags) as tracker:
        tracker.log_params(cfg.to_flat())
        tracker.set_tags({"sweep": "noise", "long": "x" * 9000})
        for step in range(0, 5000, 1000):
            tracker.log_metrics({"eval/success_rate": step / 5000, "loss/td": float("nan")}, step=step)
        tracker.log_text(cfg.to_yaml(), "config.yaml")
        tracker.log_artifact(ckpt)
        assert tracker.pending == 10  # buffered until the end (young and small buffer)

    run = client(store).get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "r1"
    assert run.data.params == {k: str(v) for k, v in cfg.to_flat().items()}
    assert {k: run.data.tags[k] for k in tags} == {k: str(v) for k, v in tags.items()}
    assert run.data.tags["sweep"] == "noise" and len(run.data.tags["long"]) == 8000
    assert "mlflow.user" in run.data.tags and FAILURE_REASON_TAG not in run.data.tags
    assert steps(store, tracker.run_id, "eval/success_rate") == [0, 1000, 2000, 3000, 4000]
    assert run.data.metrics["eval/success_rate"] == pytest.approx(0.8)
    assert last_logged_step(client(store), tracker.run_id, "loss/td") == 4000
    assert last_logged_step(client(store), tracker.run_id, "never/logged") is None

    exp = client(store).get_experiment(tracker.experiment_id)
    root = Path(store.split(":///")[1]).parent / "mlartifacts"
    assert exp.artifact_location == (root / "plain").as_uri()
    art = root / "plain" / tracker.run_id / "artifacts"
    assert RunConfig.from_yaml(art / "config.yaml") == cfg
    assert (art / "checkpoint" / "model.pt").read_bytes() == b"weights"


def test_param_values_are_cut_to_mlflow_limit(store: str) -> None:
    tracker = RunTracker(store, "limits")
    tracker.log_params({f"p.{i}": i for i in range(250)} | {"long": "y" * 7000})  # 3 batches
    tracker.end()
    params = client(store).get_run(tracker.run_id).data.params
    assert len(params) == 251 and len(params["long"]) == 6000 and params["p.249"] == "249"


@pytest.mark.parametrize("status, reason", [("FINISHED", None), ("FAILED", "ValueError: boom"),
                                            ("KILLED", "interrupted")])
def test_end_status_and_reason(store: str, status: str, reason: str | None) -> None:
    tracker = RunTracker(store, "ends")
    tracker.log_metrics({"a": 1.0}, step=1)
    tracker.end(status, reason)
    tracker.end("FINISHED")  # idempotent: the first end stands
    run = client(store).get_run(tracker.run_id)
    assert run.info.status == status and run.info.end_time is not None
    assert run.data.tags.get(FAILURE_REASON_TAG) == reason
    assert steps(store, tracker.run_id, "a") == [1]


def test_context_manager_fails_and_kills(store: str) -> None:
    with pytest.raises(RuntimeError), RunTracker(store, "ends") as failed:
        raise RuntimeError("nan loss")
    with pytest.raises(KeyboardInterrupt), RunTracker(store, "ends") as killed:
        raise KeyboardInterrupt
    runs = {r.info.run_id: r for r in client(store).search_runs([failed.experiment_id])}
    assert runs[failed.run_id].info.status == "FAILED"
    assert runs[failed.run_id].data.tags[FAILURE_REASON_TAG] == "RuntimeError: nan loss"
    assert runs[killed.run_id].info.status == "KILLED"
    with pytest.raises(ValueError, match="run status"):
        RunTracker(store, "ends").end("DONE")


def test_child_run_and_experiment_reuse(store: str) -> None:
    parent = RunTracker(store, "sweepish", tags={"dqt.role": "parent"})
    child = RunTracker(store, "sweepish", parent_run_id=parent.run_id, tags={"dqt.role": "point"})
    assert child.experiment_id == parent.experiment_id
    assert get_or_create_experiment(child.client, "sweepish", store) == parent.experiment_id
    assert client(store).get_run(child.run_id).data.tags["mlflow.parentRunId"] == parent.run_id
    child.end()
    parent.end()


def test_resume_appends_without_duplicating(store: str) -> None:
    flat = RunConfig().to_flat()
    first = RunTracker(store, "resume", run_name="r")
    first.log_params(flat)
    for step in range(10):
        first.log_metrics({"loss/td": step, "time/wall_s": step}, step=step)
    first.end("KILLED", "interrupted")

    # restarted from a checkpoint at step 5: steps 5..9 come again and must not duplicate
    again = RunTracker(store, "resume", resume_run_id=first.run_id, tags={"resumed": "1"})
    assert again.run_id == first.run_id
    assert client(store).get_run(first.run_id).info.status == "RUNNING"
    again.log_params(flat)  # same values: no error
    for step in range(5, 15):
        again.log_metrics({"loss/td": step, "time/wall_s": step}, step=step)
    again.end()
    assert again.skipped_points == 10
    run = client(store).get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["resumed"] == "1"
    assert steps(store, first.run_id, "loss/td") == list(range(15))
    assert steps(store, first.run_id, "time/wall_s") == list(range(15))

    changed = RunTracker(store, "resume", resume_run_id=first.run_id)
    with pytest.raises(ConfigError, match="param 'trainer.num_agents' was '1', now '4'"):
        changed.log_params(flat | {"trainer.num_agents": 4})
    changed.end()
    with pytest.raises(ConfigError, match="belongs to experiment 'resume'"):
        RunTracker(store, "other", resume_run_id=first.run_id)
    with pytest.raises(ConfigError, match="no such run"):
        RunTracker(store, "resume", resume_run_id="0" * 32)


@pytest.mark.parametrize("async_metrics", [True, False], ids=["async", "sync"])
def test_flush_batches_and_auto_flush(store: str, async_metrics: bool) -> None:
    tracker = RunTracker(store, "flush", flush_every_s=3600, async_metrics=async_metrics)
    for step in range(2500):  # the buffer fills at 1000 points: two automatic sends
        tracker.log_metrics({"q/mean": step}, step=step)
    if async_metrics:  # the two sends return at once; MLflow's threads may still be writing
        assert 500 <= tracker.pending <= 2500
    else:
        assert tracker.pending == 500
    tracker.flush()
    assert tracker.pending == 0
    assert steps(store, tracker.run_id, "q/mean") == list(range(2500))  # flush waited for every point
    tracker.end()

    timed = RunTracker(store, "flush", flush_every_s=0.0, async_metrics=async_metrics)
    timed.log_metrics({"opt/lr": 1e-3}, step=0)
    deadline = time.monotonic() + 30
    while timed.pending and time.monotonic() < deadline:  # old enough: sent at once, no flush needed
        time.sleep(0.05)
    assert timed.pending == 0
    assert steps(store, timed.run_id, "opt/lr") == [0]
    timed.end()
    with pytest.raises(ValueError, match="invalid MLflow metric name"):
        timed.log_metrics({"bad*name": 1.0}, step=1)


def test_transient_errors_are_retried_and_nothing_is_lost(store: str) -> None:
    from mlflow.exceptions import MlflowException

    tracker = RunTracker(store, "retry")
    real = tracker.client.log_batch
    failures = {"left": 3}

    def flaky(*args, **kwargs):
        if failures["left"]:
            failures["left"] -= 1
            raise MlflowException("(sqlite3.OperationalError) database is locked",
                                  error_code="TEMPORARILY_UNAVAILABLE")
        return real(*args, **kwargs)

    tracker.client.log_batch = flaky
    for step in range(20):
        tracker.log_metrics({"x": step}, step=step)
    tracker.flush()
    assert tracker.retries == 3 and tracker.pending == 0

    # a store that stays down: TrackingError after the deadline, the points stay buffered
    tracker.retry_timeout_s = 0.3
    failures["left"] = 10**9
    tracker.log_metrics({"x": 20}, step=20)
    with pytest.raises(TrackingError, match="still failing"):
        tracker.flush()
    assert tracker.pending == 1
    failures["left"] = 0
    tracker.end()
    assert steps(store, tracker.run_id, "x") == list(range(21))

    # permanent errors are not retried
    assert not is_transient(MlflowException("Changing param values is not allowed",
                                            error_code="INVALID_PARAMETER_VALUE"))
    assert is_transient(ConnectionRefusedError())


# ---- asynchronous metrics -------------------------------------------------------------------
KEYS = ("loss/td", "loss/conservative", "q/mean", "opt/lr", "perf/updates_per_s")


@pytest.mark.parametrize("exit_path", ["end", "failure", "interrupt"])
def test_async_logging_loses_no_point_on_any_exit(store: str, exit_path: str) -> None:
    """10,000 points handed to MLflow's writer threads in 20 batches; the run ends right after
    the last call (cleanly, by an exception, by Ctrl-C) and the store holds every point."""
    expected = {"end": "FINISHED", "failure": "FAILED", "interrupt": "KILLED"}[exit_path]
    error = {"end": None, "failure": RuntimeError, "interrupt": KeyboardInterrupt}[exit_path]
    tracker = RunTracker(store, "async", run_name=exit_path, flush_every_s=3600, async_metrics=True, max_buffer=500)
    try:
        with tracker:
            for step in range(2000):
                tracker.log_metrics({k: step * (i + 1) for i, k in enumerate(KEYS)}, step=step)
            assert tracker.pending > 0  # handed over or buffered, not all written yet
            if error is not None:
                raise error("stop")
    except (RuntimeError, KeyboardInterrupt):
        pass
    assert tracker.pending == 0
    run = client(store).get_run(tracker.run_id)
    assert run.info.status == expected
    for i, key in enumerate(KEYS):
        history = client(store).get_metric_history(tracker.run_id, key)
        assert sorted(m.step for m in history) == list(range(2000)), key
        assert all(m.value == m.step * (i + 1) for m in history)


@pytest.mark.serial  # a wall-clock bound or a race between processes: run alone
def test_the_learner_does_not_wait_for_a_locked_store(store: str) -> None:
    """Another process holds the SQLite write lock for 3 s: logging returns at once all that
    time (a synchronous write would wait for the lock), and every point lands after."""
    import sqlite3
    from contextlib import closing

    tracker = RunTracker(store, "locked", flush_every_s=0.0, async_metrics=True)
    with closing(sqlite3.connect(store.split(":///", 1)[1], isolation_level=None)) as holder:
        holder.execute("BEGIN EXCLUSIVE")
        t0 = time.monotonic()
        longest = 0.0
        step = 0
        while time.monotonic() - t0 < 3.0:
            start = time.monotonic()
            tracker.log_metrics({"loss/td": step / 10}, step=step)
            longest = max(longest, time.monotonic() - start)
            step += 1
            time.sleep(0.02)
        assert tracker.pending > 0  # nothing could be written while the lock was held
        holder.execute("COMMIT")
    assert longest < 1.0, f"a log_metrics call waited {longest:.2f} s for the lock"
    tracker.end()
    assert steps(store, tracker.run_id, "loss/td") == list(range(step))


def test_async_batches_mlflow_fails_are_written_again(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch MLflow's worker thread could not write (locked past the busy timeout) comes back
    through its future, is retried, and no point is lost."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    real = SqlAlchemyStore._log_metrics
    failures = {"left": 3}

    def locked(self, run_id, metrics):
        if failures["left"]:
            failures["left"] -= 1
            raise MlflowException("(sqlite3.OperationalError) database is locked",
                                  error_code="TEMPORARILY_UNAVAILABLE")
        return real(self, run_id, metrics)

    monkeypatch.setattr(SqlAlchemyStore, "_log_metrics", locked)
    tracker = RunTracker(store, "async-retry", flush_every_s=0.0, async_metrics=True)
    for step in range(30):
        tracker.log_metrics({"x": step}, step=step)
    tracker.end()
    assert failures["left"] == 0 and tracker.retries >= 3
    assert steps(store, tracker.run_id, "x") == list(range(30))


def test_exit_now_writes_what_an_unended_tracker_holds(store: str) -> None:
    """A process leaving through `exit_now` (os._exit after settling) without ending its run:
    points still buffered and batches still in flight are written first."""
    script = f"""
from dqt.core.ipc.procutil import exit_now
from dqt.core.tracking import RunTracker
buffered = RunTracker({store!r}, "unended", run_name="buffered", flush_every_s=3600, async_metrics=True)
in_flight = RunTracker({store!r}, "unended", run_name="in flight", flush_every_s=0.0, async_metrics=True)
for step in range(300):
    buffered.log_metrics({{"q/mean": step}}, step=step)
    in_flight.log_metrics({{"q/mean": -step}}, step=step)
exit_now(0)
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    c = client(store)
    runs = {r.info.run_name: r for r in c.search_runs([c.get_experiment_by_name("unended").experiment_id])}
    for name in ("buffered", "in flight"):
        assert runs[name].info.status == "RUNNING"  # never ended, as a crash after exit_now leaves it
        assert steps(store, runs[name].info.run_id, "q/mean") == list(range(300)), name


def test_deleted_experiment_is_a_config_error(store: str) -> None:
    c = client(store)
    exp_id = get_or_create_experiment(c, "doomed", store)
    c.delete_experiment(exp_id)
    with pytest.raises(ConfigError, match="experiment 'doomed' is deleted"):
        RunTracker(store, "doomed")


# ---- concurrency ----------------------------------------------------------------------------
POINTS_PER_RUN = 300  # 100 steps x 3 metrics


def _contending_learner(uri: str, index: int) -> tuple[str, int]:
    """A learner process: opens the (new) store, then flushes after every step."""
    tracker = RunTracker(uri, "contention", run_name=f"learner-{index}", flush_every_s=0.0)
    for step in range(POINTS_PER_RUN // 3):
        tracker.log_metrics({"loss/td": step, "q/mean": -step, "opt/lr": step / 100}, step=step)
    tracker.end()
    return tracker.run_id, tracker.retries


@pytest.mark.slow
def test_four_processes_share_one_new_sqlite_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # does not exist yet: schema creation races too
    start = time.monotonic()
    with mp.get_context("spawn").Pool(4) as pool:
        results = pool.starmap(_contending_learner, [(uri, i) for i in range(4)])
    elapsed = time.monotonic() - start
    c = client(uri)
    run_ids = [run_id for run_id, _ in results]
    assert len(set(run_ids)) == 4
    exps = c.search_experiments()
    assert sorted(e.name for e in exps) == ["Default", "contention"]
    for run_id in run_ids:
        assert c.get_run(run_id).info.status == "FINISHED"
        counts = [len(c.get_metric_history(run_id, k)) for k in ("loss/td", "q/mean", "opt/lr")]
        assert sum(counts) == POINTS_PER_RUN, counts
    print(f"4 learners x {POINTS_PER_RUN} points: {elapsed:.1f} s, "
          f"retries {[r for _, r in results]}")


def _forked_learner(uri: str) -> None:
    tracker = RunTracker(uri, "forked", run_name="child", flush_every_s=0.0, async_metrics=True)
    for step in range(10):
        tracker.log_metrics({"x": step}, step=step)
    tracker.end()


def test_forked_child_does_not_reuse_parent_connections(store: str) -> None:
    """A learner forked from a process that already used the store (the sweep runner) must
    open its own SQLite connections and async queue; the parent keeps working afterwards.
    The parent forks with batches in flight: the fork waits for them (a fork in the middle of
    a SQLite write left the child's every write "database is locked")."""
    parent = RunTracker(store, "forked", run_name="parent", flush_every_s=0.0, async_metrics=True)
    for step in range(20):
        parent.log_metrics({"y": step}, step=step)
    parent.log_metrics({"x": 0}, step=0)
    child = mp.get_context("fork").Process(target=_forked_learner, args=(store,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    parent.log_metrics({"x": 1}, step=1)
    parent.end()
    runs = {r.info.run_name: r.info.run_id for r in client(store).search_runs([parent.experiment_id])}
    assert steps(store, runs["child"], "x") == list(range(10))
    assert steps(store, runs["parent"], "x") == [0, 1]
    assert steps(store, runs["parent"], "y") == list(range(20))
