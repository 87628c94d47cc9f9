"""Execute a sweep: skip what already FINISHED, claim the rest, run each point as a `dqt train` process.

Three stores, each the authority for one thing:

- **MLflow** (the tracking store) says which points are done: a point is done when a run
  of the spec's experiment tagged with its ``config_hash`` and ``seed`` FINISHED.
- **Optuna storage** is the claim queue shared by every worker of a sweep, on one host or
  many: each not-yet-done point is a WAITING trial of the study ``sweep/<name>/<profile>``,
  and a worker claims one by moving it WAITING -> RUNNING, which the storage does atomically
  (journal file: an append under a file lock, replayed in order, first writer wins;
  PostgreSQL/MySQL: ``SELECT ... FOR UPDATE`` plus a state check; see `ClaimQueue.claim`).
- **The OS** says whether a claim is still worked on: a claim records the host, pid and
  process start time of its worker and of its `dqt train` child, plus a heartbeat, so a
  claim left by a dead sweep is recognised and its point runs again.

Each point runs as its own process group, so Ctrl-C or SIGTERM of the sweep reaches every
`dqt train` (which ends its run KILLED) and, after a grace period, SIGKILL takes the whole
group; nothing is left behind.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from core.config import ConfigError
from core.tracking import (
    ensure_store,
    get_or_create_experiment,
    resolve_tracking_uri,
    sqlite_path,
    with_retry,
)
from sweeps.expand import Point, PointKey, run_name, short_names, varied_keys
from sweeps.spec import Spec

TRAIN_CMD: tuple[str, ...] = (sys.executable, "-m", "dqt.cli", "train")
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130
STATUS_NONE = "-"
HOST = socket.gethostname()


# ======================================================================================
# Who is working on a point: host + pid + process start time (pids are reused)
# ======================================================================================
@dataclass(frozen=True)
class Owner:
    """A process that can hold a claim; `token` is what the claim stores."""

    host: str
    pid: int
    started: str = ""

    @classmethod
    def of(cls, pid: int | None = None) -> Owner:
        pid = os.getpid() if pid is None else pid
        return cls(HOST, pid, _start_time(pid))

    @classmethod
    def parse(cls, token: Any) -> Owner | None:
        if not isinstance(token, str) or token.count("|") != 2:
            return None
        host, pid, started = token.split("|")
        return cls(host, int(pid), started) if pid.isdigit() else None

    @property
    def token(self) -> str:
        return f"{self.host}|{self.pid}|{self.started}"

    def alive(self) -> bool | None:
        """True/False for a process of this host; None for another host (unknowable here)."""
        if self.host != HOST:
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        now = _start_time(self.pid)
        # A different start time means the pid was reused by an unrelated process.
        return now != "Z" and (not self.started or not now or now == self.started)


def _start_time(pid: int) -> str:
    """Clock ticks since boot at which `pid` started ("Z" for a zombie, "" without /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name (field 2) may hold spaces or ')', so split after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return "Z" if fields[0] in ("Z", "X") else fields[19]


def claim_alive(attrs: dict[str, Any], started: dt.datetime | None, stale_after_s: float) -> bool:
    """Is someone still working on this claim?

    On the claim's own host the answer is exact: the worker or its `dqt train` child is
    alive (a child outliving a SIGKILLed sweep still counts, so its point is not started
    twice).  From another host only the heartbeat can tell, so a claim whose heartbeat is
    older than `stale_after_s` is given up.
    """
    holders = [Owner.parse(attrs.get("owner")), Owner.parse(attrs.get("child"))]
    verdicts = [h.alive() for h in holders if h is not None]
    if any(v is True for v in verdicts):
        return True
    if verdicts and all(v is False for v in verdicts):
        return False
    beat = attrs.get("heartbeat")
    if beat is None and started is not None:  # claimed a moment ago, owner not written yet
        beat = started.timestamp()
    return beat is not None and time.time() - float(beat) < stale_after_s


# ======================================================================================
# MLflow: which points ran, and the sweep's parent run
# ======================================================================================
@dataclass(frozen=True)
class StoredRun:
    run_id: str
    status: str
    start_time: int


class Store:
    """The sweep's experiment in the tracking store.

    Args:
        uri: A resolved tracking URI (`core.tracking.resolve_tracking_uri`).
        experiment: The spec's name.
        create: Create the store and the experiment when missing; a dry run passes False
            and uses `open_existing`, so it never writes.
    """

    def __init__(self, uri: str, experiment: str, create: bool = True):
        from mlflow import MlflowClient


        self.uri = ensure_store(uri) if create else uri
        self.experiment = experiment
        self.client = MlflowClient(tracking_uri=self.uri)
        if create:
            self.experiment_id: str | None = get_or_create_experiment(self.client, experiment, self.uri)
        else:
            found = with_retry(lambda: self.client.get_experiment_by_name(experiment), "get experiment")
            self.experiment_id = found.experiment_id if found is not None else None

    @classmethod
    def open_existing(cls, uri: str, experiment: str) -> Store | None:
        """The store if it already exists; None otherwise (a dry run must not create a database)."""
        db = sqlite_path(uri)
        if db is not None and not db.exists():
            return None
        store = cls(uri, experiment, create=False)
        return store if store.experiment_id is not None else None

    def runs(self, key: PointKey | None = None) -> dict[PointKey, list[StoredRun]]:
        """Runs of the experiment by point (one point when `key` is given), newest first."""
        if self.experiment_id is None:
            return {}
        query = f"tags.config_hash = '{key[0]}' and tags.seed = '{key[1]}'" if key else ""
        out: dict[PointKey, list[StoredRun]] = {}
        token = None
        while True:
            page = with_retry(lambda t=token: self.client.search_runs(
                [self.experiment_id], query, max_results=1000, order_by=["attributes.start_time DESC"],
                page_token=t), "search runs")
            for run in page:
                tags = run.data.tags
                if "config_hash" not in tags or not tags.get("seed", "").isdigit():  # e.g. parent runs
                    continue
                point = (tags["config_hash"], int(tags["seed"]))
                out.setdefault(point, []).append(
                    StoredRun(run.info.run_id, run.info.status, run.info.start_time or 0))
            token = page.token
            if not token:
                return out

    def has_checkpoint(self, run_id: str) -> bool:
        try:
            return bool(with_retry(lambda: self.client.list_artifacts(run_id, "checkpoint"), "list artifacts"))
        except OSError:
            return False

    def set_status(self, run_id: str, status: str) -> None:
        with_retry(lambda: self.client.set_terminated(run_id, status=status), "end run")

    def start_parent(self, name: str, tags: dict[str, str], params: dict[str, Any]) -> str:
        assert self.experiment_id is not None
        run = with_retry(lambda: self.client.create_run(self.experiment_id, run_name=name, tags=tags), "create run")
        for key, value in params.items():
            with_retry(lambda k=key, v=value: self.client.log_param(run.info.run_id, k, v), "log param")
        return run.info.run_id

    def end_parent(self, run_id: str, status: str, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            with_retry(lambda k=key, v=value: self.client.log_metric(run_id, k, v), "log metric")
        self.set_status(run_id, status)

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in with_retry(lambda: self.client.get_metric_history(run_id, key), "read metric")]


def point_status(runs: Sequence[StoredRun]) -> str:
    """FINISHED if any run of the point finished, else the newest run's status, else '-'."""
    if any(r.status == "FINISHED" for r in runs):
        return "FINISHED"
    return runs[0].status if runs else STATUS_NONE


# ======================================================================================
# Optuna storage as the claim queue
# ======================================================================================
def default_storage(tracking_uri: str) -> str:
    """The Optuna storage next to the tracking store: ``<dir of mlflow.db>/optuna.journal``.

    A tracking server has no directory we can see, and a private journal would let every
    host run every point, so then `--storage` must be given.
    """
    db = sqlite_path(tracking_uri)
    if db is not None:
        return str(db.parent / "optuna.journal")
    raise ConfigError(
        f"--storage is required with tracking URI {tracking_uri}: every worker must share one claim queue "
        "(e.g. --storage postgresql://user:pw@db/optuna, or a journal file on a shared disk)")


def open_storage(url: str) -> Any:
    """An Optuna storage: an RDB URL (``postgresql://``, ``mysql://``, ``sqlite:///``) or a
    journal file (a path, or ``journal:///path``)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # its INFO line per trial would bury the progress
    if url.startswith("journal:"):
        url = url.removeprefix("journal:").removeprefix("//")
    if "://" in url:
        return optuna.storages.get_storage(url)
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(url))


def ensure_study(storage: Any, name: str, direction: str = "minimize", sampler: Any = None) -> Any:
    import optuna

    return optuna.create_study(storage=storage, study_name=name, direction=direction, sampler=sampler,
                               load_if_exists=True)


def reap_stale(storage: Any, study_id: int, stale_after_s: float) -> int:
    """Mark RUNNING trials whose claim is dead FAIL, so their work is offered again."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    reaped = 0
    for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        if claim_alive(t.user_attrs, t.datetime_start, stale_after_s):
            continue
        tid = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            storage.set_trial_user_attr(tid, "reaped_by", Owner.of().token)
            storage.set_trial_state_values(tid, TrialState.FAIL)
            reaped += 1
        except UpdateFinishedTrialError:  # another worker reaped or finished it first
            pass
    return reaped


@dataclass(frozen=True)
class Claim:
    """A point this worker holds in the queue (trial `number` of the study)."""

    trial_id: int
    number: int
    key: PointKey


class ClaimQueue:
    """The points of one sweep as Optuna trials; each is claimed by exactly one worker.

    Args:
        storage: Optuna storage URL or journal path (see `open_storage`).
        study: Study name, ``sweep/<spec name>/<profile>``.
        stale_after_s: A claim from another host whose heartbeat is older is given up.
    """

    def __init__(self, storage: str, study: str, stale_after_s: float = 600.0):
        self.storage = open_storage(storage)
        self.study = ensure_study(self.storage, study)
        self.study_id = self.storage.get_study_id_from_name(study)
        self.owner = Owner.of()
        self.stale_after_s = stale_after_s

    def _trials(self, states: Iterable[Any] | None = None) -> list[Any]:
        return self.storage.get_all_trials(self.study_id, deepcopy=False,
                                           states=tuple(states) if states else None)

    @staticmethod
    def _key(trial: Any) -> PointKey:
        return (str(trial.user_attrs.get("config_hash")), int(trial.user_attrs.get("seed", -1)))

    def sync(self, points: Sequence[Point], finished: Collection[PointKey]) -> int:
        """Offer every point that is not finished and not already waiting or being worked
        on; returns how many were added. Dead claims are reaped first."""
        from optuna.trial import TrialState, create_trial

        reap_stale(self.storage, self.study_id, self.stale_after_s)
        taken = {self._key(t) for t in self._trials((TrialState.WAITING, TrialState.RUNNING))}
        added = 0
        for point in points:
            if point.key in finished or point.key in taken:
                continue
            self.study.add_trial(create_trial(state=TrialState.WAITING, user_attrs={
                "config_hash": point.config_hash, "seed": point.seed}))
            taken.add(point.key)
            added += 1
        return added

    def claim(self, wanted: Collection[PointKey]) -> Claim | None:
        """Atomically take one WAITING trial of `wanted`, or None when none is left.

        `set_trial_state_values(RUNNING)` is the pop Optuna's own `Study.ask` uses; it
        returns False when another worker moved the trial first (journal: the first
        RUNNING record in the log wins; RDB: row lock and a WAITING check).  SQLite RDB
        storage takes no row lock, so use it for one worker only.
        """
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        for trial in self._trials((TrialState.WAITING,)):
            key = self._key(trial)
            if key not in wanted:  # queued by another version of the spec: not ours to run
                continue
            tid = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)
            try:
                if not self.storage.set_trial_state_values(tid, TrialState.RUNNING):
                    continue
            except UpdateFinishedTrialError:
                continue
            self.storage.set_trial_user_attr(tid, "owner", self.owner.token)
            self.storage.set_trial_user_attr(tid, "heartbeat", time.time())
            return Claim(tid, trial.number, key)
        return None

    def size(self) -> int:
        """Trials in the queue, whatever their state."""
        return len(self._trials())

    def set_child(self, claim: Claim, pid: int) -> None:
        self.storage.set_trial_user_attr(claim.trial_id, "child", Owner.of(pid).token)

    def heartbeat(self, claims: Iterable[Claim]) -> None:
        for claim in claims:
            self._quiet(self.storage.set_trial_user_attr, claim.trial_id, "heartbeat", time.time())

    def finish(self, claim: Claim, ok: bool, seconds: float = 0.0, **attrs: Any) -> None:
        """Close a claim: COMPLETE (value = wall seconds) or FAIL; the point is then offered
        again only by a later `sync` (the next `dqt sweep`), never retried in a loop."""
        from optuna.trial import TrialState

        for key, value in attrs.items():
            self._quiet(self.storage.set_trial_user_attr, claim.trial_id, key, value)
        state = TrialState.COMPLETE if ok else TrialState.FAIL
        self._quiet(self.storage.set_trial_state_values, claim.trial_id, state, [seconds] if ok else None)

    def elsewhere(self, keys: Collection[PointKey]) -> int:
        """Points of `keys` claimed by live workers other than this one."""
        from optuna.trial import TrialState

        return len({self._key(t) for t in self._trials((TrialState.RUNNING,))
                    if self._key(t) in keys and t.user_attrs.get("owner") != self.owner.token
                    and claim_alive(t.user_attrs, t.datetime_start, self.stale_after_s)})

    @staticmethod
    def _quiet(fn: Callable[..., Any], *args: Any) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            fn(*args)
        except UpdateFinishedTrialError:  # reaped by another worker meanwhile: it will rerun anyway
            pass


