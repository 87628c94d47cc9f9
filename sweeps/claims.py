"""The claim queue: Optuna storage shared by every worker of a sweep.

Each point that is not yet FINISHED is a WAITING trial of the study ``sweep/<name>/<profile>``;
a worker claims one by moving it WAITING -> RUNNING, which the storage does atomically
(journal file: an append under a file lock, replayed in order, first writer wins;
PostgreSQL/MySQL: ``SELECT ... FOR UPDATE`` plus a state check; see `ClaimQueue.claim`).

Offering a point is idempotent under concurrent `sync` calls and reapers: the offer of the
point's n-th trial first creates a study named after the point and n, and the storage lets
only one caller create a name (a unique column in an RDB, first writer in a journal).

A claim whose worker is dead (`sweeps.liveness.claim_alive`: heartbeats on the storage's own
clock, `StorageClock`) is reaped and its point offered again (`ClaimQueue.reap`).

How a claim ends decides what happens to its point:

- **finished**: the trial is COMPLETE;
- **handed back** (`ClaimQueue.release`: its run was stopped by SIGINT/SIGTERM, e.g. a Slurm
  preemption, and left a checkpoint): FAIL marked ``released``, and the point is offered again
  at once, so any worker resumes it; a hand-back is no failure;
- **failed** (a crash, or a claim reaped from a dead worker): FAIL, and the point is offered
  again while it has failed at most ``max_retries`` times (`ClaimQueue.failures`); past that it
  is given up, named in every worker's report, and left alone until a `dqt sweep` with a larger
  ``--max-retries``.
"""

from __future__ import annotations

import functools
import json
import random
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dqt.core.config import ConfigError
from dqt.core.tracking import sqlite_path
from dqt.core.tracking.retry import with_retry
from dqt.sweeps.expand import Point, PointKey
from dqt.sweeps.liveness import Owner, claim_alive
from dqt.sweeps.spec import Spec

DEFAULT_STALE_AFTER_S = 600.0  # a claim's grace period when it recorded none (`claim_alive`)
STORAGE_ENV = "DQT_STORAGE"  # the storage URL, read from the environment so no password shows in `ps`


def redact(url: str) -> str:
    """`url` with any password replaced by ``***``: for messages, logs and MLflow params."""
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url)


def study_name(kind: str, spec: Spec) -> str:
    """``sweep/noise/quick`` (the claim queue: one per spec name and profile; it only ever hands
    out the points the spec at hand asks for) or ``search/search/quick/<spec hash>`` (an Optuna
    search: its trial budget and best trial belong to one search space, base and seeds)."""
    name = f"{kind}/{spec.name}/{spec.profile or 'default'}"
    return f"{name}/{spec.content_hash}" if kind == "search" else name


class StorageClock:
    """Seconds since the epoch by the claim storage's own clock, so that workers on hosts
    whose clocks disagree still agree on a heartbeat's age.

    RDB storage: the database server's time (``clock_timestamp()``, ``UTC_TIMESTAMP``,
    SQLite's ``julianday('now')``).  Journal file: the modification time the file system gives
    a file touched beside the journal (a network file system stamps it with the server's clock).
    """

    _SQL = {"postgresql": "SELECT extract(epoch FROM clock_timestamp())",
            "mysql": "SELECT UNIX_TIMESTAMP(UTC_TIMESTAMP(6))",
            "sqlite": "SELECT (julianday('now') - 2440587.5) * 86400.0"}

    def __init__(self, url: str):
        self.url = url
        self._engine: Any = None
        self._stamp: Path | None = None
        journal = _journal_path(url)
        if journal is not None:
            self._stamp = journal.with_name(journal.name + ".clock")
        else:
            from sqlalchemy import create_engine
            from sqlalchemy.pool import NullPool

            self._engine = create_engine(url, poolclass=NullPool, **engine_options(url))
            if self._engine.dialect.name not in self._SQL:
                raise ConfigError(f"--storage {redact(url)}: no clock query for the '{self._engine.dialect.name}' "
                                  "database")

    def __call__(self) -> float:
        if self._stamp is not None:
            self._stamp.touch()  # "now" by whoever keeps the file: on NFS, the server
            return self._stamp.stat().st_mtime
        from sqlalchemy import text

        with self._engine.connect() as conn:
            return float(conn.execute(text(self._SQL[self._engine.dialect.name])).scalar())



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


