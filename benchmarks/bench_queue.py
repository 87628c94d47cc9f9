"""Load benchmark of the sweep claim queue (`dqt.sweeps.claims.ClaimQueue`) on PostgreSQL.

Not part of `make bench` or `make test`: it starts its own throwaway PostgreSQL 15
(tests/services.py) and runs for minutes at full size::

    python -m benchmarks.bench_queue --workers 100 --points 10000 --kill 5 [--sleep-s 0.0]

What it does:

- queues a synthetic spec of ``--points`` points, keys ``(config_hash, seed)``, in the study
  ``sweep/bench-queue/default`` (`ClaimQueue.sync`, from a few threads; timed as ``setup_s``);
- runs ``--workers`` concurrent workers as threads spread over ``--processes`` worker processes
  (200 Python processes would not fit in memory); each thread has its own `ClaimQueue` (its own
  storage connections) and worker id, and loops like `sweeps.runner`: claim -> "train" (sleep
  ``--sleep-s``) -> finish(ok=True); with nothing to claim it reaps dead claims, waits while live
  workers hold points, and stops once none do.  Each process beats for its threads' claims from a
  `HeartbeatThread` every ``--heartbeat-s``;
- SIGKILLs ``--kill`` worker processes at random moments (at random fractions of the points done)
  and starts a replacement for each, which reaps at start like a restarted ``dqt sweep``.  By
  default every process poses as a host of its own (a PID namespace of its own), so a killed
  process's claims are judged by heartbeat alone and reaped once older than ``--stale-after``,
  then run again;
- samples the database's connections (pg_stat_activity) every 0.25 s, and checks the end state:
  every point COMPLETE exactly once in the queue, and, independently of the queue, the records
  the workers wrote (key, worker, trial, start, end of each run that reached its end, appended
  with one unbuffered write so a SIGKILL loses none): one run per point that completed, none
  run by two live workers, no two runs of a point overlapping in time.  Extra runs of a point
  are allowed only from killed processes (a run that ended, but whose claim was not closed
  before the kill: reaped and run again, as the real runner would).

It prints a JSON summary and writes it to ``--out`` (reports/bench/queue.json).  ``--time-limit-s``
and ``--max-cpu-s`` (CPU of this benchmark, its workers and PostgreSQL together) stop a run early;
the summary then says so and checks what ran.

Measured on the 2-core build machine while a training campaign ran (8 workers in 4 processes,
each run stopped at about 2 CPU-minutes): before the RDB fast paths of `ClaimQueue.claim` and
`ClaimQueue.finish`, a claim took a median of 0.9 s with 1,000 points and 3.4 s with 3,000 (it
loaded every waiting trial), 2 claims/s; after, 0.07 s with 3,000 points, flat over the run,
44 claims/s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STUDY = "sweep/bench-queue/default"
DB = "optuna"
TICK = os.sysconf("SC_CLK_TCK")


def point_keys(n: int, seeds: int) -> list[tuple[str, int]]:
    """`n` synthetic point keys: ``seeds`` seeds of each of ceil(n / seeds) configurations."""
    return [(hashlib.sha1(f"bench-config-{i // seeds}".encode()).hexdigest()[:12], i % seeds) for i in range(n)]


# ======================================================================================
# A worker process: threads, each a worker of its own
# ======================================================================================
def worker_main(cfg: dict[str, Any]) -> int:
    if not cfg["same_host"]:
        # A host of its own: its PID namespace is nobody else's, so peers judge its claims by
        # heartbeat alone (as across hosts), and a SIGKILLed process's claims wait out their grace.
        from dqt.sweeps import liveness

        liveness.PID_SPACE = f"bench-host-{cfg['name']}-{os.getpid()}"
    from dqt.sweeps.claims import Claim, ClaimQueue, HeartbeatThread

    run_dir = Path(cfg["dir"])
    keys = {tuple(k) for k in json.loads(Path(cfg["keys"]).read_text())}
    go, stop = run_dir / "go", run_dir / "stop"
    fd = os.open(run_dir / f"log-{cfg['name']}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def log(**line: Any) -> None:  # one write(2) per line: whole, and kept through a SIGKILL
        os.write(fd, (json.dumps(line) + "\n").encode())

    held: dict[int, Claim] = {}
    lock = threading.Lock()

    def open_queue(worker: str) -> ClaimQueue:
        return ClaimQueue(cfg["url"], STUDY, stale_after_s=cfg["stale_after"], worker=worker)

    queues = [open_queue(f"{cfg['name']}-t{i}") for i in range(cfg["threads"])]
    beater = open_queue(f"{cfg['name']}-hb")

    def beat() -> None:
        with lock:
            claims = list(held.values())
        for claim in beater.heartbeat(claims) if claims else []:
            with lock:
                still = claim.trial_id in held
            if still:  # reaped by a peer while this worker still held it
                log(type="lost", n=claim.number, t=time.time())

    beats = HeartbeatThread(beat, cfg["heartbeat_s"], log=lambda line: log(type="beat_error", text=line))
    if cfg["reap_at_start"]:
        log(type="reaped_at_start", count=queues[0].reap(), t=time.time())
    log(type="ready", t=time.time())
    while not go.exists():
        time.sleep(0.01)
    beats.start()

    def loop(queue: ClaimQueue) -> None:
        worker, pid = queue.owner.worker, os.getpid()
        try:
            while not stop.exists():
                t0 = time.perf_counter()
                claim = queue.claim(keys)
                claim_s = time.perf_counter() - t0
                if claim is None:
                    log(type="empty", claim_ms=claim_s * 1e3)
                    if queue.reap():  # dead claims offered again: claim them
                        continue
                    if not queue.held_elsewhere(keys):  # nothing left that a live worker holds
                        return
                    time.sleep(cfg["poll_s"])
                    continue
                start = time.time()
                with lock:
                    held[claim.trial_id] = claim
                if cfg["sleep_s"] > 0:
                    time.sleep(cfg["sleep_s"])
                end = time.time()
                # the run's result, written before its claim is closed (as a `dqt train` run ends first)
                log(type="run", key=list(claim.key), worker=worker, pid=pid, n=claim.number, start=start, end=end)
                with lock:  # no more beats: a beat landing after the close would call the claim lost
                    held.pop(claim.trial_id, None)
                t1 = time.perf_counter()
                queue.finish(claim, ok=True, seconds=end - start)
                finish_s = time.perf_counter() - t1
                log(type="cycle", claim_ms=claim_s * 1e3, finish_ms=finish_s * 1e3, t=time.time())
        except Exception as exc:  # noqa: BLE001 - reported in the summary; the other threads go on
            log(type="error", worker=worker, error=f"{type(exc).__name__}: {exc}"[:500],
                trace=traceback.format_exc()[-2000:])

    threads = [threading.Thread(target=loop, args=(q,), daemon=True) for q in queues]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    beats.stop()
    log(type="exit", t=time.time())
    return 0


# ======================================================================================
# The parent: PostgreSQL, the queue, the workers, the kills, the measurements
# ======================================================================================
def _proc_cpu(pid: int, children: bool = False) -> float:
    """CPU seconds of a live process (its threads), plus its waited-for children's if asked."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / TICK


