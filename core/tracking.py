"""MLflow tracking on the training side: URI checks, store set-up, one `RunTracker` per run,
and the MLflow UI server (`dqt ui`).

This is the only module of the trainer that talks to MLflow (docs/CONTRACTS.md).  It uses
`MlflowClient` only, never the fluent ``mlflow.start_run`` global state, so several trackers
can live in one process and nothing depends on import order.

SQLite facts this module is built on (MLflow 3.x, checked in ``sqlalchemy_store.py`` and
``store/db/utils.py``):

- Every MLflow session runs ``PRAGMA busy_timeout = 20000``, so a writer waits up to 20 s for
  the lock; longer waits (and lock upgrades SQLite refuses at once to avoid deadlock) still
  surface as ``OperationalError: database is locked``, re-raised as an `MlflowException` with
  error code ``TEMPORARILY_UNAVAILABLE``.  MLflow itself only retries Postgres deadlocks, so
  `RunTracker` retries every write with exponential backoff and jitter.
- ``SqlAlchemyStore.__init__`` creates the schema and runs the Alembic migrations of a NEW
  database without any lock.  Four processes opening one new ``mlflow.db`` at once fail with
  "table alembic_version already exists", "duplicate column name: step" or "Online migration
  expected to match one row" (reproduced here).  `ensure_store` therefore initialises the
  schema once under an ``fcntl`` lock on ``mlflow.db-lock`` before any client touches the store.
- The database uses SQLite's rollback journal (``journal_mode=DELETE``, SQLite's default), so
  ``mlflow.db`` alone holds every committed write the moment it commits: the file a researcher
  copies, shares or archives is complete after any command, however it ended (``os._exit``,
  Ctrl-C, a failure, even SIGKILL between two writes).  WAL journaling, used before, kept
  committed writes in ``mlflow.db-wal`` until a checkpoint, and processes that leave through
  ``os._exit`` never ran one: a copy of ``mlflow.db`` alone lost runs' ends and metric points.
  Parallel writers still share one store: each write waits on the lock (``busy_timeout``) and
  `with_retry` repeats what SQLite refuses, so no point is lost; a reader (the UI, `analysis/`)
  only delays a commit by the length of one query.  WAL wrote about twice as fast (4 processes
  flushing 100 times each: ~1.0 s instead of ~2.3 s on idle 2 cores; 4.5 s against 10 s on
  loaded ones, i.e. ~25 ms a flush), immaterial next to a learner that flushes every 5 s.
  `ensure_store` converts a store left in WAL mode (that
  checkpoints it and deletes ``-wal``/``-shm``); while another process still holds it in WAL
  mode the conversion waits for a later command, and `settle_store` checkpoints the WAL
  (``PRAGMA wal_checkpoint(TRUNCATE)``) whenever a run ends and at interpreter exit.
- SQLite connections must not cross ``fork()``: a child drops the pooled connections it
  inherited (`_forget_inherited_engines`).

File stores (``file:`` URIs and plain paths) are rejected: MLflow 3 deprecates them and they
give no transactional safety to parallel writers.  ``mlflow migrate-filestore`` converts one.
"""

from __future__ import annotations

import atexit
import difflib
import fcntl
import logging
import math
import os
import posixpath
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from core.config import ConfigError

if TYPE_CHECKING:  # mlflow costs ~1 s to import; URI checks and `dqt --help` must not pay it
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

T = TypeVar("T")

# MLflow's own limits (mlflow.utils.validation); copied so URI code never imports mlflow.
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
MAX_KEY_LENGTH = 250

RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")
FAILURE_REASON_TAG = "dqt.failure_reason"
PARENT_RUN_TAG = "mlflow.parentRunId"
ARTIFACT_DIR = "mlartifacts"

_DB_SCHEMES = ("postgresql", "mysql", "mssql")
_KNOWN_SCHEMES = ("sqlite", "http", "https", *_DB_SCHEMES)
_SQLITE_FORM = "expected sqlite:///relative/path.db or sqlite:////absolute/path.db"
_FILE_STORE = ("file stores are deprecated in MLflow 3 and unsafe for parallel writers; use "
               "sqlite:///PATH/mlflow.db (convert an mlruns folder with `mlflow migrate-filestore`)")
