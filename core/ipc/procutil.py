"""Helpers that keep child processes of a run from outliving it."""

from __future__ import annotations

import ctypes
import os
import signal
import sys


def become_child_of_run(parent_pid: int) -> None:
    """Called first thing in every agent/eval process.

    Ctrl-C reaches the whole process group; only the learner decides how the run ends, so
    children ignore SIGINT and are stopped by it. If the learner dies without cleaning up
    (SIGKILL), the kernel kills the child too (Linux PR_SET_PDEATHSIG), so no orphan is left.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except OSError:
        pass
    if os.getppid() != parent_pid:  # the learner died before prctl took effect
        exit_now(1)


def parent_alive(parent_pid: int) -> bool:
    return os.getppid() == parent_pid


def settle_tracking() -> None:
    """What `atexit` would have done for MLflow: settle every SQLite store this process opened
    (`core.tracking.settle_stores`: every committed write in ``mlflow.db`` itself, no WAL
    left beside it).  Call it before any ``os._exit``; a no-op in a process that never touched
    a store, and it never imports MLflow nor raises."""
    tracking = sys.modules.get("dqt.core.tracking")
    if tracking is not None:
        try:
            tracking.settle_stores()
        except Exception:  # noqa: BLE001 - leaving must not fail; the WAL still holds the data
            pass


def exit_now(code: int = 0) -> None:
    """End a process without interpreter teardown (seconds with torch and MuJoCo loaded).

    ``os._exit`` skips `atexit`, so MLflow stores are settled first (`settle_tracking`); in
    agent and eval children, which never write to MLflow, that is a no-op."""
    settle_tracking()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
