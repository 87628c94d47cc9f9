"""Execute a sweep: skip what already FINISHED, claim the rest, run each point as a `dqt train` process.

Three stores, each the authority for one thing, each behind its own module:

- **MLflow** (`sweeps.store`) says which points are done: a point is done when a run of the
  spec's experiment tagged with its ``config_hash`` and ``seed`` FINISHED.
- **Optuna storage** (`sweeps.claims`) is the claim queue shared by every worker of a sweep,
  on one host or many: each not-yet-done point is a WAITING trial that one worker claims.
- **Heartbeats** on the storage's clock (`sweeps.liveness.claim_alive`, exact by the OS inside
  one PID namespace) say whether a claim is still worked on, so a claim left by a dead worker
  is recognised and its point offered again; every worker waits while points of its sweep run
  elsewhere, and takes over any whose worker dies.

The child processes, signals and the progress line are `sweeps.launch`; this module wires
the three together (`run_sweep`) and prints the dry-run table (`dry_run`).
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from dqt.core.running.progress import duration
from dqt.core.tracking import resolve_tracking_uri
from dqt.core.version import toolkit_version
from dqt.sweeps.claims import Claim, ClaimQueue, HeartbeatThread, default_storage, redact, study_name
from dqt.sweeps.expand import Point, PointKey, config_name, run_name, short_names, varied_keys
from dqt.sweeps.launch import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    LATER,
    TRAIN_CMD,
    Job,
    Later,
    Launcher,
    SweepProgress,
    exit_code,
    run_jobs,
    stop_group,
)
from dqt.sweeps.liveness import Owner, parent_owner
from dqt.sweeps.parent import SweepParent, config_aucs, result_key, results_prefix
from dqt.sweeps.spec import Spec
from dqt.sweeps.store import STATUS_NONE, Store, StoredRun, point_status
from dqt.sweeps.ui_view import CONFIG_TAG


# ======================================================================================
# The sweep
# ======================================================================================
@dataclass
class SweepOptions:
    """How to run a sweep (the `dqt sweep` flags, plus knobs tests turn).

    Attributes:
        jobs: Points run at once by this worker.
        tracking_uri: MLflow URI; None = `dqt train`'s default.
        storage: Optuna storage of the claim queue; None = next to the MLflow store.
        worker: Only claim points others queued (a helper on another host); do not queue.
        worker_id: This worker's identity in claims; None = ``DQT_WORKER_ID`` or a fresh one.
        train_cmd: Command that trains one point (`dqt train`).
        grace_s: Seconds stopped runs get to end cleanly before SIGKILL.
        heartbeat_s: Seconds between claim heartbeats.
        stale_after_s: Grace period: a claim without a heartbeat for this long is dead.
        max_retries: A point that failed more often than this is given up (hand-backs of
            stopped runs are no failures).
        poll_s: Seconds between looks at the queue while points run on other workers.
        keep_logs: Keep the per-point config and log folder even when everything passed.
        wait_s: A `worker` started before any `dqt sweep` queued points waits this long.
        workdir: Folder for point configs and logs; None = a new temporary folder.
        stream: Progress and failure reports.
    """

    jobs: int = 1
    tracking_uri: str | None = None
    storage: str | None = None
    worker: bool = False
    worker_id: str | None = None
    train_cmd: Sequence[str] = TRAIN_CMD
    grace_s: float = 30.0
    heartbeat_s: float = 60.0
    stale_after_s: float = 600.0
    max_retries: int = 3
    poll_s: float = 5.0
    keep_logs: bool = False
    wait_s: float = 600.0
    workdir: Path | None = None
    stream: TextIO | None = None

    def make_workdir(self, prefix: str) -> Path:
        if self.workdir is None:
            return Path(tempfile.mkdtemp(prefix=prefix))
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self.workdir

    def clean_up(self, workdir: Path, kept_because: str | None, stream: TextIO) -> None:
        """Remove the per-point configs and logs, unless something failed (`kept_because` names
        what is kept), the caller chose the folder, or `keep_logs`."""
        if kept_because is not None:
            print(f"  logs and {kept_because} kept in {workdir}", file=stream)
        elif not self.keep_logs and self.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def point_tags(spec: Spec, owner: Owner, point: Point, keys: list[str], **extra: str) -> dict[str, str]:
    """The tags every `dqt train` of a sweep gets: which sweep and profile, that it is a point,
    which worker ran it (grid and search alike), and ``dqt.config``, its configuration's name
    without the seed (``std=10 robust=median``): what the MLflow UI's "Group by" folds seeds by."""
    return {"sweep": spec.name, "profile": spec.profile or "", "dqt.role": "point", "dqt.worker": owner.token,
            CONFIG_TAG: config_name(point, keys) or point.config_hash, **extra}