_KEY_RE = re.compile(r"^[/\w.\- :]+$")  # MLflow's rule for metric/param names (POSIX)


class TrackingError(RuntimeError):
    """A tracking call still failed after retrying transient errors for the whole deadline."""


# ---- URIs ------------------------------------------------------------------------------------
def repo_root() -> Path:
    """The folder holding pyproject.toml above core/; the working directory when the package
    is installed without its source tree (a wheel has no pyproject.toml above core/)."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").is_file() else Path.cwd().resolve()


def default_tracking_uri() -> str:
    """``sqlite:///<repo root>/mlflow.db`` with an absolute path (docs/CONTRACTS.md)."""
    return f"sqlite:///{repo_root() / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None) -> str:
    """Check a tracking URI and return its canonical form, without touching the store.

    None gives `default_tracking_uri`.  ``sqlite:///rel.db`` is made absolute against the
    working directory (SQLAlchemy's meaning) and its folder must exist.  ``http(s)://HOST[:PORT]``,
    ``postgresql://``, ``mysql://`` and ``mssql://`` (with an optional ``+driver``) pass after a
    syntax check.  Anything else raises `ConfigError` with one line naming the URI.
    """
    if uri is None:
        return default_tracking_uri()
    text = uri.strip()

    def bad(problem: str) -> ConfigError:
        return ConfigError(f"tracking URI '{uri}': {problem}")

    if not text:
        raise bad("is empty")
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*)://", text)
    if match is None:
        scheme_only = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*):", text)
        if text.lower().startswith("file:"):
            raise bad(_FILE_STORE)
        if scheme_only and scheme_only.group(1).split("+")[0].lower() == "sqlite":
            raise bad(_SQLITE_FORM)
        if scheme_only and len(scheme_only.group(1)) > 1:  # "C:" would be a Windows drive
            raise bad(f"malformed, expected '{scheme_only.group(1)}://...'")
        raise bad("has no scheme://; expected sqlite:///PATH.db, http(s)://HOST:PORT, postgresql://... "
                  f"or mysql://... (a plain path would be an MLflow file store: {_FILE_STORE})")
    scheme = match.group(1).lower()
    base = scheme.split("+")[0]
    if base == "file":
        raise bad(_FILE_STORE)
    if base == "sqlite":
        return _resolve_sqlite(text, match.group(1), bad)
    if base in ("http", "https"):
        if "+" in scheme:
            raise bad(f"unknown scheme '{scheme}'")
        parts = urlsplit(text)
        if not parts.hostname:
            raise bad("names no host; expected http(s)://HOST[:PORT]")
        try:
            parts.port  # noqa: B018 - urlsplit checks the port only when it is read
        except ValueError:
            raise bad("has an invalid port; expected http(s)://HOST[:PORT] with a port in 1..65535") from None
        return text.rstrip("/")
    if base in _DB_SCHEMES or base == "postgres":
        if base == "postgres":
            raise bad("SQLAlchemy 2 dropped the 'postgres' scheme; write postgresql://")
        if not urlsplit(text).hostname:
            raise bad(f"names no host; expected {base}://USER:PASSWORD@HOST[:PORT]/DATABASE")
        return text
    close = difflib.get_close_matches(base, _KNOWN_SCHEMES, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f" (expected one of {', '.join(_KNOWN_SCHEMES)})"
    raise bad(f"unknown scheme '{scheme}'{hint}")


def _resolve_sqlite(text: str, scheme: str, bad: Callable[[str], ConfigError]) -> str:
    """``sqlite:///PATH[?query]`` with PATH made absolute; its folder must already exist."""
    rest = text[len(scheme) + 3:]  # after "sqlite://"
    if not rest.startswith("/"):
        raise bad(f"SQLite URIs name no host; {_SQLITE_FORM}")
    path_text, _, query = rest[1:].partition("?")
    if path_text in ("", ":memory:"):
        raise bad("an in-memory SQLite store cannot be shared by processes; name a file")
    path = Path(path_text).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if not path.parent.is_dir():
        raise bad(f"folder '{path.parent}' does not exist")
    if path.is_dir():
        raise bad(f"'{path}' is a folder, not a database file")
    path = path.parent.resolve() / path.name  # one spelling per file: engine cache and lock agree
    return f"{scheme}:///{path}" + (f"?{query}" if query else "")


def sqlite_path(uri: str | None) -> Path | None:
    """The database file of a SQLite tracking URI, None for any other store."""
    resolved = resolve_tracking_uri(uri)
    if not resolved.lower().startswith("sqlite"):
        return None
    return Path(resolved.split(":///", 1)[1].partition("?")[0])


def artifact_root_for(uri: str | None) -> str | None:
    """``file://`` URI of the ``mlartifacts/`` folder next to a SQLite database; None for
    servers and databases, whose server decides where artifacts go."""
    db = sqlite_path(uri)
    return (db.parent / ARTIFACT_DIR).as_uri() if db is not None else None


# ---- retries ---------------------------------------------------------------------------------
_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED"}
_TRANSIENT_TEXT = ("database is locked", "database is busy", "database table is locked",
                   "temporarily unavailable", "max retries exceeded", "connection refused",
                   "connection reset", "connection aborted", "timed out", "failed with exception")


def is_transient(exc: BaseException) -> bool:
    """True for errors that go away when retried: SQLite lock contention, a busy or restarting
    tracking server, dropped connections.  Validation errors and missing runs are permanent."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    text = str(exc).lower()
    if any(s in text for s in _TRANSIENT_TEXT):
        return True
    if getattr(exc, "error_code", None) in _TRANSIENT_CODES:
        return True
    for module, names in (("sqlalchemy.exc", ("OperationalError",)),
                          ("requests.exceptions", ("ConnectionError", "Timeout"))):
        mod = sys.modules.get(module)
        if mod is not None and isinstance(exc, tuple(getattr(mod, n) for n in names)):
            return True
    return False


def with_retry(fn: Callable[[], T], what: str, timeout_s: float = 60.0,
               on_retry: Callable[[BaseException], None] | None = None) -> T:
    """Call ``fn()`` until it succeeds, retrying transient errors with exponential backoff and
    jitter for up to `timeout_s`; permanent errors propagate at once.

    Jitter matters: processes that collided on the SQLite lock would collide again if they
    all slept exactly the same time.  Raises `TrackingError` when the deadline passes.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            return fn()
        except Exception as exc:  # classified just below
            if not is_transient(exc):
                raise
            pause = delay * random.uniform(0.5, 1.5)
            if time.monotonic() + pause > deadline:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise TrackingError(f"MLflow {what} still failing after {timeout_s:.0f} s: {first}") from exc
            if on_retry is not None:
                on_retry(exc)
            log.debug("MLflow %s: transient error, retrying in %.2f s: %s", what, pause, exc)
            time.sleep(pause)
            delay = min(delay * 2.0, 2.0)


# ---- store -----------------------------------------------------------------------------------
_READY: set[str] = set()
_READY_LOCK = threading.Lock()
_WAL_STORES: set[Path] = set()  # databases put in WAL mode on request (`ensure_store(wal=True)`)
_USED: dict[Path, int] = {}  # SQLite databases this process opened or wrote -> its pid (a fork inherits the dict)
JOURNAL_SWITCH_TIMEOUT_S = 2.0  # how long leaving WAL waits for other connections to close
SETTLE_TIMEOUT_S = 10.0  # how long `settle_store` retries a checkpoint another process blocks


def ensure_store(uri: str | None, wal: bool = False) -> str:
    """Resolve `uri` and make its store usable by many processes; returns the resolved URI.

    For SQLite: creates the database and its schema once under an ``fcntl`` lock on
    ``<db>-lock`` (MLflow's own initialisation races, see the module docstring), gives the
    ``Default`` experiment the absolute artifact folder, and sets the rollback journal, so the
    database file alone always holds every committed write (a store left in WAL mode is
    converted; `wal` asks for WAL journaling instead, and its writers then rely on
    `settle_store`).  A schema from an older MLflow raises `ConfigError` naming
    ``mlflow db upgrade``.  Servers and databases initialise themselves; for them this only
    checks the URI.
    """
    resolved = resolve_tracking_uri(uri)
    db = sqlite_path(resolved)
    if db is None or resolved in _READY:
        if db is not None:
            _USED[db] = os.getpid()
        return resolved
    with _READY_LOCK, open(f"{db}-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        try:
            import sqlalchemy.exc
            from mlflow.exceptions import MlflowException
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            try:  # a writer of another store may hold the lock for a while: retry that
                with_retry(lambda: SqlAlchemyStore(resolved, artifact_root_for(resolved)), "open store")
            except (MlflowException, sqlalchemy.exc.DatabaseError) as exc:
                # e.g. a schema from an older MLflow ("run 'mlflow db upgrade'"), not a database
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ConfigError(f"tracking URI '{resolved}': {first}") from None
            with_retry(lambda: _set_journal_mode(db, wal), "set journal mode")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
        _READY.add(resolved)
        _USED[db] = os.getpid()
    return resolved


def _set_journal_mode(db: Path, wal: bool) -> None:
    """Put `db` in WAL mode (`wal`) or rollback-journal mode, where it stays (both persist)."""
    import sqlite3
    from contextlib import closing

    if wal:
        _WAL_STORES.add(db)
    else:
        _WAL_STORES.discard(db)
    want = "wal" if wal else "delete"
    with closing(sqlite3.connect(db, timeout=JOURNAL_SWITCH_TIMEOUT_S)) as conn:
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == want:
            return
        if wal:
            conn.execute("PRAGMA journal_mode=WAL")
            return
    if _leave_wal(db):
        log.info("%s: switched from WAL to the rollback journal (the file alone now holds every write)", db)
    else:
        log.warning("%s stays in WAL mode for now: another process has it open (an MLflow UI or an "
                    "older dqt?).  Runs checkpoint it as they end; the next command converts it.", db)


def _leave_wal(db: Path) -> bool:
    """Switch `db` from WAL to the rollback journal: SQLite checkpoints the WAL and deletes
    ``-wal`` and ``-shm``.  Only possible with no other connection to the database anywhere,
    so this process's idle pooled ones close first; False while another process holds one."""
    import sqlite3
    from contextlib import closing

    _dispose_engines(db)
    try:
        with closing(sqlite3.connect(db, timeout=JOURNAL_SWITCH_TIMEOUT_S)) as conn:
            return conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0].lower() == "delete"
    except sqlite3.OperationalError as exc:
        if is_transient(exc):  # "database is locked": someone else is connected
            return False
        raise


def _dispose_engines(db: Path) -> None:
    """Close this process's idle pooled MLflow connections to `db` (reopened on next use)."""
    module = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    engines = getattr(getattr(module, "SqlAlchemyStore", None), "_engine_map", {}) if module else {}
    for engine in list(engines.values()):
        database = getattr(engine.url, "database", None)
        if database and engine.url.get_backend_name() == "sqlite" and _same_file(database, db):
            engine.dispose()


def _same_file(database: str, db: Path) -> bool:
    try:
        return Path(database).resolve() == db.resolve()
    except OSError:
        return False


def settle_store(uri: str | os.PathLike[str] | None, timeout_s: float = SETTLE_TIMEOUT_S) -> bool:
    """Make sure the SQLite database of `uri` is self-contained: every committed write in the
    database file itself and an absent or empty ``-wal`` beside it.  Called when a run ends and
    at exit; cheap (one ``stat``) for a store in rollback-journal mode, a no-op for servers.

    A WAL left by some process is moved into the database: by leaving WAL mode when no other
    process is connected, otherwise by ``PRAGMA wal_checkpoint(TRUNCATE)``.  A checkpoint
    that a reader or writer of another process blocks (SQLITE_BUSY) is retried with backoff for
    `timeout_s`; a checkpoint only ever copies committed pages, so nothing can be lost, and the
    last process to settle leaves the WAL empty.  Returns whether the store is settled; never
    raises (it runs while a process ends)."""
    try:
        db = Path(uri) if isinstance(uri, os.PathLike) else sqlite_path(uri)
    except ConfigError:
        return True  # no SQLite store behind it: nothing to settle
    if db is None:
        return True
    try:
        if not db.is_file() or Path(f"{db}-wal").stat().st_size == 0:
            return True
    except OSError:  # no -wal file (or none we may read): nothing to move
        return True
    import sqlite3
    from contextlib import closing

    def settle() -> None:
        if db not in _WAL_STORES and _leave_wal(db):
            return
        with closing(sqlite3.connect(db, timeout=JOURNAL_SWITCH_TIMEOUT_S)) as conn:
            busy, _frames, _copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:  # a reader still uses old frames, or a writer holds the lock: not done yet
            raise TimeoutError(f"WAL checkpoint of {db} is blocked by another connection")

    try:
        with_retry(settle, "checkpoint", timeout_s)
    except Exception as exc:  # noqa: BLE001 - a process must still end; the WAL keeps the data
        log.warning("could not checkpoint %s-wal into the database (the data stays in the WAL "
                    "until a later command settles it): %s", db, exc)
        return False
    return True


def settle_stores() -> bool:
    """`settle_store` every SQLite store this process opened or wrote (not those of a parent
    it was forked from).  Registered with `atexit`; code that leaves through ``os._exit``
    calls it first (`core.procutil.exit_now` does).  True when all are settled."""
    pid = os.getpid()
    return all([settle_store(db) for db, owner in list(_USED.items()) if owner == pid])


atexit.register(settle_stores)


def _forget_inherited_engines() -> None:
    """After fork: drop the parent's pooled SQLite connections (a SQLite connection must never
    be used by two processes); the child opens its own on first use."""
    module = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    engines = getattr(getattr(module, "SqlAlchemyStore", None), "_engine_map", {}) if module else {}
    for engine in list(engines.values()):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_inherited_engines)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "experiment"