def _postgres_cpu(postmaster: int) -> float:
    """CPU seconds of the PostgreSQL server: the postmaster, its ended backends, its live ones."""
    total = _proc_cpu(postmaster, children=True)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))], 3)


def _offer(url: str, keys: list[tuple[str, int]], threads: int) -> float:
    """Queue every point (`ClaimQueue.sync`), `threads` disjoint slices at once; returns seconds."""
    from dqt.core.config import RunConfig
    from dqt.sweeps.claims import ClaimQueue
    from dqt.sweeps.expand import Point

    config = RunConfig()
    points = [Point(config, h, s) for h, s in keys]
    _close(ClaimQueue(url, STUDY))  # the schema and the study, once
    start = time.perf_counter()
    errors: list[BaseException] = []

    def offer(part: list[Point]) -> None:
        try:
            queue = ClaimQueue(url, STUDY)
            queue.sync(part, finished=set())
            _close(queue)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    pool = [threading.Thread(target=offer, args=(points[i::threads],)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start


def _close(queue: Any) -> None:
    """Close a queue's database connections (so the parent's idle ones do not count as the workers')."""
    getattr(queue.storage, "_backend", queue.storage).engine.dispose()
    if queue.clock._engine is not None:
        queue.clock._engine.dispose()


def _read_logs(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    logs = {}
    for path in sorted(run_dir.glob("log-*.jsonl")):
        lines = []
        for raw in path.read_text().splitlines():
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:  # a line cut by a SIGKILL mid-write (not seen in practice)
                pass
        logs[path.stem.removeprefix("log-")] = lines
    return logs


def _check(url: str, keys: list[tuple[str, int]], logs: dict[str, list[dict[str, Any]]], killed: set[str],
           complete_run: bool) -> dict[str, Any]:
    """Exactly once: each point one COMPLETE trial in the queue, and one record of a run that the
    queue counted; extra records only from killed processes; no two runs of a point at once."""
    from optuna.trial import TrialState

    from dqt.sweeps.claims import open_storage

    storage = open_storage(url)
    trials = storage.get_all_trials(storage.get_study_id_from_name(STUDY), deepcopy=False)
    complete: dict[tuple[str, int], list[int]] = {}
    open_states: dict[tuple[str, int], list[str]] = {}
    reaped = running = 0
    for t in trials:
        key = (str(t.user_attrs.get("config_hash")), int(t.user_attrs.get("seed", -1)))
        if t.state == TrialState.COMPLETE:
            complete.setdefault(key, []).append(t.number)
        elif t.state in (TrialState.WAITING, TrialState.RUNNING):
            open_states.setdefault(key, []).append(t.state.name)
            running += t.state == TrialState.RUNNING
        elif t.state == TrialState.FAIL and "reaped_by" in t.user_attrs:
            reaped += 1
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for name, lines in logs.items():
        for line in lines:
            if line.get("type") == "run":
                runs.setdefault((line["key"][0], int(line["key"][1])), []).append({**line, "proc": name})
    missing, twice_in_queue, unrecorded, live_reruns, overlapping, open_left = [], [], [], [], [], []
    rerun_after_kill = 0
    for key in keys:
        numbers = complete.get(key, [])
        recs = runs.get(key, [])
        if key in open_states:
            open_left.append(key)
        if not numbers:
            if complete_run:
                missing.append(key)
            continue
        if len(numbers) > 1:
            twice_in_queue.append(key)
        counted = [r for r in recs if r["n"] in numbers]
        if len(counted) != len(numbers):
            unrecorded.append(key)
        for r in recs:
            if r["n"] not in numbers:
                if r["proc"] in killed:
                    rerun_after_kill += 1
                else:
                    live_reruns.append(key)
        ordered = sorted(recs, key=lambda r: r["start"])
        if any(b["start"] < a["end"] for a, b in zip(ordered, ordered[1:], strict=False)):
            overlapping.append(key)
    extra = set(complete) - set(keys)
    failures = {"missing": missing, "completed_twice": twice_in_queue, "complete_without_record": unrecorded,
                "run_twice_by_live_workers": live_reruns, "overlapping_runs": overlapping,
                "left_waiting_or_running": open_left if complete_run else [], "unknown_keys": sorted(extra)}
    ok = not any(failures.values())
    verdict = ("PASS" if ok else "FAIL") if complete_run else (
        "INCOMPLETE (stopped early): no point completed twice, no overlapping runs" if ok else "FAIL")
    return {"verdict": verdict, "points_complete": sum(1 for k in keys if k in complete),
            "points_with_runs": len(runs), "runs_recorded": sum(len(r) for r in runs.values()),
            "reruns_after_kill": rerun_after_kill, "claims_reaped": reaped, "running_at_end": running,
            "trials": len(trials),
            **{k: len(v) for k, v in failures.items()},
            "examples": {k: [list(x) for x in v[:5]] for k, v in failures.items() if v}}


class _Workers:
    """The worker processes, started with `spawn` and SIGKILLed with `kill`."""

    def __init__(self, base: dict[str, Any], run_dir: Path):
        self.base, self.run_dir = base, run_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self.threads: dict[str, int] = {}
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.err = open(run_dir / "workers.stderr", "ab")  # noqa: SIM115 - closed in close()

    def spawn(self, name: str, threads: int, reap_at_start: bool = False) -> None:
        cfg = {**self.base, "name": name, "threads": threads, "reap_at_start": reap_at_start}
        self.threads[name] = threads
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_queue", "--worker-config",
                                             json.dumps(cfg)], cwd=ROOT, env=self.env, stderr=self.err,
                                            stdout=subprocess.DEVNULL)

    def live(self) -> list[str]:
        return [name for name, p in self.procs.items() if p.poll() is None]

    def cpu(self) -> float:
        return sum(_proc_cpu(p.pid) for p in self.procs.values() if p.returncode is None)

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        self.err.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    from services import Postgres  # noqa: I001 - tests/services.py: a throwaway PostgreSQL

    import psycopg

    workers, nproc = args.workers, min(args.processes, args.workers)
    sizes = [workers // nproc + (1 if i < workers % nproc else 0) for i in range(nproc)]
    # each thread: one pooled storage connection, and a short-lived one per storage-clock read
    max_connections = args.max_connections or 2 * workers + 2 * nproc + 40
    keys = point_keys(args.points, args.seeds_per_config)
    rng = random.Random(args.seed)
    run_dir = Path(tempfile.mkdtemp(prefix="dqt-bench-queue-"))
    started = time.perf_counter()
    pg = Postgres.start((DB,), max_connections=max_connections)
    workers_ = None
    try:
        url = pg.url(DB)
        setup_s = _offer(url, keys, args.setup_threads)
        (run_dir / "keys.json").write_text(json.dumps(keys))
        base = {"url": url, "keys": str(run_dir / "keys.json"), "dir": str(run_dir), "sleep_s": args.sleep_s,
                "stale_after": args.stale_after, "heartbeat_s": args.heartbeat_s, "poll_s": args.poll_s,
                "same_host": args.same_host}
        workers_ = _Workers(base, run_dir)
        for i, n in enumerate(sizes):
            workers_.spawn(f"p{i}", n)
        deadline = time.monotonic() + 300
        while sum(1 for f in run_dir.glob("log-*.jsonl") if '"ready"' in f.read_text()) < nproc:
            if time.monotonic() > deadline or any(workers_.procs[n].poll() is not None for n in workers_.procs):
                raise RuntimeError(f"workers did not start: {(run_dir / 'workers.stderr').read_text()[-3000:]}")
            time.sleep(0.1)
        postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
        mon = psycopg.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname=DB, autocommit=True)
        study_id = mon.execute("SELECT study_id FROM studies WHERE study_name = %s", (STUDY,)).fetchone()[0]
        kill_at = sorted(int(rng.uniform(0.1, 0.8) * len(keys)) for _ in range(args.kill))
        kills: list[dict[str, Any]] = []
        peak, samples, stopped, stop_deadline = 0, 0, "done", math.inf
        (run_dir / "go").touch()
        go = time.time()
        next_cpu = next_say = 0.0
        while workers_.live():
            conns = mon.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                                (DB,)).fetchone()[0]
            peak, samples = max(peak, conns), samples + 1
            done = mon.execute("SELECT count(*) FROM trials WHERE study_id = %s AND state = 'COMPLETE'",
                               (study_id,)).fetchone()[0]
            while kill_at and done >= kill_at[0] and stopped == "done":
                kill_at.pop(0)
                victims = workers_.live()
                if not victims:
                    break
                victim = rng.choice(victims)
                os.kill(workers_.procs[victim].pid, signal.SIGKILL)
                workers_.procs[victim].wait()
                kills.append({"process": victim, "threads": workers_.threads[victim],
                              "at_s": round(time.time() - go, 2), "points_complete": done})
                if args.respawn:  # a replacement, which reaps at start like a restarted `dqt sweep`
                    workers_.spawn(f"r{len(kills) - 1}", workers_.threads[victim], reap_at_start=True)
            now = time.monotonic()
            if now >= next_say:
                next_say = now + 10.0
                _say_progress(done, len(keys), time.time() - go, conns, len(kills))
            if now >= next_cpu and stopped == "done":
                next_cpu = now + 2.0
                cpu = time.process_time() + _children_cpu() + workers_.cpu() + _postgres_cpu(postmaster)
                if args.max_cpu_s and cpu > args.max_cpu_s:
                    stopped = f"cpu limit ({args.max_cpu_s:.0f} s)"
                elif args.time_limit_s and time.time() - go > args.time_limit_s:
                    stopped = f"time limit ({args.time_limit_s:.0f} s)"
                if stopped != "done":
                    (run_dir / "stop").touch()
                    stop_deadline = time.monotonic() + 60
            if stopped != "done" and time.monotonic() > stop_deadline:
                break
            time.sleep(0.25)
        workers_.close()
        cpu_bench = time.process_time() + _children_cpu()
        cpu_pg = _postgres_cpu(postmaster)
        mon.close()
        logs = _read_logs(run_dir)
        killed = {k["process"] for k in kills}
        check = _check(url, keys, logs, killed, complete_run=stopped == "done")
    finally:
        if workers_ is not None:
            workers_.close()
        pg.stop()
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    lines = [ln for lines in logs.values() for ln in lines]
    cycles = sorted((ln for ln in lines if ln["type"] == "cycle"), key=lambda ln: ln["t"])
    claim_ms = [ln["claim_ms"] for ln in cycles]
    finish_ms = [ln["finish_ms"] for ln in cycles]
    end = max([ln["t"] for ln in cycles] + [ln["t"] for ln in lines if ln["type"] == "exit"], default=go)
    wall_s = end - go
    tenth = max(1, len(cycles) // 10)
    errors = [ln for ln in lines if ln["type"] == "error"]
    return {
        "workers": workers, "processes": nproc, "threads_per_process": sizes, "points": len(keys),
        "sleep_s": args.sleep_s, "stale_after_s": args.stale_after, "heartbeat_s": args.heartbeat_s,
        "same_host": args.same_host, "stopped": stopped,
        "wall_s": round(wall_s, 2), "setup_s": round(setup_s, 2), "total_s": round(time.perf_counter() - started, 2),
        "claims": len(cycles), "claims_per_s": round(len(cycles) / wall_s, 2) if wall_s > 0 else None,
        "claim_latency_ms": {"p50": _pct(claim_ms, 50), "p90": _pct(claim_ms, 90), "p99": _pct(claim_ms, 99),
                             "max": _pct(claim_ms, 100),
                             "p50_first_10pct": _pct(claim_ms[:tenth], 50), "p50_last_10pct": _pct(claim_ms[-tenth:], 50)},
        "finish_latency_ms": {"p50": _pct(finish_ms, 50), "p99": _pct(finish_ms, 99),
                              "p50_first_10pct": _pct(finish_ms[:tenth], 50),
                              "p50_last_10pct": _pct(finish_ms[-tenth:], 50)},
        "empty_claims": sum(1 for ln in lines if ln["type"] == "empty"),
        "peak_connections": peak, "connection_samples": samples, "max_connections": max_connections,
        "kills": kills, "claims_lost_by_live_workers": sum(1 for ln in lines if ln["type"] == "lost"),
        "reaped_at_start": sum(ln["count"] for ln in lines if ln["type"] == "reaped_at_start"),
        "heartbeat_errors": sum(1 for ln in lines if ln["type"] == "beat_error"),
        "errors": len(errors), "error_examples": [e["error"] for e in errors[:3]],
        "exactly_once": check,
        "cpu_s": {"benchmark": round(cpu_bench, 1), "postgres": round(cpu_pg, 1)},
        "machine": {"cpus": os.cpu_count(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
        "commit": _commit(), "run_dir": str(run_dir) if args.keep else None,
    }


def _say_progress(done: int, total: int, elapsed_s: float, conns: int, kills: int) -> None:
    """One progress line on stderr (stdout carries the JSON summary)."""
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    eta = f"{(total - done) / rate / 60:.1f} min" if rate > 0 else "?"
    print(f"queue bench: {done}/{total} points complete, {rate:.1f} claims/s, {conns} connections, "
          f"{kills} processes killed, ETA {eta}", file=sys.stderr, flush=True)


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def _commit() -> str | None:
    out = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return out.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_queue", description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=100, help="concurrent workers (threads, each its own queue)")
    p.add_argument("--points", type=int, default=10000, help="points in the synthetic spec")
    p.add_argument("--kill", type=int, default=5, help="worker processes SIGKILLed at random moments")
    p.add_argument("--sleep-s", type=float, default=0.0, help="each point's 'training' time")
    p.add_argument("--processes", type=int, default=8, help="worker processes the threads are spread over")
    p.add_argument("--stale-after", type=float, default=5.0, help="grace period of a claim without heartbeat")
    p.add_argument("--heartbeat-s", type=float, default=1.0, help="seconds between a process's heartbeats")
    p.add_argument("--poll-s", type=float, default=0.5, help="a worker's wait when nothing is left to claim")
    p.add_argument("--seeds-per-config", type=int, default=10)
    p.add_argument("--setup-threads", type=int, default=4, help="threads offering the points at setup")
    p.add_argument("--same-host", action="store_true",
                   help="processes share a PID namespace (the OS, not heartbeats, tells a dead claim)")
    p.add_argument("--no-respawn", dest="respawn", action="store_false", help="do not replace killed processes")
    p.add_argument("--max-connections", type=int, default=None, help="PostgreSQL's cap (default 2 x workers + ...)")
    p.add_argument("--time-limit-s", type=float, default=None, help="stop claiming after this many seconds")
    p.add_argument("--max-cpu-s", type=float, default=None,
                   help="stop claiming once the benchmark, its workers and PostgreSQL used this much CPU")
    p.add_argument("--seed", type=int, default=0, help="of the kill schedule")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "queue.json")
    p.add_argument("--keep", action="store_true", help="keep the run folder (worker logs)")
    p.add_argument("--worker-config", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker_config:
        return worker_main(json.loads(args.worker_config))
    summary = run(args)
    text = json.dumps(summary, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0 if summary["exactly_once"]["verdict"] != "FAIL" and not summary["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
