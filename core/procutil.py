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
        os._exit(1)


def parent_alive(parent_pid: int) -> bool:
    return os.getppid() == parent_pid


def exit_now(code: int = 0) -> None:
    """End a child process without interpreter teardown (seconds with torch and MuJoCo loaded);
    the learner owns every shared resource, so there is nothing left to clean up."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