def get_or_create_experiment(client: MlflowClient, name: str, uri: str | None) -> str:
    """Id of experiment `name`, created if missing with the absolute artifact location
    ``<mlartifacts>/<name>`` (SQLite stores; servers pick their own).

    Safe when several processes create the same experiment at once: the loser of the race
    gets RESOURCE_ALREADY_EXISTS and re-reads.  A deleted experiment of that name raises
    `ConfigError` (runs logged there would be invisible)."""
    from mlflow.exceptions import MlflowException

    if not name or not name.strip():
        raise ConfigError("experiment name is empty")
    exp = with_retry(lambda: client.get_experiment_by_name(name), "get experiment")
    if exp is None:
        root = artifact_root_for(uri)
        location = f"{root}/{_slug(name)}" if root else None
        try:
            return with_retry(lambda: client.create_experiment(name, artifact_location=location),
                              "create experiment")
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        exp = with_retry(lambda: client.get_experiment_by_name(name), "get experiment")
        if exp is None:
            raise TrackingError(f"experiment '{name}' reported as existing but cannot be read")
    if exp.lifecycle_stage == "deleted":
        raise ConfigError(f"experiment '{name}' is deleted in {uri}; restore it in the MLflow UI or "
                          f"purge it with `mlflow gc --backend-store-uri {uri}`")
    return exp.experiment_id


