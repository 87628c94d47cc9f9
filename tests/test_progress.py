"""Progress displays: whole plain lines in a log, a tqdm bar on a terminal."""

from __future__ import annotations

import io
import math
import os

import pytest

from dqt.core.running.progress import Progress, StatusBar, duration
from dqt.sweeps.launch import EXIT_INTERRUPTED, EXIT_OK, SweepProgress


class FakeTty(io.StringIO):
    """What a terminal looks like to the displays: a stream whose isatty() is True."""

    def isatty(self) -> bool:
        return True


def frames(text: str) -> list[str]:
    """The successive states of a redrawn terminal line (tqdm starts each with a carriage return)."""
    return [f.strip() for line in text.split("\n") for f in line.split("\r") if f.strip()]


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (9.9, "9s"), (250, "4m10s"), (3600, "1h00m"), (3 * 3600 + 5 * 60 + 7, "3h05m"),
    (math.inf, "?"), (math.nan, "?"),
])
def test_duration(seconds, text):
    assert duration(seconds) == text


# ---- the trainer's display -------------------------------------------------------------
def test_run_progress_plain_lines_in_a_log():
    out = io.StringIO()
    progress = Progress(300_000, stream=out, every_s=10.0)
    progress.update(12_000, 850.0, 420.5, 0.3)
    progress.update(13_000, 850.0, 420.5, 0.3)  # within every_s: not printed
    progress.update(300_000, 850.0, 420.5, None, force=True)
    progress.close()
    assert out.getvalue().splitlines() == [
        "steps 12,000/300,000 (4%) | eval success 0.30 | 850 env steps/s | 420.5 updates/s | ETA 5m38s",
        "steps 300,000/300,000 (100%) | eval success - | 850 env steps/s | 420.5 updates/s | ETA 0s",
    ]
    assert "\r" not in out.getvalue() and "\033" not in out.getvalue()


def test_run_progress_unknown_speed_has_an_unknown_eta():
    out = io.StringIO()
    Progress(1_000, stream=out).update(0, 0.0, 0.0, None)
    assert out.getvalue().endswith("| 0 env steps/s | 0.0 updates/s | ETA ?\n")


def test_run_progress_disabled_writes_nothing():
    out = FakeTty()
    progress = Progress(1_000, enabled=False, stream=out)
    progress.update(500, 100.0, 10.0, 0.5, force=True)
    progress.close()
    assert out.getvalue() == ""


def test_run_progress_is_a_tqdm_bar_on_a_terminal():
    out = FakeTty()
    progress = Progress(300_000, stream=out)
    assert progress.tty
    progress.update(12_000, 850.0, 420.5, 0.3)
    progress.close()
    last = frames(out.getvalue())[-1]
    assert last.startswith("steps 12,000/300,000   4%|"), last
    assert "[00:00, ETA 5m38s | eval success 0.30 | 850 env steps/s | 420.5 updates/s]" in last
    assert out.getvalue().startswith("\r") and out.getvalue().endswith("\n")  # redrawn in place, left on close


def test_a_terminal_that_reports_no_size_still_shows_the_bar():
    master, replica = os.openpty()  # a fresh pty reports 0 columns and 0 rows
    try:
        with os.fdopen(replica, "w") as stream:
            progress = Progress(600, stream=stream)
            progress.update(100, 50.0, 2.0, 0.1)
            progress.close()
        chunks = []
        while True:  # everything written, however many writes it took: the replica is closed, so EIO ends it
            try:
                data = os.read(master, 1 << 16)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        out = b"".join(chunks).decode(errors="replace")
    finally:
        os.close(master)
    assert "steps 100/600  17%|" in out and "ETA 10s | eval success 0.10" in out, out


def test_status_bar_is_inactive_off_a_terminal():
    out = io.StringIO()
    bar = StatusBar(out, 10, "x", "{desc}")
    bar.show(3, "y")
    bar.event("z")
    bar.close()
    assert not bar.active and out.getvalue() == ""


# ---- the sweep's display ---------------------------------------------------------------
def test_sweep_progress_plain_lines_in_a_log():
    out = io.StringIO()
    progress = SweepProgress("noise[quick]", 4, done=1, jobs=2, stream=out)
    progress.started("a")
    progress.started("b")
    progress.ended("a", EXIT_OK, 250.0, None)
    progress.ended("b", 1, 3.0, "b.log")
    progress.render(force=True)  # no redraw in a log
    progress.close()
    assert out.getvalue().splitlines() == [
        "start  a  [noise[quick] 1/4 done, 0 failed, 1 running]",
        "start  b  [noise[quick] 1/4 done, 0 failed, 2 running]",
        "done   a (4m10s)  [noise[quick] 2/4 done, 0 failed, 1 running, ETA 4m10s]",
        "FAILED (exit 1) b (3s); log: b.log  [noise[quick] 2/4 done, 1 failed, 0 running, ETA 4m10s]",
    ]


def test_sweep_progress_line_counts_points_on_other_workers():
    progress = SweepProgress("s", 10, done=2, stream=io.StringIO())
    progress.elsewhere = 3
    progress.ended("x", EXIT_INTERRUPTED, 5.0, None)
    assert progress.line() == "s 2/10 done, 1 failed, 0 running, 3 on other workers, ETA 20s"


def test_sweep_progress_is_a_tqdm_bar_on_a_terminal():
    out = FakeTty()
    progress = SweepProgress("noise[quick]", 4, done=1, jobs=2, stream=out)
    assert progress.tty
    progress.started("a")
    progress.ended("a", EXIT_OK, 250.0, None)
    progress.done += 1  # the runner counts points finished elsewhere this way
    progress.render(force=True)
    progress.close()
    shown = frames(out.getvalue())
    assert "start  a" in shown and "done   a (4m10s)" in shown  # events print above the bar
    last = shown[-1]
    assert last.startswith("noise[quick] 3/4 done |") and "|" in last[len("noise[quick] 3/4 done |"):], last
    assert last.endswith(", 0 failed, 0 running, ETA 4m10s]"), last
    assert out.getvalue().endswith("\n")