@dataclass
class SweepResult:
    """What one invocation did; `exit_code` is the `dqt sweep` exit status: 130 when stopped,
    1 when a point of the spec is left unfinished (whichever worker's it was), else 0.

    Attributes:
        failed: every failed attempt this worker ran (a retried point that then finished too).
        handed_back: points whose run this worker stopped and handed back (a signal).
        lost: points whose claim a peer reaped meanwhile (this worker was judged dead); their
            runs were stopped and the peers run them.
        unfinished: at the end, the spec's points not FINISHED in the store, with why.
    """

    total: int
    already: int = 0
    finished: list[Point] = field(default_factory=list)
    failed: list[tuple[Point, int, Path | None]] = field(default_factory=list)
    handed_back: list[Point] = field(default_factory=list)
    lost: list[Point] = field(default_factory=list)
    unfinished: list[tuple[Point, str]] = field(default_factory=list)
    elsewhere: int = 0
    interrupted: bool = False
    parent_run_id: str | None = None

    @property
    def exit_code(self) -> int:
        return exit_code(self.interrupted, bool(self.unfinished))


def run_sweep(spec: Spec, points: list[Point], opts: SweepOptions | None = None) -> SweepResult:
    """Run every point of `points` not yet FINISHED in the store, `opts.jobs` at a time."""
    return _GridSweep(spec, points, opts or SweepOptions()).run()