def last_logged_step(client: MlflowClient, run_id: str, key: str) -> int | None:
    """Largest step logged for metric `key` of a run, None when it has none; a resumed learner
    continues after it so no step appears twice."""
    history = with_retry(lambda: client.get_metric_history(run_id, key), "read metric history")
    return max((m.step for m in history), default=None)


def _check_key(key: str, what: str) -> str:
    """Reject names MLflow would reject, at the call site rather than in a later batch write
    (a batch with one bad name is refused as a whole)."""
    key = str(key)
    if (len(key) > MAX_KEY_LENGTH or not _KEY_RE.match(key) or posixpath.normpath(key) != key
            or key.startswith(("/", ".."))):
        raise ValueError(f"invalid MLflow {what} name {key!r}: use at most {MAX_KEY_LENGTH} letters, "
                         "digits, _ - . / : or spaces, without empty or relative path parts")
    return key


def _chunks(items: list[T], size: int) -> Iterable[list[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# ---- run tracker -----------------------------------------------------------------------------
class RunTracker:
    """One MLflow run written by the learner process (agents report through the learner).

    Args:
        uri: tracking URI, None for the repo's ``mlflow.db``; see `resolve_tracking_uri`.
        experiment: experiment name, created if missing (`get_or_create_experiment`).
        run_name: display name of a new run; MLflow picks one when None.
        tags: tags of the run, set at creation (and again when resuming).
        parent_run_id: makes this a child run (tag ``mlflow.parentRunId``), as sweeps do.
        resume_run_id: reopen this run (status RUNNING) instead of creating one.  Params must
            match what it logged; metric points at or before a key's last logged step are
            dropped, so a learner restarted from an older checkpoint appends without
            duplicating steps.
        flush_every_s: buffered metrics are written once this old (checked on each call).
        max_buffer: ... or once this many points are waiting.
        retry_timeout_s: how long one write retries transient errors before `TrackingError`.

    Not thread-safe: one learner thread logs.  Usable as a context manager: a clean exit ends FINISHED, Ctrl-C ends KILLED, an exception
    ends FAILED with the error as ``dqt.failure_reason``.
    """

    def __init__(self, uri: str | None, experiment: str, run_name: str | None = None,
                 tags: Mapping[str, Any] | None = None, parent_run_id: str | None = None,
                 resume_run_id: str | None = None, *, flush_every_s: float = 5.0,
                 max_buffer: int = MAX_METRICS_PER_BATCH, retry_timeout_s: float = 60.0) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = ensure_store(uri)  # first: schema creation must not race with other processes
        self.client = MlflowClient(tracking_uri=self.uri)
        self.flush_every_s = flush_every_s
        self.max_buffer = max(1, min(max_buffer, MAX_METRICS_PER_BATCH))
        self.retry_timeout_s = retry_timeout_s
        self.retries = 0  # transient errors absorbed so far (observability, tests)
        self.skipped_points = 0  # points dropped on resume because their step was logged
        self._buffer: list[Metric] = []
        self._last_flush = time.monotonic()
        self._ended = False
        self._resume_floor: dict[str, int] = {}
        self._resumed = resume_run_id is not None
        user_tags = {str(k): v for k, v in (tags or {}).items()}
        if parent_run_id:
            user_tags[PARENT_RUN_TAG] = parent_run_id

        if resume_run_id:
            self.run_id = self._reopen(resume_run_id, experiment)
            self.experiment_id = self._run.info.experiment_id
            if user_tags:
                self.set_tags(user_tags)
        else:
            from mlflow.tracking.context.registry import resolve_tags

            self.experiment_id = get_or_create_experiment(self.client, experiment, self.uri)
            # resolve_tags adds what mlflow.start_run would: user, source name, git commit
            all_tags = {k: self._tag_value(v) for k, v in resolve_tags(user_tags).items()}
            run = self._retry(lambda: self.client.create_run(self.experiment_id, run_name=run_name,
                                                             tags=all_tags), "create run")
            self.run_id = run.info.run_id

    # ---- helpers ----
    def _retry(self, fn: Callable[[], T], what: str) -> T:
        def count(_exc: BaseException) -> None:
            self.retries += 1
        return with_retry(fn, what, self.retry_timeout_s, on_retry=count)

    @staticmethod
    def _tag_value(value: Any) -> str:
        return str(value)[:MAX_TAG_VAL_LENGTH]

    def _reopen(self, run_id: str, experiment: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            self._run = self._retry(lambda: self.client.get_run(run_id), "get run")
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise ConfigError(f"--resume {run_id}: no such run in {self.uri}") from None
            raise
        exp = self._retry(lambda: self.client.get_experiment(self._run.info.experiment_id), "get experiment")
        if self._run.info.lifecycle_stage == "deleted":
            raise ConfigError(f"--resume {run_id}: the run is deleted")
        if exp.name != experiment:
            raise ConfigError(f"--resume {run_id}: the run belongs to experiment '{exp.name}', "
                              f"not '{experiment}'")
        self._retry(lambda: self.client.update_run(run_id, status="RUNNING"), "reopen run")
        for key in self._run.data.metrics:
            step = last_logged_step(self.client, run_id, key)
            if step is not None:
                self._resume_floor[key] = step
        return run_id

    # ---- params and tags ----
    def log_params(self, flat: Mapping[str, Any]) -> None:
        """Log the flattened run config, 100 params per batch, values cut to MLflow's limit.

        Params a resumed run already holds with the same value are skipped; a different value
        raises `ConfigError` (MLflow forbids changing a param, and the run would lie)."""
        from mlflow.entities import Param

        params = {_check_key(k, "param"): str(v)[:MAX_PARAM_VAL_LENGTH] for k, v in flat.items()}
        if self._resumed:
            logged = self._retry(lambda: self.client.get_run(self.run_id), "get run").data.params
            changed = [k for k, v in params.items() if k in logged and logged[k] != v]
            if changed:
                k = changed[0]
                raise ConfigError(f"--resume {self.run_id}: param '{k}' was {logged[k]!r}, now "
                                  f"{params[k]!r} ({len(changed)} changed); resume with the same config")
            params = {k: v for k, v in params.items() if k not in logged}
        items = [Param(k, v) for k, v in params.items()]
        for chunk in _chunks(items, MAX_PARAMS_TAGS_PER_BATCH):
            self._retry(lambda c=chunk: self.client.log_batch(self.run_id, params=c, synchronous=True),
                        "log params")

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set (or overwrite) run tags, 100 per batch."""
        from mlflow.entities import RunTag

        items = [RunTag(_check_key(k, "tag"), self._tag_value(v)) for k, v in tags.items()]
        for chunk in _chunks(items, MAX_PARAMS_TAGS_PER_BATCH):
            self._retry(lambda c=chunk: self.client.log_batch(self.run_id, tags=c, synchronous=True),
                        "set tags")

    # ---- metrics ----
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Buffer one point per metric at `step` (timestamped now); writes happen in `flush`,
        called here when the buffer is full or `flush_every_s` old.  NaN is kept (MLflow
        stores it); a value that is not a number raises at once."""
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        step = int(step)
        for key, value in metrics.items():
            key = _check_key(key, "metric")
            if step <= self._resume_floor.get(key, -math.inf):
                self.skipped_points += 1
                continue
            self._buffer.append(Metric(key, float(value), now_ms, step))
        if len(self._buffer) >= self.max_buffer or time.monotonic() - self._last_flush >= self.flush_every_s:
            try:
                self.flush()
            except TrackingError as exc:
                # Keep training through a store outage: the points stay buffered for the next
                # flush; `end` raises if they still cannot be written.
                log.warning("MLflow unavailable, %d metric points kept for later: %s", len(self._buffer), exc)

    @property
    def pending(self) -> int:
        """Metric points buffered and not yet written."""
        return len(self._buffer)

    def flush(self) -> None:
        """Write every buffered point, <= 1000 per ``log_batch``; each batch retries transient
        errors for `retry_timeout_s` and leaves the buffer only once written, so a failure
        (`TrackingError`) loses nothing."""
        self._last_flush = time.monotonic()
        while self._buffer:
            chunk = self._buffer[:MAX_METRICS_PER_BATCH]
            self._retry(lambda c=chunk: self.client.log_batch(self.run_id, metrics=c, synchronous=True),
                        "log metrics")
            del self._buffer[:len(chunk)]
        self._last_flush = time.monotonic()

    # ---- artifacts ----
    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Copy a file, or a folder (as ``<artifact_path>/<folder name>``), to the run's artifacts."""
        if not Path(path).exists():
            raise FileNotFoundError(f"artifact {path} does not exist")
        self._retry(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path), "log artifact")

    def log_text(self, text: str, artifact_file: str) -> None:
        """Write `text` as the artifact `artifact_file` (e.g. ``config.yaml``)."""
        self._retry(lambda: self.client.log_text(self.run_id, text, artifact_file), "log text")

    # ---- end ----
    def end(self, status: str = "FINISHED", reason: str | None = None) -> None:
        """Flush, tag ``dqt.failure_reason`` when `reason` is given, terminate the run with
        `status` (FINISHED, FAILED or KILLED) and `settle_store`.  Idempotent; a failed flush
        still terminates the run, then raises."""
        if status not in RUN_STATUSES:
            raise ValueError(f"run status must be one of {RUN_STATUSES}, not {status!r}")
        if self._ended:
            return
        flush_error: TrackingError | None = None
        try:
            self.flush()
        except TrackingError as exc:
            flush_error = exc
        if reason:
            self.set_tags({FAILURE_REASON_TAG: reason})
        self._retry(lambda: self.client.set_terminated(self.run_id, status=status), "end run")
        self._ended = True
        settle_store(self.uri)  # leave mlflow.db complete on its own, even if the process os._exits next
        if flush_error is not None:
            raise flush_error

    @property
    def ended(self) -> bool:
        return self._ended

    def __enter__(self) -> RunTracker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: Any) -> None:
        if exc_type is None:
            self.end("FINISHED")
            return
        status = "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        try:  # never hide the training error behind a tracking error
            self.end(status, f"{exc_type.__name__}: {exc}" if status == "FAILED" else "interrupted")
        except Exception:
            log.exception("could not end MLflow run %s", self.run_id)


# ---- UI --------------------------------------------------------------------------------------
def ui_command(uri: str, host: str = "127.0.0.1", port: int = 5000, workers: int = 1,
               allowed_hosts: str | None = None) -> list[str]:
    """The ``mlflow server`` command line `serve_ui` runs (`uri` already resolved).

    For SQLite stores the artifact root goes both to ``--default-artifact-root`` (experiments
    created in the UI) and ``--artifacts-destination`` (proxied uploads); runs logged by
    `RunTracker` carry absolute ``file://`` artifact URIs the server reads directly.  MLflow 3
    checks the Host header: localhost and private addresses pass by default; a public name
    needs `allowed_hosts`."""
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
           "--host", host, "--port", str(port), "--workers", str(workers)]
    root = artifact_root_for(uri)
    if root:
        cmd += ["--default-artifact-root", root, "--artifacts-destination", root]
    if allowed_hosts:
        cmd += ["--allowed-hosts", allowed_hosts]
    return cmd