def _journal_path(url: str) -> Path | None:
    """The journal file an Optuna storage URL names, or None for an RDB URL."""
    if url.startswith("journal:"):
        return Path(url.removeprefix("journal:").removeprefix("//"))
    return None if "://" in url else Path(url)


def open_storage(url: str) -> Any:
    """An Optuna storage: an RDB URL (``postgresql://``, ``mysql://``, ``sqlite:///``) or a
    journal file (a path, or ``journal:///path``)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # its INFO line per trial would bury the progress
    journal = _journal_path(url)
    if journal is None:
        return _rdb_storage(url)
    journal.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(journal)))


# PostgreSQL (libpq, psycopg): give up connecting after 10 s, notice a dead peer within about a
# minute (TCP keepalive), and end any statement after 30 s, so a database outage surfaces as an
# error the caller retries (`with_retry`) instead of a call that hangs for ever.
PG_CONNECT_ARGS = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                   "keepalives_count": 3, "options": "-c statement_timeout=30000"}


def engine_options(url: str) -> dict[str, Any]:
    """SQLAlchemy engine options for the claim storage at `url`: timeouts and keepalives on
    PostgreSQL, a connection checked before use everywhere."""
    options: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith(("postgresql", "postgres")):
        options["connect_args"] = dict(PG_CONNECT_ARGS)
    return options


def _rdb_storage(url: str, attempts: int = 5) -> Any:
    """Optuna's RDB storage; workers starting together on a new database race to create its
    tables (PostgreSQL: a unique violation on a type or table name), so the losers retry and
    then find the tables made."""
    import optuna
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            return optuna.storages.get_storage(optuna.storages.RDBStorage(url, engine_kwargs=engine_options(url)))
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            if attempt == attempts - 1 or not any(w in str(exc) for w in ("already exists", "duplicate key")):
                raise
            time.sleep(0.2 + 0.3 * attempt)
    raise AssertionError("unreachable")


def ensure_study(storage: Any, name: str, direction: str = "minimize", sampler: Any = None) -> Any:
    import optuna

    return optuna.create_study(storage=storage, study_name=name, direction=direction, sampler=sampler,
                               load_if_exists=True)


def reap_stale(storage: Any, study_id: int, stale_after_s: float, now: float) -> list[Any]:
    """Mark RUNNING trials whose claim is dead FAIL; returns the trials this caller reaped
    (the storage lets only one reaper move a trial, so each is returned to exactly one)."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    reaped = []
    for t in running_trials(storage, study_id):
        if claim_alive(t.user_attrs, t.datetime_start, stale_after_s, now):
            continue
        tid = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            storage.set_trial_user_attr(tid, "reaped_by", Owner.of().token)
            if storage.set_trial_state_values(tid, TrialState.FAIL):
                reaped.append(t)
        except UpdateFinishedTrialError:  # another worker reaped or finished it first
            pass
    return reaped


def running_trials(storage: Any, study_id: int) -> list[Any]:
    """The RUNNING trials of a study (the claims held), by number.

    On RDB storage they are selected by state in SQL and read one by one: Optuna's cached
    `get_all_trials` loads every trial of the study into the caller's cache on its first call,
    so at the end of a 10,000-point sweep each idle worker that watched the queue read them all
    (100 workers at once kept 2 cores busy for minutes, benchmarks/bench_queue.py)."""
    from optuna.storages import RDBStorage
    from optuna.trial import TrialState

    backend = getattr(storage, "_backend", storage)  # RDB storage comes wrapped in Optuna's cache
    if not isinstance(backend, RDBStorage):
        return storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
    from optuna.storages._rdb.models import TrialModel
    from sqlalchemy import select

    with backend.engine.connect() as conn:
        ids = conn.execute(select(TrialModel.trial_id).where(
            TrialModel.study_id == study_id, TrialModel.state == TrialState.RUNNING)
            .order_by(TrialModel.number)).scalars().all()
    return [t for t in _read_trials(backend, ids) if t.state == TrialState.RUNNING]  # not finished since