class _GridSweep:
    """One worker of a grid sweep: queues the spec's points (unless a `--worker` helper), claims
    them one by one, runs each as a `dqt train`, and closes each claim by how its run ended."""

    def __init__(self, spec: Spec, points: list[Point], opts: SweepOptions):
        self.spec, self.points, self.opts = spec, points, opts
        self.stream = opts.stream or sys.stderr
        uri = resolve_tracking_uri(opts.tracking_uri)
        storage = opts.storage or default_storage(uri)
        self.queue = ClaimQueue(storage, study_name("sweep", spec), opts.stale_after_s, worker=opts.worker_id,
                                max_retries=opts.max_retries)
        self.store = Store(uri, spec.name)
        end_dead_parents(self.store, spec, self.stream)
        stored = self.store.runs()
        self.finished = {p.key for p in points if point_status(stored.get(p.key, [])) == "FINISHED"}
        say_other_versions(spec, stored, self.finished, self.stream)
        if not opts.worker:
            self.queue.sync(points, self.finished)
        else:
            _wait_for_queue(self.queue, opts.wait_s, self.stream)
        self.wanted = {p.key: p for p in points}
        self.keys = varied_keys(points)
        self.result = SweepResult(total=len(points), already=len(self.finished))
        self.progress = SweepProgress(spec.label, len(points), done=len(self.finished), jobs=opts.jobs,
                                      stream=self.stream)
        self.progress.elsewhere = self.queue.elsewhere(set(self.wanted) - self.finished)
        self.workdir = opts.make_workdir(f"dqt-sweep-{spec.name}-")
        self.active: dict[int, tuple[Claim, int]] = {}  # trial id -> (claim, its `dqt train` pid)
        self.lock = threading.Lock()  # `active` is read by the heartbeat thread
        self.lost: set[int] = set()  # claims a peer reaped (it judged this worker dead): their runs are stopped
        # A point claimed again while our own, reaped run of it is still stopping: it starts once that has exited
        self.waiting: tuple[Point, Claim] | None = None
        self.next_poll = 0.0
        self.watching = 0  # points of other workers this idle worker last said it watches
        self.parent = SweepParent(self.store, spec, self.queue.owner, "grid",
                                  params={"points": len(points), "jobs": opts.jobs, "storage": redact(storage)})

    # ---- the loop ---------------------------------------------------------------------
    def run(self) -> SweepResult:
        launcher = Launcher(self.spec.name, self.store.uri, self.workdir, self.parent, self.opts.train_cmd)
        beats = HeartbeatThread(self.beat, self.opts.heartbeat_s,
                                log=lambda line: print(f"{self.spec.label}: {line}", file=self.stream))
        beats.start()
        try:
            self.result.interrupted = run_jobs(self.next_job, launcher, self.opts.jobs, self.progress,
                                               self.opts.grace_s)
        finally:
            beats.stop()
            self.progress.close()
            for claim in self.claims():  # only after an error of our own: its runs were stopped with a checkpoint
                self.queue.release(claim, "the sweep process failed")
        result = self.result
        result.elsewhere = self.queue.elsewhere(self.not_done())
        result.unfinished = unfinished_points(self.points, self.store, self.queue)
        result.parent_run_id = self.parent.run_id
        if self.parent.run_id is not None:
            _end_parent(self.parent, self.store, self.points, self.keys, result, len(self.finished))
        _report(self.spec, result, self.keys, self.stream)
        self.opts.clean_up(self.workdir, kept_because="point configs" if result.failed else None, stream=self.stream)
        return result

    def not_done(self) -> set[PointKey]:
        return set(self.wanted) - self.finished - {p.key for p in self.result.finished}

    def next_job(self) -> Job | Later | None:
        if self.waiting is not None:
            point, claim = self.waiting
            if self.running(point.key) is not None:
                return LATER
            self.waiting = None
            if claim.trial_id in self.lost:  # reaped too while it waited: a peer has it now
                self.result.lost.append(point)
            elif (job := self.start(point, claim)) is not None:
                return job
        now = time.monotonic()
        if now < self.next_poll:
            return LATER
        while (claim := self.queue.claim(self.wanted)) is not None:
            point = self.wanted[claim.key]
            old = self.running(point.key)
            if old is not None:  # a peer reaped our claim and offered the point again before our heartbeat noticed
                # nobody else holds it: stop our run with a checkpoint, then resume it under the new claim
                self.on_lost(old, signal.SIGTERM)
                self.waiting = (point, claim)
                return LATER
            if (job := self.start(point, claim)) is not None:
                return job
        # Nothing to claim. While other workers hold points of this sweep, wait: a claim whose
        # worker dies is reaped and offered again, and someone has to run it.
        self.next_poll = now + self.opts.poll_s
        if self.queue.reap():
            self.next_poll = 0.0
            return LATER
        elsewhere = self.queue.elsewhere(self.not_done())
        if elsewhere and not self.active and self.watching != elsewhere:  # said once per change
            print(f"{self.spec.label}: nothing left to claim; {elsewhere} point(s) running on other workers, "
                  "watching the queue to take over any whose worker dies", file=self.stream, flush=True)
        self.progress.elsewhere = self.watching = elsewhere
        return LATER if elsewhere else None

    def start(self, point: Point, claim: Claim) -> Job | None:
        """The job of a claimed point, or None when the point FINISHED since we looked (another
        worker, or our own run that ended as a peer reaped its claim): its claim is closed."""
        runs = self.store.point_runs(point.key)
        if point_status(runs) == "FINISHED":
            self.queue.finish(claim, ok=True, skipped="already FINISHED")
            self.result.already += 1
            self.progress.done += 1
            return None
        return self.job(point, claim, runs)

    # ---- claims and their runs --------------------------------------------------------
    def claims(self) -> list[Claim]:
        """The claims this worker holds: those of its runs, and one waiting to start."""
        waiting = self.waiting  # (read once: the main loop may clear it meanwhile)
        with self.lock:
            held = [claim for claim, _ in self.active.values()]
        return held + [waiting[1]] if waiting is not None else held

    def running(self, key: PointKey) -> Claim | None:
        """The claim of this worker's run of point `key`, while one runs."""
        with self.lock:
            return next((claim for claim, _ in self.active.values() if claim.key == key), None)

    def beat(self) -> None:
        """The heartbeat thread's work: beat for every claim held, stop the runs of lost ones."""
        held = self.claims()
        for claim in self.queue.heartbeat(held) if held else []:
            self.on_lost(claim)

    def on_lost(self, claim: Claim, sig: int = signal.SIGKILL) -> None:
        """Stop the run of a claim a peer reaped.  SIGKILL by default: the peer may already be
        resuming that very run from its last periodic checkpoint, so ours must not write a
        checkpoint or an end status over it."""
        with self.lock:
            held = self.active.get(claim.trial_id)
            known = claim.trial_id in self.lost
            self.lost.add(claim.trial_id)
        if held is not None and not known:
            how = "with a checkpoint" if sig == signal.SIGTERM else "at once, writing nothing more"
            print(f"{self.spec.label}: claim {claim.number} was reaped by another worker (this one was judged dead); "
                  f"stopping its run {how}", file=self.stream)
            stop_group(held[1], sig)

    def job(self, point: Point, claim: Claim, runs: list[StoredRun]) -> Job:
        resume = self.store.resumable(runs)  # interrupted or failed with a checkpoint: continue it
        if resume is None and runs and runs[0].status == "RUNNING":
            self.store.set_status(runs[0].run_id, "KILLED")  # we hold the claim, so no one runs it

        def on_start(pid: int) -> None:
            with self.lock:
                self.active[claim.trial_id] = (claim, pid)
            self.queue.set_child(claim, pid)

        def on_exit(code: int, seconds: float) -> None:
            self.closed(point, claim, job, code, seconds)

        job = Job(point=point, name=run_name(point, self.keys),
                  tags=point_tags(self.spec, self.queue.owner, point, self.keys,
                                  **{"dqt.claim": f"{study_name('sweep', self.spec)}#{claim.number}"}),
                  resume=resume, on_start=on_start, on_exit=on_exit)
        return job

    def closed(self, point: Point, claim: Claim, job: Job, code: int, seconds: float) -> None:
        """A point's `dqt train` exited: close its claim by how (module docstring of claims.py)."""
        with self.lock:
            self.active.pop(claim.trial_id, None)
        if claim.trial_id in self.lost:  # reaped and offered again by a peer: nothing of ours to close
            self.result.lost.append(point)
        elif code == EXIT_OK:
            self.queue.finish(claim, True, seconds, exit_code=code)
            self.result.finished.append(point)
        elif code == EXIT_INTERRUPTED:  # stopped by a signal, with a checkpoint: any worker resumes it
            self.queue.release(claim, f"stopped by a signal on {self.queue.owner.worker}", seconds)
            self.result.handed_back.append(point)
        else:
            self.queue.finish(claim, False, seconds, exit_code=code)  # offered again below the retry cap
            self.result.failed.append((point, code, job.log))