def serve_ui(uri: str | None, host: str = "127.0.0.1", port: int = 5000, *, workers: int = 1,
             allowed_hosts: str | None = None) -> int:
    """Run the MLflow UI/server on the tracking store until Ctrl-C (or SIGTERM).

    Returns the server's exit code, 0 when stopped by Ctrl-C/SIGTERM.  A bad URI, a server URI
    (it has its own UI) or a busy port raises `ConfigError` before anything starts.  One worker by default: the build machines
    have 2 cores, and the UI serves one person.
    """
    resolved = ensure_store(uri)  # server workers would otherwise race to create a new schema
    if resolved.lower().startswith(("http://", "https://")):
        raise ConfigError(f"tracking URI '{resolved}' is already an MLflow server: open it in a browser")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot serve the UI on {host}:{port}: {exc.strerror}; pick another --port") from None
    # Own process group: we decide when it stops, and can stop the uvicorn grandchildren too.
    # MLflow's job runner (GenAI scorers, trace roll-ups) is a second heavy process the training
    # UI never uses; users who want it set the variable themselves.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    proc = subprocess.Popen(ui_command(resolved, host, port, workers, allowed_hosts),
                            env=env, start_new_session=True)
    print(f"MLflow UI on http://{host}:{port} (store {resolved}); Ctrl-C stops it", flush=True)
    previous = None
    if threading.current_thread() is threading.main_thread():
        def on_term(_signum: int, _frame: Any) -> None:
            raise KeyboardInterrupt
        previous = signal.signal(signal.SIGTERM, on_term)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        _stop_group(proc)
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop_group(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM the server's process group (MLflow forwards it to uvicorn), SIGKILL after `grace_s`."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            # The group may outlive its leader (a worker still shutting down): give it the grace.
            end = time.monotonic() + wait_s
            while time.monotonic() < end:
                os.killpg(proc.pid, 0)
                time.sleep(0.1)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