def _read_trials(backend: Any, ids: Iterable[int]) -> list[Any]:
    """The trials of `ids` read from an RDB storage one by one (past Optuna's cache), skipping any
    deleted meanwhile."""
    trials = []
    for trial_id in ids:
        try:
            trials.append(backend.get_trial(trial_id))
        except KeyError:
            continue
    return trials


# How long a claim-queue call retries transient database errors (a restarting server, a dropped
# connection) before giving up: a blip costs a pause, not the running trainers.
OUTAGE_S = 300.0


def _retried(method: Callable[..., Any]) -> Callable[..., Any]:
    """A `ClaimQueue` method that retries transient storage errors with backoff (`with_retry`)."""
    @functools.wraps(method)
    def call(self: ClaimQueue, *args: Any, **kwargs: Any) -> Any:
        return with_retry(lambda: method(self, *args, **kwargs), method.__name__, timeout_s=self.outage_s,
                          service="claim queue")
    return call


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
        stale_after_s: Grace period: a claim whose heartbeat is older is dead (`claim_alive`).
        worker: This worker's identity; None = `WORKER_ID` (``DQT_WORKER_ID`` or a fresh one).
    """

    def __init__(self, storage: str, study: str, stale_after_s: float = DEFAULT_STALE_AFTER_S, worker: str | None = None,
                 max_retries: int = 3):
        self.storage = open_storage(storage)
        self.clock = StorageClock(storage)
        self.name = study
        self.study = ensure_study(self.storage, study)
        self.study_id = self.storage.get_study_id_from_name(study)
        self.owner = Owner.of(worker=worker)
        self.stale_after_s = stale_after_s
        self.max_retries = max_retries
        self.outage_s = OUTAGE_S
        from optuna.storages import RDBStorage

        backend = getattr(self.storage, "_backend", self.storage)  # RDB storage comes wrapped in Optuna's cache
        self._rdb = backend if isinstance(backend, RDBStorage) else None  # None: a journal

    def _trials(self, states: Iterable[Any] | None = None) -> list[Any]:
        return self.storage.get_all_trials(self.study_id, deepcopy=False,
                                           states=tuple(states) if states else None)

    @staticmethod
    def _key(trial: Any) -> PointKey:
        return ClaimQueue._key_of(trial.user_attrs)

    @staticmethod
    def _key_of(attrs: dict[str, Any]) -> PointKey:
        return (str(attrs.get("config_hash")), int(attrs.get("seed", -1)))

    def _offer(self, key: PointKey, generation: int) -> bool:
        """Queue the point's trial number `generation` (its count of trials so far) unless
        another caller already did: the first to create the offer's study name wins.  A caller
        killed between the two writes leaves that point unoffered (the next generation of the
        same point is then never reached); the window is one storage round trip."""
        from optuna.exceptions import DuplicatedStudyError
        from optuna.study import StudyDirection
        from optuna.trial import TrialState, create_trial

        config_hash, seed = key
        try:
            self.storage.create_new_study([StudyDirection.MINIMIZE],
                                          f"{self.name}:offer:{config_hash}:{seed}:{generation}")
        except DuplicatedStudyError:
            return False
        self.study.add_trial(create_trial(state=TrialState.WAITING, user_attrs={
            "config_hash": config_hash, "seed": seed, "offer": generation}))
        return True

    def _generations(self, trials: Iterable[Any] | None = None) -> tuple[dict[PointKey, int], set[PointKey]]:
        """Each point's count of trials, and the points waiting or being worked on (of
        `trials`, default every trial of the study)."""
        from optuna.trial import TrialState

        counts: dict[PointKey, int] = {}
        taken = set()
        for t in self._trials() if trials is None else trials:
            key = self._key(t)
            counts[key] = counts.get(key, 0) + 1
            if t.state in (TrialState.WAITING, TrialState.RUNNING):
                taken.add(key)
        return counts, taken

    @_retried
    def failures(self) -> dict[PointKey, int]:
        """Each point's failed attempts: FAIL trials that were not handed back (a crash, or a
        claim reaped from a dead worker)."""
        from optuna.trial import TrialState

        return self._failures(self._trials((TrialState.FAIL,)))

    @staticmethod
    def _failures(trials: Iterable[Any]) -> dict[PointKey, int]:
        from optuna.trial import TrialState

        out: dict[PointKey, int] = {}
        for t in trials:
            if t.state == TrialState.FAIL and "released" not in t.user_attrs:
                key = ClaimQueue._key(t)
                out[key] = out.get(key, 0) + 1
        return out

    def given_up(self, keys: Collection[PointKey]) -> dict[PointKey, int]:
        """The points of `keys` that failed more than ``max_retries`` times, with their failures."""
        return {k: n for k, n in self.failures().items() if k in keys and n > self.max_retries}

    def _offer_again(self, keys: Collection[PointKey]) -> int:
        """Offer `keys` once more, unless waiting or worked on already, or given up."""
        trials = self._trials_of(keys)
        counts, taken = self._generations(trials)
        failed = self._failures(trials)
        return sum(self._offer(k, counts.get(k, 0)) for k in keys
                   if k not in taken and failed.get(k, 0) <= self.max_retries)

    def _trials_of(self, keys: Collection[PointKey]) -> list[Any]:
        """The trials of the points `keys`.  On RDB storage, for a few points (a reaped claim,
        a failed run), they are selected by their ``config_hash`` attribute in SQL: the cached
        `get_all_trials` would load every trial of the study into this process first, which a
        sweep's idle workers all did at once at its end (benchmarks/bench_queue.py)."""
        if self._rdb is None or len(keys) > self.FEW_POINTS:
            return [t for t in self._trials() if self._key(t) in keys]
        from optuna.storages._rdb.models import TrialModel, TrialUserAttributeModel
        from sqlalchemy import select

        attr = TrialUserAttributeModel
        with self._rdb.engine.connect() as conn:
            ids = conn.execute(select(attr.trial_id).join(TrialModel, TrialModel.trial_id == attr.trial_id).where(
                TrialModel.study_id == self.study_id, attr.key == "config_hash",
                attr.value_json.in_({json.dumps(h) for h, _ in keys}))).scalars().all()
        return [t for t in _read_trials(self._rdb, ids) if self._key(t) in keys]

    @_retried
    def sync(self, points: Sequence[Point], finished: Collection[PointKey]) -> int:
        """Offer every point that is not finished, not already waiting or being worked on and
        not given up; returns how many this call offered, dead claims reaped included."""
        offered = self.reap()
        return offered + self._offer_again([p.key for p in points if p.key not in finished])

    @_retried
    def reap(self) -> int:
        """Fail the claims whose worker is dead and offer their points again; returns how many."""
        reaped = reap_stale(self.storage, self.study_id, self.stale_after_s, self.clock())
        return self._offer_again({self._key(t) for t in reaped}) if reaped else 0

    @_retried
    def claim(self, wanted: Collection[PointKey]) -> Claim | None:
        """Atomically take one WAITING trial of `wanted`, or None when none is left.

        `set_trial_state_values(RUNNING)` is the pop Optuna's own `Study.ask` uses; it
        returns False when another worker moved the trial first (journal: the first
        RUNNING record in the log wins; RDB: row lock and a WAITING check).  SQLite RDB
        storage takes no row lock, so use it for one worker only.  The WAITING trials are
        tried in number order (`_waiting`: an RDB storage reads them a page at a time, each
        page in a random order).
        """
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        for tid, number, key in self._waiting():
            if key not in wanted:  # queued by another version of the spec: not ours to run
                continue
            if tid is None:
                tid = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
            try:
                if not self.storage.set_trial_state_values(tid, TrialState.RUNNING):
                    continue
            except UpdateFinishedTrialError:
                continue
            self.storage.set_trial_user_attr(tid, "owner", self.owner.token)
            self.storage.set_trial_user_attr(tid, "stale_after", self.stale_after_s)  # this claim's own grace
            self.storage.set_trial_user_attr(tid, "heartbeat", self.clock())
            return Claim(tid, number, key)
        return None

    CLAIM_PAGE = 32  # WAITING trials an RDB claim reads at a time
    FEW_POINTS = 32  # up to this many points, a re-offer on RDB storage selects their trials in SQL

    def _waiting(self) -> Iterator[tuple[int | None, int, PointKey]]:
        """The WAITING trials by number: (trial id, or None where the caller must look it up;
        number; point key)."""
        from optuna.trial import TrialState

        if self._rdb is None:
            for trial in self._trials((TrialState.WAITING,)):
                yield None, trial.number, self._key(trial)
            return
        # RDB: `get_all_trials` loads every unfinished trial of the study with all its attributes
        # (Optuna's cache re-reads those on each call), so a claim cost O(points): a median of
        # 0.9 s with 1,000 points waiting and 3.4 s with 3,000 (benchmarks/bench_queue.py, 8
        # workers, 2 cores). Read the WAITING trials' ids a page at a time instead, and each one's
        # key on its own; the pop stays `set_trial_state_values(RUNNING)`.
        from optuna.storages._rdb.models import TrialModel
        from sqlalchemy import select

        after = -1
        while True:
            page = (select(TrialModel.trial_id, TrialModel.number)
                    .where(TrialModel.study_id == self.study_id, TrialModel.state == TrialState.WAITING,
                           TrialModel.number > after)
                    .order_by(TrialModel.number).limit(self.CLAIM_PAGE))
            with self._rdb.engine.connect() as conn:
                rows = conn.execute(page).all()
            if not rows:
                return
            after = rows[-1][1]
            # Workers reading the same page at once would all try its first trial, and all but
            # one lose: in a random order, most first tries win.
            random.shuffle(rows)
            for trial_id, number in rows:
                yield trial_id, number, self._key_of(self._rdb.get_trial_user_attrs(trial_id))
            if len(rows) < self.CLAIM_PAGE:
                return

    @_retried
    def size(self) -> int:
        """Trials in the queue, whatever their state."""
        return len(self._trials())

    @_retried
    def set_child(self, claim: Claim, pid: int) -> None:
        self.storage.set_trial_user_attr(claim.trial_id, "child", Owner.of(pid, self.owner.worker).token)

    @_retried
    def heartbeat(self, claims: Iterable[Claim]) -> list[Claim]:
        """Beat for `claims`; returns those that are no longer this worker's (reaped by a peer
        that judged this worker dead: its point is offered again, so its run must stop)."""
        from optuna.trial import TrialState

        now = self.clock()
        lost = []
        for claim in claims:
            self._quiet(self.storage.set_trial_user_attr, claim.trial_id, "heartbeat", now)
            if self.storage.get_trial(claim.trial_id).state != TrialState.RUNNING:
                lost.append(claim)
        return lost

    @_retried
    def finish(self, claim: Claim, ok: bool, seconds: float = 0.0, **attrs: Any) -> bool:
        """Close a claim: COMPLETE (value = wall seconds) or FAIL. A failed point is offered
        again while it has failed at most ``max_retries`` times; returns whether it was."""
        from optuna.trial import TrialState

        for key, value in attrs.items():
            self._quiet(self.storage.set_trial_user_attr, claim.trial_id, key, value)
        state = TrialState.COMPLETE if ok else TrialState.FAIL
        self._quiet(self.storage.set_trial_state_values, claim.trial_id, state, [seconds] if ok else None)
        if ok:
            self._drop_offer_markers(claim.key)
        return not ok and self._offer_again([claim.key]) > 0

    def _drop_offer_markers(self, key: PointKey) -> None:
        """Delete a finished point's offer-marker studies, so that dashboards list the sweep's
        own study and little else. Safe once it is finished: an offer's generation is the
        point's count of trials, which never shrinks, so a deleted marker is never needed again."""
        prefix = f"{self.name}:offer:{key[0]}:{key[1]}:"
        if self._rdb is None:
            markers = [s._study_id for s in self.storage.get_all_studies() if s.study_name.startswith(prefix)]
        else:
            # RDB: `get_all_studies` loads every study with its attributes, and every point not yet
            # finished has a marker study, so each finish cost O(points) (a median of 0.4 s with
            # 3,000 points, benchmarks/bench_queue.py). Select this point's markers by name instead.
            from optuna.storages._rdb.models import StudyModel
            from sqlalchemy import select

            with self._rdb.engine.connect() as conn:
                markers = conn.execute(select(StudyModel.study_id).where(
                    StudyModel.study_name.startswith(prefix, autoescape=True))).scalars().all()
        for study_id in markers:
            try:
                self.storage.delete_study(study_id)
            except KeyError:  # another worker deleted it first
                pass

    def release(self, claim: Claim, reason: str, seconds: float = 0.0) -> None:
        """Hand a claim back: its run was stopped (SIGINT/SIGTERM: a preemption, a time limit,
        Ctrl-C) and keeps its checkpoint; the point is offered again at once, so whichever
        worker claims it next resumes the run. A hand-back counts as no failure."""
        self.finish(claim, ok=False, seconds=seconds, released=reason)

    @_retried
    def held_elsewhere(self, keys: Collection[PointKey]) -> set[PointKey]:
        """The points of `keys` that live workers other than this one hold."""

        now = self.clock()
        return {self._key(t) for t in running_trials(self.storage, self.study_id)
                if self._key(t) in keys and self._worker(t) != self.owner.worker
                and claim_alive(t.user_attrs, t.datetime_start, self.stale_after_s, now)}

    def elsewhere(self, keys: Collection[PointKey]) -> int:
        """How many points of `keys` live workers other than this one hold."""
        return len(self.held_elsewhere(keys))

    @staticmethod
    def _worker(trial: Any) -> str | None:
        owner = Owner.parse(trial.user_attrs.get("owner"))
        return owner.worker if owner else None

    @staticmethod
    def _quiet(fn: Callable[..., Any], *args: Any) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            fn(*args)
        except UpdateFinishedTrialError:  # reaped by another worker meanwhile: it will rerun anyway
            pass