def say_other_versions(spec: Spec, stored: dict[PointKey, list[StoredRun]], finished: set[PointKey],
                       stream: TextIO) -> None:
    """Name the toolkit versions other than this one that made finished points: they count as
    done because their configurations hash the same (a field added since stays out of the hash
    at its legacy value, `core.config.doc`), and a reader should know they are mixed in."""
    ours = toolkit_version()
    others: dict[str, int] = {}
    for key in finished:
        run = next(r for r in stored[key] if r.status == "FINISHED")
        if run.version != ours:
            name = run.version or "before 0.2.0"
            others[name] = others.get(name, 0) + 1
    if others:
        listed = ", ".join(f"{n} by {v}" for v, n in sorted(others.items()))
        print(f"{spec.label}: finished points made by another toolkit version count as done ({listed}; this is "
              f"{ours}): their configurations hash the same", file=stream)


def unfinished_points(points: list[Point], store: Store, queue: ClaimQueue) -> list[tuple[Point, str]]:
    """The points not FINISHED in the store, with why: given up after their failures, still
    running elsewhere, or waiting in the queue."""
    stored = store.runs()
    left = [p for p in points if point_status(stored.get(p.key, [])) != "FINISHED"]
    if not left:
        return []
    given_up = queue.given_up({p.key for p in left})
    running = queue.held_elsewhere({p.key for p in left})
    out = []
    for p in left:
        if p.key in given_up:
            why = (f"gave up after {given_up[p.key]} failures (--max-retries {queue.max_retries}; rerun with a "
                   "larger one once the cause is fixed)")
        elif p.key in running:
            why = "still running on another worker"
        else:
            why = f"not run ({point_status(stored.get(p.key, []))}); rerun the same command"
        out.append((p, why))
    return out


def _end_parent(parent: SweepParent, store: Store, points: list[Point], keys: list[str],
                result: SweepResult, already: int) -> None:
    """End the parent run: counts as tags, each configuration's success AUC (and the best)
    as metrics, for the configurations whose seeds all FINISHED (`sweeps.parent`)."""
    aucs = config_aucs(store, points, keys)
    prefix = results_prefix()
    results = {result_key(prefix, name): auc for name, (_, auc) in aucs.items()}
    tags = {}
    if aucs:
        best = max(aucs, key=lambda name: aucs[name][1])
        results[f"{prefix}/best"] = aucs[best][1]
        tags = {"best.config": best, "best.config_hash": aucs[best][0]}
    parent.end(interrupted=result.interrupted, failed=bool(result.unfinished), results=results, tags=tags, table=aucs,
               counts={"points_total": len(points), "points_finished": len(result.finished),
                       "points_failed": len(result.failed), "points_already_finished": already,
                       "points_unfinished": len(result.unfinished)})


