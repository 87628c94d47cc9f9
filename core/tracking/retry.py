"""Which tracking errors go away when retried, and retrying them with backoff.

MLflow's SQLite sessions wait up to 20 s for the lock (``PRAGMA busy_timeout = 20000``);
longer waits, and lock upgrades SQLite refuses at once to avoid deadlock, still surface as
``database is locked`` (an `MlflowException` with error code ``TEMPORARILY_UNAVAILABLE``).
MLflow itself only retries Postgres deadlocks, so every write of this package goes through
`with_retry`.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED"}
_TRANSIENT_TEXT = ("database is locked", "database is busy", "database table is locked",
                   "temporarily unavailable", "max retries exceeded", "connection refused",
                   "connection reset", "connection aborted", "timed out", "failed with exception")


class TrackingError(RuntimeError):
    """A tracking call still failed after retrying transient errors for the whole deadline."""


def is_transient(exc: BaseException) -> bool:
    """True for errors that go away when retried: SQLite lock contention, a busy or restarting
    tracking server or database, dropped connections.  Validation errors and missing runs are
    permanent.  A wrapper (Optuna's ``StorageInternalError`` around SQLAlchemy's
    ``OperationalError``) is judged by what it wraps."""
    seen = 0
    while exc is not None and seen < 8:
        if _transient_itself(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _transient_itself(exc: BaseException) -> bool:
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


def first_line(exc: BaseException) -> str:
    """The first line of an error's message, or its type when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def with_retry(fn: Callable[[], T], what: str, timeout_s: float = 60.0,
               on_retry: Callable[[BaseException], None] | None = None, service: str = "MLflow") -> T:
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
                raise TrackingError(f"{service} {what} still failing after {timeout_s:.0f} s: {first_line(exc)}") from exc
            if on_retry is not None:
                on_retry(exc)
            log.debug("%s %s: transient error, retrying in %.2f s: %s", service, what, pause, exc)
            time.sleep(pause)
            delay = min(delay * 2.0, 2.0)
