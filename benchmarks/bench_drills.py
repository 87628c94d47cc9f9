"""Cluster drills: how long a sweep point waits for a new worker when its worker ends in each of
the ways a cluster ends one, and which service outages a sweep rides out.

Not part of `make test` or `make bench` (minutes of wall time; the tests check the same paths
with short grace periods).  Each drill runs the real ``dqt sweep`` and ``dqt train`` on a tiny
toy-reach point, in a folder of its own::

    python -m benchmarks.bench_drills [--drills sigterm,sigkill,...] [--outage-s 120]

Takeover drills (two workers A and B on one SQLite store and journal queue, ``--heartbeat 2
--stale-after 10``): A runs the point; once its run has logged an evaluation and a
checkpoint, B starts and says it is watching; then A ends, and the drill times how long until
B starts the point (``start`` on B's stderr):

- ``sigterm``: SIGTERM to A's sweep process (a Slurm preemption): A checkpoints the run and
  hands its claim back; B resumes the run at its next poll.
- ``sigkill``: SIGKILL to A and every process it started (a machine gone), same PID namespace:
  the OS says A is dead, so B reaps the claim at its next poll.
- ``sigkill-other-host``: the same, with A in a PID namespace of its own (another host or
  container): only A's heartbeat can tell, so B waits out the grace period.
- ``hang``: SIGSTOP to A and everything it started (a frozen node), same PID namespace: the
  OS says alive, so B waits for a heartbeat three grace periods old.  Then A is let go
  (SIGCONT): its heartbeat finds the claim gone and stops its trainer without writing more.
- ``hang-other-host``: the same in A's own PID namespace: one grace period.

Outage drills (one worker, ``-j 2``, two points, default heartbeat and grace):

- ``db-outage``: the claim queue on PostgreSQL, stopped at once (every connection drops) while
  both points train, back after ``--outage-s``.
- ``tracking-outage``: the tracking store behind ``mlflow server``, stopped while both points
  train, back on the same port after ``--outage-s``.

Every drill then checks the end state: the sweep(s) exit 0, each point has one FINISHED run,
and no evaluation step of a run was written twice.  It prints a JSON summary and writes it to
``--out`` (reports/bench/drills.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import children_of  # noqa: E402 - the tests' process helpers
from services import MlflowServer, Postgres, separate_pid_namespace  # noqa: E402

TAKEOVERS = ("sigterm", "sigkill", "sigkill-other-host", "hang", "hang-other-host")
OUTAGES = ("db-outage", "tracking-outage")
HEARTBEAT_S, STALE_AFTER_S = 2, 10
EVAL = "eval/success_rate"


def every(train_steps: int) -> int:
    """Evaluation and checkpoint interval: 20 of each a run."""
    return train_steps // 20


def spec_text(points: int, train_steps: int) -> str:
    """A tiny toy-reach sweep: `points` configurations of one seed (about 1,000 env steps/s each)."""
    stds = [float(i) for i in range(points)]
    return (f"name: drill\nbase:\n  trainer: {{task: toy-reach, train_steps: {train_steps}, "
            f"checkpoint_every: {every(train_steps)}}}\n"
            "  env: {episode_length: 60}\n  model: {embed_dim: 32, num_heads: 2, num_layers: 1, num_bins: 11}\n"
            "  learner: {batch_size: 32, warmup_decisions: 50, updates_per_step: 0.25}\n"
            f"  eval: {{every: {every(train_steps)}, episodes: 2}}\ngrid: {{noise.std: {stds}}}\nseeds: 1\n")


class Worker:
    """A `dqt sweep` process in a session of its own, its stderr lines kept with their times."""

    def __init__(self, name: str, spec: Path, uri: str, extra: list[str], prefix: list[str], env: dict[str, str]):
        self.name, self.lines = name, []  # (time.time(), line)
        cmd = [*prefix, sys.executable, "-m", "dqt.cli", "sweep", str(spec), "--tracking-uri", uri,
               "--worker-id", name, *extra]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append((time.time(), line.rstrip("\n")))

    def first(self, text: str, after: float = 0.0) -> float | None:
        """When a line containing `text` was written (at or after `after`), if one was."""
        return next((t for t, line in list(self.lines) if text in line and t >= after), None)

    def wait_for(self, text: str, timeout_s: float, after: float = 0.0) -> float:
        deadline = time.monotonic() + timeout_s
        while (t := self.first(text, after)) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {self.name} never wrote '{text}':\n{self.tail()}")
            time.sleep(0.05)
        return t

    def tail(self, n: int = 30) -> str:
        return "\n".join(line for _, line in self.lines[-n:])

    def tree(self) -> list[int]:
        """The worker and every process it started."""
        return [self.proc.pid, *children_of(self.proc.pid)]

    def signal_tree(self, sig: int) -> None:
        for pid in self.tree():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def finish(self, timeout_s: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.signal_tree(signal.SIGKILL)
            raise RuntimeError(f"worker {self.name} still running after {timeout_s:.0f} s:\n{self.tail()}") from None
        self.reader.join(timeout=5)
        return code


def point_runs(uri: str) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("drill")
    runs = client.search_runs([exp.experiment_id]) if exp else []
    return [r for r in runs if r.data.tags.get("dqt.role") == "point"]


def wait_until_training(uri: str, points: int, timeout_s: float) -> None:
    """Until each point's run has logged an evaluation after its first and holds a checkpoint."""
    from mlflow import MlflowClient

    client, deadline = MlflowClient(uri), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = point_runs(uri)
        if len(runs) == points and all(
                len(client.get_metric_history(r.info.run_id, EVAL)) >= 2
                and client.list_artifacts(r.info.run_id, "checkpoint") for r in runs):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the runs did not reach their second evaluation in {timeout_s:.0f} s")