# ======================================================================================
# Running points as `dqt train` processes
# ======================================================================================
@dataclass
class Job:
    """One `dqt train` to start. `on_exit(code, seconds)` hears how it ended."""

    point: Point
    name: str
    tags: dict[str, str]
    resume: str | None = None
    on_start: Callable[[int], None] | None = None
    on_exit: Callable[[int, float], None] | None = None
    log: Path | None = None


@dataclass
class Launcher:
    """What every `dqt train` of a sweep shares.

    Attributes:
        experiment: MLflow experiment (the spec's name).
        tracking_uri: Passed on unchanged, so children write where the sweep reads.
        workdir: Point config files and logs go here.
        train_cmd: The `dqt train` command line start (tests substitute a stand-in).
        parent: Creates the parent run on first use and returns its id; a worker that
            finds nothing to do leaves no empty parent behind.
    """

    experiment: str
    tracking_uri: str
    workdir: Path
    parent: Callable[[], str]
    train_cmd: Sequence[str] = TRAIN_CMD

    def command(self, job: Job, config_file: Path) -> list[str]:
        cmd = [*self.train_cmd, "--config", str(config_file), "--experiment", self.experiment,
               "--tracking-uri", self.tracking_uri, "--parent-run-id", self.parent()]
        for key, value in job.tags.items():
            cmd += ["--tag", f"{key}={value}"]
        cmd += ["--run-name", job.name, "--quiet"]
        if job.resume:
            cmd += ["--resume", job.resume]
        return cmd

    def start(self, job: Job) -> subprocess.Popen[bytes]:
        stem = f"{job.point.config_hash}-s{job.point.seed}"
        config_file = self.workdir / f"{stem}.yaml"
        config_file.write_text(job.point.config.to_yaml())
        job.log = self.workdir / f"{stem}.log"
        with job.log.open("ab") as log:
            # process_group=0: the child leads its own group, so the terminal's Ctrl-C reaches
            # only the sweep, which then stops each run in order, and killpg takes the
            # trainer's agent processes with it.
            return subprocess.Popen(self.command(job, config_file), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, process_group=0,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_jobs(next_job: Callable[[], Job | None], launcher: Launcher, jobs: int, progress: SweepProgress,
             grace_s: float = 30.0, tick: Callable[[], None] | None = None, tick_s: float = 60.0) -> bool:
    """Keep up to `jobs` points running until `next_job` has nothing left; True if interrupted.

    The first SIGINT/SIGTERM stops starting points and passes the signal to every running
    `dqt train` (its run ends KILLED); after `grace_s`, or at a second signal, SIGKILL.
    `tick` runs every `tick_s` seconds (claim heartbeats).
    """
    running: dict[subprocess.Popen[bytes], tuple[Job, float]] = {}
    stop: dict[str, Any] = {"signal": None, "at": 0.0, "killed": False}

    def on_signal(signum: int, frame: Any) -> None:  # noqa: ARG001
        if stop["signal"] is not None:
            stop["at"] = 0.0  # a second signal: do not wait for the grace period
            return
        stop["signal"], stop["at"] = signum, time.monotonic()
        for proc in running:
            _signal_group(proc, signum)

    in_main = _in_main_thread()
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
    last_tick = time.monotonic()
    try:
        while True:
            exhausted = False
            while stop["signal"] is None and len(running) < jobs:
                job = next_job()
                if job is None:
                    exhausted = True
                    break
                proc = launcher.start(job)
                if stop["signal"] is not None:  # the signal came while we were starting it
                    _signal_group(proc, stop["signal"])
                running[proc] = (job, time.monotonic())
                if job.on_start:
                    job.on_start(proc.pid)
                progress.started(job.name)
            for proc in [p for p in running if p.poll() is not None]:
                job, t0 = running.pop(proc)
                _signal_group(proc, signal.SIGKILL)  # agents the trainer failed to stop
                seconds = time.monotonic() - t0
                code = EXIT_INTERRUPTED if stop["signal"] is not None and proc.returncode < 0 else proc.returncode
                progress.ended(job.name, code, seconds, job.log)
                if job.on_exit:
                    job.on_exit(code, seconds)
            if not running and (stop["signal"] is not None or exhausted):
                return stop["signal"] is not None
            if stop["signal"] is not None and not stop["killed"] and time.monotonic() - stop["at"] > grace_s:
                stop["killed"] = True
                for proc in running:
                    _signal_group(proc, signal.SIGKILL)
            if tick and time.monotonic() - last_tick > tick_s:
                last_tick = time.monotonic()
                tick()
            progress.render()
            time.sleep(0.2)
    finally:
        for proc in running:  # only on an exception of our own: leave no orphan
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        for s, handler in old.items():
            signal.signal(s, handler)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# ======================================================================================
# Progress on stderr
# ======================================================================================
class SweepProgress:
    """``noise[quick] 3/18 done, 1 failed, 2 running, ETA 4m10s`` on stderr.

    Redrawn in place on a terminal; in a log, appended to the line of each point that
    starts or ends.
    """

    def __init__(self, label: str, total: int, done: int = 0, jobs: int = 1, stream: TextIO | None = None):
        self.label, self.total, self.done, self.jobs = label, total, done, jobs
        self.failed = 0
        self.elsewhere = 0
        self.running: set[str] = set()
        self.seconds: list[float] = []
        self.ok_seconds: list[float] = []
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._drawn = 0.0

    def line(self) -> str:
        left = self.total - self.done - self.failed - self.elsewhere
        eta = ""
        # Failures are often quick, so they would make the estimate optimistic.
        seconds = self.ok_seconds or self.seconds
        if seconds and left > 0:
            per = sum(seconds) / len(seconds)
            eta = f", ETA {_duration(per * left / max(1, min(self.jobs, left)))}"
        other = f", {self.elsewhere} on other workers" if self.elsewhere else ""
        return (f"{self.label} {self.done}/{self.total} done, {self.failed} failed, "
                f"{len(self.running)} running{other}{eta}")

    def started(self, name: str) -> None:
        self.running.add(name)
        self._say(f"start  {name}")

    def ended(self, name: str, code: int, seconds: float, log: Path | None) -> None:
        self.running.discard(name)
        self.seconds.append(seconds)
        if code == EXIT_OK:
            self.done += 1
            self.ok_seconds.append(seconds)
            self._say(f"done   {name} ({_duration(seconds)})")
        else:
            self.failed += 1
            what = "KILLED" if code == EXIT_INTERRUPTED else f"FAILED (exit {code})"
            self._say(f"{what} {name} ({_duration(seconds)}); log: {log}")

    def _say(self, event: str) -> None:
        if self.tty:  # the event scrolls up; the status line is redrawn below it
            print(f"\r\033[K{event}", file=self.stream)
            self.render(force=True)
        else:
            print(f"{event}  [{self.line()}]", file=self.stream, flush=True)

    def render(self, force: bool = False) -> None:
        if not self.tty or (not force and time.monotonic() - self._drawn < 1.0):
            return
        self._drawn = time.monotonic()
        print(f"\r\033[K{self.line()}", end="", file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=self.stream)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


# ======================================================================================
# The sweep
# ======================================================================================
@dataclass
class SweepOptions:
    """How to run a sweep (the `dqt sweep` flags, plus knobs tests turn).

    Attributes:
        jobs: Points run at once by this worker.
        tracking_uri: MLflow URI; None = `dqt train`'s default.
        storage: Optuna storage of the claim queue; None = next to the MLflow store.
        worker: Only claim points others queued (a helper on another host); do not queue.
        train_cmd: Command that trains one point (`dqt train`).
        grace_s: Seconds stopped runs get to end cleanly before SIGKILL.
        heartbeat_s: Seconds between claim heartbeats.
        stale_after_s: A claim from another host without a heartbeat for this long is dead.
        keep_logs: Keep the per-point config and log folder even when everything passed.
        wait_s: A `worker` started before any `dqt sweep` queued points waits this long.
        workdir: Folder for point configs and logs; None = a new temporary folder.
        stream: Progress and failure reports.
    """

    jobs: int = 1
    tracking_uri: str | None = None
    storage: str | None = None
    worker: bool = False
    train_cmd: Sequence[str] = TRAIN_CMD
    grace_s: float = 30.0
    heartbeat_s: float = 60.0
    stale_after_s: float = 600.0
    keep_logs: bool = False
    wait_s: float = 600.0
    workdir: Path | None = None
    stream: TextIO | None = None

    def make_workdir(self, prefix: str) -> Path:
        if self.workdir is None:
            return Path(tempfile.mkdtemp(prefix=prefix))
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self.workdir


@dataclass
class SweepResult:
    """What one invocation did; `exit_code` is the `dqt sweep` exit status."""

    total: int
    already: int = 0
    finished: list[Point] = field(default_factory=list)
    failed: list[tuple[Point, int, Path | None]] = field(default_factory=list)
    elsewhere: int = 0
    interrupted: bool = False
    parent_run_id: str | None = None

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if self.failed else EXIT_OK


def study_name(kind: str, spec: Spec) -> str:
    """``sweep/noise/quick``: one queue per spec and profile."""
    return f"{kind}/{spec.name}/{spec.profile or 'default'}"


def run_sweep(spec: Spec, points: list[Point], opts: SweepOptions | None = None) -> SweepResult:
    """Run every point of `points` not yet FINISHED in the store, `opts.jobs` at a time."""
    opts = opts or SweepOptions()
    stream = opts.stream or sys.stderr
    uri = resolve_tracking_uri(opts.tracking_uri)
    queue = ClaimQueue(opts.storage or default_storage(uri), study_name("sweep", spec), opts.stale_after_s)
    store = Store(uri, spec.name)
    stored = store.runs()
    finished = {p.key for p in points if point_status(stored.get(p.key, [])) == "FINISHED"}
    if not opts.worker:
        queue.sync(points, finished)
    else:
        _wait_for_queue(queue, opts.wait_s, stream)
    wanted = {p.key: p for p in points}
    keys = varied_keys(points)
    result = SweepResult(total=len(points), already=len(finished))
    progress = SweepProgress(spec.label, len(points), done=len(finished), jobs=opts.jobs, stream=stream)
    progress.elsewhere = queue.elsewhere(set(wanted) - finished)
    workdir = opts.make_workdir(f"dqt-sweep-{spec.name}-")
    active: dict[int, Claim] = {}

    def parent() -> str:
        if result.parent_run_id is None:
            result.parent_run_id = store.start_parent(
                f"{spec.label} sweep",
                tags={"dqt.role": "parent", "sweep": spec.name, "profile": spec.profile or "",
                      "dqt.worker": queue.owner.token, "dqt.spec": spec.path},
                params={"points": len(points), "jobs": opts.jobs, "storage": opts.storage or default_storage(uri)})
        return result.parent_run_id

    def next_job() -> Job | None:
        while (claim := queue.claim(wanted)) is not None:
            point = wanted[claim.key]
            runs = store.runs(point.key).get(point.key, [])
            if point_status(runs) == "FINISHED":  # finished since we looked (another worker)
                queue.finish(claim, ok=True, skipped="already FINISHED")
                result.already += 1
                progress.done += 1
                continue
            return _job_for(point, claim, runs)
        return None

    def _job_for(point: Point, claim: Claim, runs: list[StoredRun]) -> Job:
        resume = None
        if runs and store.has_checkpoint(runs[0].run_id):
            resume = runs[0].run_id  # interrupted or failed with a checkpoint: continue it
        elif runs and runs[0].status == "RUNNING":
            store.set_status(runs[0].run_id, "KILLED")  # we hold the claim, so no one runs it

        def on_exit(code: int, seconds: float) -> None:
            active.pop(claim.trial_id, None)
            ok = code == EXIT_OK
            queue.finish(claim, ok, seconds, exit_code=code)
            if ok:
                result.finished.append(point)
            else:
                result.failed.append((point, code, job.log))

        def on_start(pid: int) -> None:
            active[claim.trial_id] = claim
            queue.set_child(claim, pid)

        job = Job(point=point, name=run_name(point, keys),
                  tags={"sweep": spec.name, "profile": spec.profile or "", "dqt.role": "point",
                        "dqt.worker": queue.owner.token, "dqt.claim": f"{study_name('sweep', spec)}#{claim.number}"},
                  resume=resume, on_start=on_start, on_exit=on_exit)
        return job

    launcher = Launcher(spec.name, uri, workdir, parent, opts.train_cmd)
    try:
        result.interrupted = run_jobs(next_job, launcher, opts.jobs, progress, opts.grace_s,
                                      tick=lambda: queue.heartbeat(active.values()), tick_s=opts.heartbeat_s)
    finally:
        progress.close()
        for claim in list(active.values()):  # only after an error of our own
            queue.finish(claim, ok=False, exit_code=-1)
    result.elsewhere = queue.elsewhere(set(wanted) - finished - {p.key for p in result.finished})
    if result.parent_run_id is not None:
        status = "KILLED" if result.interrupted else "FAILED" if result.failed else "FINISHED"
        store.end_parent(result.parent_run_id, status, {
            "points_total": len(points), "points_finished": len(result.finished),
            "points_failed": len(result.failed), "points_already_finished": len(finished)})
    _report(spec, result, keys, workdir, stream)
    if not result.failed and not opts.keep_logs and opts.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _wait_for_queue(queue: ClaimQueue, wait_s: float, stream: TextIO) -> None:
    """Helpers may start before the sweep that queues the points; give it time."""
    deadline = time.monotonic() + wait_s
    if queue.size() == 0:
        print(f"waiting up to {_duration(wait_s)} for a `dqt sweep` to queue points ...", file=stream)
    while queue.size() == 0 and time.monotonic() < deadline:
        time.sleep(5.0)


def _report(spec: Spec, result: SweepResult, keys: list[str], workdir: Path, stream: TextIO) -> None:
    parts = [f"{len(result.finished)} finished now", f"{result.already} already finished"]
    if result.failed:
        parts.append(f"{len(result.failed)} failed")
    if result.elsewhere:
        parts.append(f"{result.elsewhere} running on other workers")
    if result.interrupted:
        parts.append("interrupted")
    print(f"{spec.label}: {result.total} points: {', '.join(parts)}", file=stream)
    for point, code, log in result.failed:
        what = "KILLED" if code == EXIT_INTERRUPTED else f"exit {code}"
        print(f"  FAILED {point.config_hash} {run_name(point, keys)} ({what}); log: {log}", file=stream)
    if result.failed:
        print(f"  logs and point configs kept in {workdir}; rerun the same command to retry", file=stream)


# ======================================================================================
# Dry run
# ======================================================================================
def point_statuses(points: list[Point], tracking_uri: str | None, experiment: str) -> dict[PointKey, str]:
    """Each point's status in the store, without creating anything."""
    store = Store.open_existing(resolve_tracking_uri(tracking_uri), experiment)
    stored = store.runs() if store else {}
    return {p.key: point_status(stored.get(p.key, [])) for p in points}


def format_table(points: list[Point], statuses: dict[PointKey, str]) -> str:
    """The dry-run table: config_hash, the varied fields, seed, status; aligned columns."""
    keys = varied_keys(points)
    names = short_names(keys)
    header = ["config_hash", *[names[k] for k in keys], "seed", "status"]
    rows = [[p.config_hash, *[_cell(dict(p.varied).get(k)) for k in keys], str(p.seed),
             statuses.get(p.key, STATUS_NONE)] for p in points]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows])


def dry_run(spec: Spec, points: list[Point], tracking_uri: str | None, out: TextIO) -> None:
    """Print what `run_sweep` would run, with each point's status in the store."""
    statuses = point_statuses(points, tracking_uri, spec.name)
    configs = len({p.config_hash for p in points})
    print(f"{spec.label}: {configs} configurations x {len(spec.seeds)} seeds = {len(points)} runs "
          f"(experiment '{spec.name}', nothing run)", file=out)
    print(format_table(points, statuses), file=out)
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    done = counts.pop("FINISHED", 0)
    print(f"{len(points) - done} to run, {done} FINISHED"
          + "".join(f", {n} {s}" for s, n in sorted(counts.items()) if s != STATUS_NONE), file=out)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