def end_dead_parents(store: Store, spec: Spec, stream: TextIO) -> list[str]:
    """Mark KILLED the parent runs of this sweep and profile left RUNNING by a `dqt sweep`
    that died without ending them (SIGKILL, a crash, the machine going down).

    A parent is dead when the process it records (tags ``dqt.worker`` / ``dqt.host`` +
    ``dqt.pid``) is on this host and no longer alive (or its pid now belongs to another
    process); parents of live sweeps, of other hosts (unknowable here) and without those tags
    are left alone.  Returns the ids of the runs ended.
    """
    me = Owner.of()
    ended = []
    for run in store.running_parents(spec.name, spec.profile or ""):
        owner = parent_owner(run.tags)
        if owner is None or owner.alive() is not False:
            continue
        store.kill_parent(run.run_id, f"sweep process {owner.host}:{owner.pid} gone; "
                                      f"ended by the sweep {me.host}:{me.pid}")
        ended.append(run.run_id)
    if ended:
        print(f"{spec.label}: {len(ended)} parent run(s) of dead sweeps marked KILLED: {', '.join(ended)}",
              file=stream)
    return ended


def _wait_for_queue(queue: ClaimQueue, wait_s: float, stream: TextIO) -> None:
    """Helpers may start before the sweep that queues the points; give it time."""
    deadline = time.monotonic() + wait_s
    if queue.size() == 0:
        print(f"waiting up to {duration(wait_s)} for a `dqt sweep` to queue points ...", file=stream)
    while queue.size() == 0 and time.monotonic() < deadline:
        time.sleep(5.0)


def _report(spec: Spec, result: SweepResult, keys: list[str], stream: TextIO) -> None:
    parts = [f"{len(result.finished)} finished now", f"{result.already} already finished"]
    if result.failed:
        parts.append(f"{len(result.failed)} failed attempt(s)")
    if result.handed_back:
        parts.append(f"{len(result.handed_back)} handed back")
    if result.elsewhere:
        parts.append(f"{result.elsewhere} running on other workers")
    if result.unfinished and not result.interrupted:
        parts.append(f"{len(result.unfinished)} NOT FINISHED")
    if result.interrupted:
        parts.append("interrupted")
    print(f"{spec.label}: {result.total} points: {', '.join(parts)}", file=stream)
    for point, code, log in result.failed:
        print(f"  FAILED {point.config_hash} {run_name(point, keys)} (exit {code}); log: {log}", file=stream)
    for point in result.lost:
        print(f"  LOST {point.config_hash} {run_name(point, keys)} (its claim was reaped by a worker that judged "
              "this one dead; its run was stopped and is theirs now)", file=stream)
    for point in result.handed_back:
        print(f"  HANDED BACK {point.config_hash} {run_name(point, keys)} (stopped; its checkpoint is resumed "
              "by whichever worker claims it next)", file=stream)
    if not result.interrupted:
        for point, why in result.unfinished:
            print(f"  NOT FINISHED {point.config_hash} {run_name(point, keys)}: {why}", file=stream)
    if result.interrupted:
        print("  rerun the same command to go on where it stopped", file=stream)


# ======================================================================================
# Dry run
# ======================================================================================
def point_statuses(points: list[Point], tracking_uri: str | None, experiment: str) -> dict[PointKey, str]:
    """Each point's status in the store, without creating anything."""
    store = Store.open_existing(resolve_tracking_uri(tracking_uri), experiment)
    stored = store.runs() if store else {}
    return {p.key: point_status(stored.get(p.key, [])) for p in points}


def format_table(points: list[Point], statuses: dict[PointKey, str]) -> str:
    """The dry-run table: config_hash, the varied fields, seed, status; aligned columns."""
    keys = varied_keys(points)
    names = short_names(keys)
    header = ["config_hash", *[names[k] for k in keys], "seed", "status"]
    rows = [[p.config_hash, *[_cell(dict(p.varied).get(k)) for k in keys], str(p.seed),
             statuses.get(p.key, STATUS_NONE)] for p in points]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows])


def dry_run(spec: Spec, points: list[Point], tracking_uri: str | None, out: TextIO) -> None:
    """Print what `run_sweep` would run, with each point's status in the store."""
    statuses = point_statuses(points, tracking_uri, spec.name)
    configs = len({p.config_hash for p in points})
    print(f"{spec.label}: {configs} configurations x {len(spec.seeds)} seeds = {len(points)} runs "
          f"(experiment '{spec.name}', nothing run)", file=out)
    print(format_table(points, statuses), file=out)
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    done = counts.pop("FINISHED", 0)
    print(f"{len(points) - done} to run, {done} FINISHED"
          + "".join(f", {n} {s}" for s, n in sorted(counts.items()) if s != STATUS_NONE), file=out)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
