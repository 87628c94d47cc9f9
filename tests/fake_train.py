"""A stand-in for `dqt train` that the sweep tests run instead of the trainer (a helper, not a test module).

It keeps the trainer's side of the contract (docs/CONTRACTS.md): the same flags, one MLflow
run through `core.tracking.RunTracker` tagged ``config_hash`` / ``seed`` plus the ``--tag``s,
a child of ``--parent-run-id``, ``--resume RUN_ID`` continues that run, and exit 0 FINISHED,
1 FAILED, 130 KILLED.  What it does is chosen by ``noise.mean`` of the point, so a spec can
mix behaviours:

- ``13``: fails (exit 1).
- ``99``: logs ``{"waiting": true}`` once its run exists, waits for SIGINT/SIGTERM, then
  ends KILLED (exit 130).
- ``77``: logs a ``checkpoint/`` artifact and SIGKILLs itself, leaving the run RUNNING;
  resumed with ``--resume``, it finishes.
- ``33``: takes ``noise.std`` seconds (logging ``{"running": true}`` first), then finishes.
- ``55``: like ``99``, but logs a ``checkpoint/`` artifact before it waits (a periodic one) and
  again when stopped (as `dqt train` does on SIGTERM); resumed with ``--resume``, it finishes.
- anything else: logs an ``eval/success_rate`` curve rising to ``min(1, 1000 * lr)`` and finishes.

Every start appends one JSON line (pid, hash, seed, resume, tags) to ``$FAKE_TRAIN_LOG``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve()


def command() -> list[str]:
    """The `train_cmd` a test gives `SweepOptions` to run this stand-in."""
    return [sys.executable, str(SCRIPT), "train"]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("command")
    for flag in ("--config", "--experiment", "--tracking-uri", "--parent-run-id", "--run-name", "--resume"):
        p.add_argument(flag)
    p.add_argument("--tag", action="append", default=[])
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    assert args.command == "train"

    from dqt.core.config import RunConfig
    from dqt.core.tracking import RunTracker

    cfg = RunConfig.from_yaml(args.config)
    tags = dict(t.split("=", 1) for t in args.tag)
    with open(os.environ["FAKE_TRAIN_LOG"], "a") as log:
        log.write(json.dumps({"pid": os.getpid(), "hash": cfg.config_hash(), "seed": cfg.trainer.seed,
                              "resume": args.resume, "tags": tags, "run_name": args.run_name,
                              "parent": args.parent_run_id}) + "\n")
    from dqt.core.version import toolkit_version

    tracker = RunTracker(args.tracking_uri, args.experiment, run_name=args.run_name,
                         tags={"config_hash": cfg.config_hash(), "seed": str(cfg.trainer.seed),
                               "dqt.version": toolkit_version(), **tags},
                         parent_run_id=args.parent_run_id, resume_run_id=args.resume)
    tracker.log_params(cfg.to_flat())
    mean = cfg.noise.mean
    if mean == 13:
        tracker.end("FAILED", reason="told to fail")
        return 1
    if mean == 99 or (mean == 55 and not args.resume):
        if mean == 55:
            log_checkpoint(tracker, "a periodic checkpoint")
        with open(os.environ["FAKE_TRAIN_LOG"], "a") as log:
            log.write(json.dumps({"pid": os.getpid(), "waiting": True}) + "\n")
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        signal.signal(signal.SIGINT, lambda *_: stop.append(1))
        while not stop:
            time.sleep(0.05)
        if mean == 55:
            log_checkpoint(tracker, "stopped half way")
        tracker.end("KILLED")
        return 130
    if mean == 77 and not args.resume:
        log_checkpoint(tracker, "half way")
        os.kill(os.getpid(), signal.SIGKILL)
    if mean == 33:
        with open(os.environ["FAKE_TRAIN_LOG"], "a") as log:
            log.write(json.dumps({"pid": os.getpid(), "running": True}) + "\n")
        time.sleep(cfg.noise.std)
    top = min(1.0, 1000 * cfg.learner.lr)
    steps = cfg.trainer.train_steps
    for step in range(0, steps + 1, cfg.eval.every):
        tracker.log_metrics({"eval/success_rate": top * step / steps}, step=step)
    tracker.end("FINISHED")
    return 0


def log_checkpoint(tracker, text: str) -> None:  # noqa: ANN001 - a core.tracking.RunTracker
    """A ``checkpoint/`` artifact, written through before this returns."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "state.txt").write_text(text)
        tracker.log_artifact(Path(tmp) / "state.txt", "checkpoint")
    tracker.flush()


if __name__ == "__main__":
    sys.path.insert(0, str(SCRIPT.parents[1]))  # run as a script: make core/ importable
    sys.exit(main())
