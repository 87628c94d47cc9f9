"""The claim queue: Optuna storage shared by every worker of a sweep, and claim liveness.

Each point that is not yet FINISHED is a WAITING trial of the study ``sweep/<name>/<profile>``;
a worker claims one by moving it WAITING -> RUNNING, which the storage does atomically
(journal file: an append under a file lock, replayed in order, first writer wins;
PostgreSQL/MySQL: ``SELECT ... FOR UPDATE`` plus a state check; see `ClaimQueue.claim`).

The OS says whether a claim is still worked on: a claim records the host, pid and process
start time of its worker and of its `dqt train` child, plus a heartbeat, so a claim left by a
dead sweep is recognised (`claim_alive`) and its point offered again (`reap_stale`).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import ConfigError
from core.tracking import sqlite_path
from sweeps.expand import Point, PointKey
from sweeps.spec import Spec

HOST = socket.gethostname()


def study_name(kind: str, spec: Spec) -> str:
    """``sweep/noise/quick`` (the claim queue) or ``search/search/quick`` (an Optuna search):
    one study per spec and profile."""
    return f"{kind}/{spec.name}/{spec.profile or 'default'}"


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


def parent_tags(owner: Owner) -> dict[str, str]:
    """What a sweep's parent run records of the process that started it (`parent_owner`)."""
    return {"dqt.worker": owner.token, "dqt.host": owner.host, "dqt.pid": str(owner.pid)}


def parent_owner(tags: dict[str, str]) -> Owner | None:
    """The process that started a parent run: its ``dqt.worker`` token (host, pid and start
    time), else its ``dqt.host`` + ``dqt.pid`` tags; None when the run records neither."""
    owner = Owner.parse(tags.get("dqt.worker"))
    if owner is None and tags.get("dqt.host") and tags.get("dqt.pid", "").isdigit():
        owner = Owner(tags["dqt.host"], int(tags["dqt.pid"]))
    return owner


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