def end_state(uri: str, points: int, train_steps: int) -> dict[str, Any]:
    """One FINISHED run per point, each with an evaluation in every interval and no step twice."""
    from mlflow import MlflowClient

    client, runs = MlflowClient(uri), point_runs(uri)
    by_point: dict[tuple[str, str], list[str]] = {}
    doubled: list[int] = []
    missing: list[int] = []
    for run in runs:
        by_point.setdefault((run.data.tags["config_hash"], run.data.tags["seed"]), []).append(run.info.status)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, EVAL)]
        doubled += sorted({s for s in steps if steps.count(s) > 1})
        if run.info.status == "FINISHED":  # an evaluation lands at the first env step past each interval
            gap = every(train_steps)
            missing += [k for k in range(0, train_steps + 1, gap) if not any(k <= s < k + gap for s in steps)]
    finished = sum(1 for statuses in by_point.values() if statuses.count("FINISHED") == 1)
    ok = finished == points and len(by_point) == points and not doubled and not missing
    return {"ok": ok, "points": points, "points_finished_once": finished, "runs": len(runs),
            "eval_steps_doubled": doubled, "eval_steps_missing": missing}


def takeover(kind: str, folder: Path, train_steps: int) -> dict[str, Any]:
    spec = folder / "drill.yaml"
    spec.write_text(spec_text(1, train_steps))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    other_host = kind.endswith("other-host")
    prefix = separate_pid_namespace() if other_host else []
    if other_host and not prefix:
        return {"skipped": "no PID namespace of its own here (needs root and unshare)"}
    flags = ["--heartbeat", str(HEARTBEAT_S), "--stale-after", str(STALE_AFTER_S)]
    a = Worker("a", spec, uri, flags, prefix, env)
    b = None
    try:
        a.wait_for("start ", 120)
        wait_until_training(uri, 1, 300)
        b = Worker("b", spec, uri, flags, [], env)
        b.wait_for("watching the queue", 120)
        t0 = time.time()
        if kind == "sigterm":
            os.kill(a.proc.pid, signal.SIGTERM)
        elif kind.startswith("sigkill"):
            a.signal_tree(signal.SIGKILL)
        else:
            a.signal_tree(signal.SIGSTOP)
        taken = b.wait_for("start ", 300, after=t0)
        if kind.startswith("hang"):
            a.signal_tree(signal.SIGCONT)
        codes = {"b": b.finish(600), "a": a.finish(120)}
        state = end_state(uri, 1, train_steps)
        wanted_a = {"sigterm": 130, "sigkill": -signal.SIGKILL}.get(kind)
        ok = state["ok"] and codes["b"] == 0 and (wanted_a is None or codes["a"] == wanted_a or other_host)
        return {"takeover_s": round(taken - t0, 2), "exit_codes": codes, **state, "ok": ok,
                "a_said": [line for _, line in a.lines if "reaped" in line or "handed back" in line.lower()][:3]}
    finally:
        for w in (a, b):
            if w is not None and w.proc.poll() is None:
                w.signal_tree(signal.SIGCONT)
                w.signal_tree(signal.SIGKILL)


