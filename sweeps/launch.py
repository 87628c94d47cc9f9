"""Run points as `dqt train` child processes, `jobs` at a time, with a progress line on stderr.

Each point runs as its own process group, so Ctrl-C or SIGTERM of the sweep reaches every
`dqt train` (which ends its run KILLED) and, after a grace period, SIGKILL takes the whole
group; nothing is left behind.  What to run next and what to do when a point ends is the
caller's business (`Job.on_start`, `Job.on_exit`, the `next_job` callback of `run_jobs`).
"""

from __future__ import annotations

import ctypes
import enum
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from dqt.core.running.progress import StatusBar, duration
from dqt.sweeps.expand import Point

TRAIN_CMD: tuple[str, ...] = (sys.executable, "-m", "dqt.cli", "train")
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def exit_code(interrupted: bool, failed: bool) -> int:
    """The sweep's exit status: 130 when stopped, 1 when any point failed, else 0."""
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failed else EXIT_OK


class Later(enum.Enum):
    """What `next_job` returns when nothing can start now but something may later (points
    running on other workers, whose claims may yet be offered again)."""

    LATER = "later"


LATER = Later.LATER
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: SIGTERM when the sweep that started it dies, even by SIGKILL, so no `dqt
    train` runs on unclaimed after its worker (its run ends KILLED with a checkpoint, and the
    worker that takes the claim over resumes it)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the heartbeat alone tells
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
                                    stderr=subprocess.STDOUT, process_group=0, preexec_fn=_die_with_parent,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})


def stop_group(pid: int, sig: int) -> None:
    """Send `sig` to the process group a `dqt train` leads (it and its agents)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    stop_group(proc.pid, sig)


def run_jobs(next_job: Callable[[], Job | Later | None], launcher: Launcher, jobs: int, progress: SweepProgress,
             grace_s: float = 30.0) -> bool:
    """Keep up to `jobs` points running until `next_job` has nothing left (None; `LATER` =
    nothing now, ask again); True if interrupted.

    The first SIGINT/SIGTERM stops starting points and passes the signal to every running
    `dqt train` (its run ends KILLED); after `grace_s`, or at a second signal, SIGKILL. An
    error of this loop's own stops the runs the same way (SIGTERM, so each keeps a checkpoint,
    then SIGKILL after `grace_s`) before it propagates.
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
    try:
        while True:
            exhausted = False
            while stop["signal"] is None and len(running) < jobs:
                job = next_job()
                if job is None:
                    exhausted = True
                    break
                if job is LATER:
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
            progress.render()
            time.sleep(0.2)
    finally:
        _stop_all(running, grace_s)  # only on an exception of our own: leave no orphan, keep checkpoints
        for s, handler in old.items():
            signal.signal(s, handler)


def _stop_all(procs: Collection[subprocess.Popen[bytes]], grace_s: float) -> None:
    """SIGTERM every run (it ends KILLED with a checkpoint), SIGKILL what is left after `grace_s`."""
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for proc in procs:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


# ======================================================================================
# Progress on stderr
# ======================================================================================
class SweepProgress:
    """``noise[quick] 3/18 done, 1 failed, 2 running, ETA 4m10s`` on stderr.

    A tqdm bar on a terminal, with each point that starts or ends printed above it; in a
    log, that line appended to the line of each point that starts or ends.
    """

    BAR_FORMAT = "{desc} |{bar}| [{elapsed}{postfix}]"

    def __init__(self, label: str, total: int, done: int = 0, jobs: int = 1, stream: TextIO | None = None):
        self.label, self.total, self.done, self.jobs = label, total, done, jobs
        self.failed = 0
        self.elsewhere = 0
        self.running: set[str] = set()
        self.seconds: list[float] = []
        self.ok_seconds: list[float] = []
        self.stream = stream or sys.stderr
        self.bar = StatusBar(self.stream, total, self._desc(), self.BAR_FORMAT, initial=done)
        self.tty = self.bar.active
        self._drawn = -math.inf

    def status(self) -> str:
        """``1 failed, 2 running, ETA 4m10s``: the line after the done count."""
        left = self.total - self.done - self.failed - self.elsewhere
        eta = ""
        # Failures are often quick, so they would make the estimate optimistic.
        seconds = self.ok_seconds or self.seconds
        if seconds and left > 0:
            per = sum(seconds) / len(seconds)
            eta = f", ETA {duration(per * left / max(1, min(self.jobs, left)))}"
        other = f", {self.elsewhere} on other workers" if self.elsewhere else ""
        return f"{self.failed} failed, {len(self.running)} running{other}{eta}"

    def _desc(self) -> str:
        return f"{self.label} {self.done}/{self.total} done"

    def line(self) -> str:
        return f"{self._desc()}, {self.status()}"

    def started(self, name: str) -> None:
        self.running.add(name)
        self._say(f"start  {name}")

    def ended(self, name: str, code: int, seconds: float, log: Path | None) -> None:
        self.running.discard(name)
        self.seconds.append(seconds)
        if code == EXIT_OK:
            self.done += 1
            self.ok_seconds.append(seconds)
            self._say(f"done   {name} ({duration(seconds)})")
        else:
            self.failed += 1
            what = "KILLED" if code == EXIT_INTERRUPTED else f"FAILED (exit {code})"
            self._say(f"{what} {name} ({duration(seconds)}); log: {log}")

    def _say(self, event: str) -> None:
        if self.tty:  # the event scrolls up; the bar is redrawn below it
            self.bar.event(event)
            self.render(force=True)
        else:
            print(f"{event}  [{self.line()}]", file=self.stream, flush=True)

    def render(self, force: bool = False) -> None:
        if not self.tty or (not force and time.monotonic() - self._drawn < 1.0):
            return
        self._drawn = time.monotonic()
        self.bar.show(self.done, self.status(), desc=self._desc())

    def close(self) -> None:
        self.bar.close()