class HeartbeatThread(threading.Thread):
    """Calls `beat` every `every` seconds from a thread of its own, so a main loop stuck in a
    slow call (or in `with_retry` through a database outage) does not let its claims go stale
    while their trainers train. A beat that fails is logged and tried again at the next one."""

    def __init__(self, beat: Callable[[], None], every: float, log: Callable[[str], None] = lambda line: None):
        super().__init__(name="dqt-heartbeat", daemon=True)
        self.beat, self.every, self.log = beat, every, log
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - an outage must not end the thread: beat again later
                text = str(exc).strip().splitlines()
                self.log(f"heartbeat failed ({type(exc).__name__}: {text[0] if text else ''}); "
                         "trying again at the next one")

    def stop(self) -> None:
        self.stopped.set()


def live_holder(claim: str, storage: str) -> str | None:
    """Who holds the claim ``<study>#<number>`` (a run's ``dqt.claim`` tag) while it is live
    (`claim_alive` by the claim's own grace period); None once it is closed, dead or unknown."""
    from optuna.trial import TrialState

    study, _, number = claim.rpartition("#")
    if not study or not number.isdigit():
        return None
    opened = open_storage(storage)
    try:
        trial_id = opened.get_trial_id_from_study_id_trial_number(opened.get_study_id_from_name(study), int(number))
    except KeyError:
        return None
    trial = opened.get_trial(trial_id)
    if trial.state != TrialState.RUNNING:
        return None
    if not claim_alive(trial.user_attrs, trial.datetime_start, DEFAULT_STALE_AFTER_S, StorageClock(storage)()):
        return None
    owner = Owner.parse(trial.user_attrs.get("owner"))
    return f"{owner.host}:{owner.pid}" if owner else "a worker"