def outage(kind: str, folder: Path, train_steps: int, outage_s: float) -> dict[str, Any]:
    spec = folder / "drill.yaml"
    spec.write_text(spec_text(2, train_steps))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    pg = server = None
    try:
        if kind == "db-outage":
            pg = Postgres.start(("optuna",))
            uri, extra = f"sqlite:///{folder / 'mlflow.db'}", ["--storage", pg.url("optuna")]
        else:
            server = MlflowServer.start(f"sqlite:///{folder / 'server.db'}", folder / "artifacts", folder / "server.log")
            uri, extra = server.url, ["--storage", str(folder / "optuna.journal")]
        w = Worker("a", spec, uri, ["-j", "2", *extra], [], env)
        wait_until_training(uri, 2, 300)
        t0 = time.time()
        if pg is not None:
            pg.restart(down_s=outage_s)
        else:
            port = int(server.url.rsplit(":", 1)[1])
            server.stop()
            time.sleep(outage_s)
            server = MlflowServer.start(f"sqlite:///{folder / 'server.db'}", folder / "artifacts",
                                        folder / "server-2.log", port=port)
        down_s = time.time() - t0
        code = w.finish(900)
        state = end_state(uri, 2, train_steps)
        return {"down_s": round(down_s, 1), "exit_code": code, **state, "ok": state["ok"] and code == 0,
                "said": [line for _, line in w.lines if "retry" in line.lower() or "fail" in line.lower()][:5]}
    finally:
        if server is not None:
            server.stop()
        if pg is not None:
            pg.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_drills", description=__doc__.split("\n\n")[0])
    p.add_argument("--drills", default=",".join(TAKEOVERS + OUTAGES), help="comma-separated drills to run")
    p.add_argument("--outage-s", type=float, default=120.0, help="how long a service stays down")
    p.add_argument("--train-steps", type=int, default=40000,
                   help="each point's budget (env steps): long enough that A still trains when it is stopped")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "drills.json")
    args = p.parse_args(argv)
    wanted = [d.strip() for d in args.drills.split(",") if d.strip()]
    unknown = [d for d in wanted if d not in TAKEOVERS + OUTAGES]
    if unknown:
        print(f"unknown drill(s) {', '.join(unknown)}; known: {', '.join(TAKEOVERS + OUTAGES)}", file=sys.stderr)
        return 2
    results: dict[str, Any] = {"heartbeat_s": HEARTBEAT_S, "stale_after_s": STALE_AFTER_S,
                               "outage_s": args.outage_s, "train_steps": args.train_steps, "drills": {}}
    for i, drill in enumerate(wanted, 1):
        print(f"drill {i}/{len(wanted)}: {drill} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        folder = Path(tempfile.mkdtemp(prefix=f"dqt-drill-{drill}-"))
        try:
            if drill in TAKEOVERS:
                result = takeover(drill, folder, args.train_steps)
            else:
                result = outage(drill, folder, args.train_steps, args.outage_s)
        except Exception as exc:  # noqa: BLE001 - a drill that breaks is reported; the others still run
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[-3000:]}
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        result["wall_s"] = round(time.monotonic() - started, 1)
        results["drills"][drill] = result
        print(f"drill {i}/{len(wanted)}: {drill}: {json.dumps(result)}", file=sys.stderr, flush=True)
    out = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True)
    results["commit"] = out.stdout.strip() or None
    text = json.dumps(results, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0 if all(r.get("ok", True) for r in results["drills"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
