"""The tracking store as many processes share it: set-up, journal mode, settling on exit.

SQLite facts this module is built on (MLflow 3.x, checked in ``sqlalchemy_store.py`` and
``store/db/utils.py``):

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
  `ensure_store` converts a store left in WAL mode (that checkpoints it and deletes
  ``-wal``/``-shm``); while another process still holds it in WAL mode the conversion waits
  for a later command, and `settle_store` checkpoints the WAL (``PRAGMA
  wal_checkpoint(TRUNCATE)``) whenever a run ends and at interpreter exit.
- SQLite connections must not cross ``fork()``: a child drops the pooled connections it
  inherited (`_forget_inherited_engines`).
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from dqt.core.config import ConfigError
from dqt.core.tracking.retry import first_line, is_transient, with_retry
from dqt.core.tracking.uri import artifact_root_for, resolve_tracking_uri, sqlite_path

log = logging.getLogger(__name__)

_READY: set[str] = set()
_READY_LOCK = threading.Lock()
_WAL_STORES: set[Path] = set()  # databases put in WAL mode on request (`ensure_store(wal=True)`)
_USED: dict[Path, int] = {}  # SQLite databases this process opened or wrote -> its pid (a fork inherits the dict)
_BEFORE_SETTLE: list[Callable[[], None]] = []  # run by `settle_stores` first (writers drain their points)
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
                raise ConfigError(f"tracking URI '{resolved}': {first_line(exc)}") from None
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


def _engines() -> list:
    """This process's pooled MLflow SQLAlchemy engines (none before MLflow's store is imported)."""
    module = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    engines = getattr(getattr(module, "SqlAlchemyStore", None), "_engine_map", {}) if module else {}
    return list(engines.values())


def _dispose_engines(db: Path) -> None:
    """Close this process's idle pooled MLflow connections to `db` (reopened on next use)."""
    for engine in _engines():
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


def before_settle(hook: Callable[[], None]) -> None:
    """Run `hook` at the start of every `settle_stores` (a writer writing what it still holds)."""
    _BEFORE_SETTLE.append(hook)


def settle_stores() -> bool:
    """Write what this process's writers still hold (`before_settle` hooks), then
    `settle_store` every SQLite store this process opened or wrote (not those of a parent it
    was forked from).  Registered with `atexit`; code that leaves through ``os._exit`` calls
    it first (`core.ipc.procutil.exit_now` does).  True when all are settled; never raises."""
    for hook in _BEFORE_SETTLE:
        try:
            hook()
        except Exception as exc:  # noqa: BLE001 - a process must still end
            log.warning("could not write pending MLflow data before exit: %s", exc)
    pid = os.getpid()
    return all([settle_store(db) for db, owner in list(_USED.items()) if owner == pid])


atexit.register(settle_stores)


def _forget_inherited_engines() -> None:
    """After fork: drop the parent's pooled SQLite connections (a SQLite connection must never
    be used by two processes); the child opens its own on first use."""
    for engine in _engines():
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_inherited_engines)
