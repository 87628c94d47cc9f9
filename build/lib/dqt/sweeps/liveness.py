"""Who holds a claim, and whether they still work on it: identities, PID namespaces, heartbeats.

Liveness trusts neither hostnames nor PIDs: two containers often share a hostname, and a PID
means something only inside its PID namespace.  Each worker has its own identity
(`Owner.worker`) and writes a heartbeat read from the claim storage's own clock
(`sweeps.claims.StorageClock`, so hosts' clocks need not agree); a claim whose heartbeat is
older than the grace period is dead (`claim_alive`).  Only where the claim's PID namespace is
this process's own (same boot, same namespace) does the OS answer at once whether its worker
or `dqt train` child still runs.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = socket.gethostname()


# ======================================================================================
# Who is working on a point: a worker identity, and where its PID means something
# ======================================================================================
def _pid_space() -> str:
    """This boot and PID namespace: PIDs recorded under another value mean nothing here."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid').strip('pid:[]')}"
    except OSError:
        return ""


PID_SPACE = _pid_space()
# Unique per worker process unless the user names it (a Slurm array task, an SSH host's slot).
WORKER_ID = os.environ.get("DQT_WORKER_ID") or f"{HOST}-{uuid.uuid4().hex[:8]}"
_FIELDS = 5


@dataclass(frozen=True)
class Owner:
    """A process that can hold a claim; `token` is what the claim (and a parent run) stores.

    Attributes:
        worker: The worker's identity; one per `dqt sweep` process.
        host: Hostname, for people reading the claim; never used to judge liveness.
        pid: Process id inside `space`.
        started: Its start time in clock ticks since boot (PIDs are reused).
        space: Boot id and PID namespace the pid belongs to ("" = unknown).
    """

    worker: str
    host: str
    pid: int
    started: str = ""
    space: str = ""

    @classmethod
    def of(cls, pid: int | None = None, worker: str | None = None) -> Owner:
        pid = os.getpid() if pid is None else pid
        return cls(worker or WORKER_ID, HOST, pid, _start_time(pid), PID_SPACE)

    @classmethod
    def parse(cls, token: Any) -> Owner | None:
        if not isinstance(token, str):
            return None
        fields = token.split("|")
        if len(fields) == 3:  # host|pid|started, written before worker identities: no space known
            fields = [fields[0], fields[0], fields[1], fields[2], ""]
        if len(fields) != _FIELDS or not fields[2].isdigit():
            return None
        worker, host, pid, started, space = fields
        return cls(worker, host, int(pid), started, space)

    @property
    def token(self) -> str:
        return "|".join([self.worker, self.host, str(self.pid), self.started, self.space])

    def alive(self) -> bool | None:
        """True/False for a process of this PID namespace; None elsewhere (unknowable here)."""
        if not self.space or self.space != PID_SPACE:
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
    return {"dqt.worker": owner.token, "dqt.worker_id": owner.worker, "dqt.host": owner.host,
            "dqt.pid": str(owner.pid)}


def parent_owner(tags: dict[str, str]) -> Owner | None:
    """The process that started a parent run (its ``dqt.worker`` token); None when not recorded."""
    return Owner.parse(tags.get("dqt.worker"))


def _start_time(pid: int) -> str:
    """Clock ticks since boot at which `pid` started ("Z" for a zombie, "" without /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name (field 2) may hold spaces or ')', so split after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return "Z" if fields[0] in ("Z", "X") else fields[19]


# A live process whose heartbeat is this many grace periods old is hung (its heartbeat thread
# beats whatever its main loop does): its claim is dead after all.
HUNG_AFTER_GRACES = 3.0


def claim_alive(attrs: dict[str, Any], started: dt.datetime | None, stale_after_s: float, now: float) -> bool:
    """Is someone still working on this claim?

    The grace period is the claim's own (``stale_after``, recorded by the worker that made
    it), so a reaper started with a shorter one cannot take a healthy claim; `stale_after_s`
    serves claims that recorded none.  Inside the claim's own PID namespace the OS answers:
    its worker or its `dqt train` child is alive (a child outliving a SIGKILLed sweep still
    counts, so its point is not started twice) -- unless the heartbeat is older than
    `HUNG_AFTER_GRACES` grace periods, which a worker whose heartbeat thread runs never lets
    happen: that process is hung.  Anywhere else only the heartbeat can tell: a claim whose
    heartbeat (storage clock, `now`) is older than the grace period is dead, whatever its
    hostname.
    """
    grace = float(attrs.get("stale_after", stale_after_s))
    beat = attrs.get("heartbeat")
    age = now - float(beat) if beat is not None else None
    holders = [Owner.parse(attrs.get("owner")), Owner.parse(attrs.get("child"))]
    verdicts = [h.alive() for h in holders if h is not None]
    if any(v is True for v in verdicts):
        return age is None or age < HUNG_AFTER_GRACES * grace
    if verdicts and all(v is False for v in verdicts):
        return False
    if age is None:  # claimed a moment ago and its first heartbeat not written yet
        return started is not None and time.time() - started.timestamp() < grace
    return age < grace
