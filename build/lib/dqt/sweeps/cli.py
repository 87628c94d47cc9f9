"""`dqt sweep SPEC.yaml`: validate, expand and run (or `--dry-run` show) a sweep spec.

Wired into `dqt` by `dqt/cli.py` through `register`; a bad spec raises `ConfigError`,
which `dqt` prints as one line and exits 2 before anything is written.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from dqt.core.config import ConfigError
from dqt.core.names import did_you_mean

EPILOG = """\
examples:
  dqt sweep sweeps/noise.yaml --dry-run              # the quick profile's runs and their status
  dqt sweep sweeps/noise.yaml --profile paper -j 4   # the paper's 108 runs, 4 at a time
  DQT_STORAGE=postgresql://u@db/optuna dqt sweep sweeps/noise.yaml --profile paper \\
      --tracking-uri http://mlflow:5000 --worker     # a helper on another host (docs/SWEEPS.md)
"""


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `sweep` subcommand to `dqt`'s subparsers."""
    p = subparsers.add_parser(
        "sweep", help="run a declarative sweep spec (grid or Optuna search)",
        description="Expand and run a sweep spec: points already FINISHED in the tracking store are\n"
                    "skipped, failed or interrupted ones run again (resumed from their checkpoint when\n"
                    "they have one).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", metavar="SPEC", help="sweep spec file, e.g. sweeps/noise.yaml (format: docs/SWEEPS.md), or "
                                                "the name of a shipped one: noise, agents, tasks, search, ablation")
    p.add_argument("--profile", default=None, help="named profile of the spec (default: quick)")
    p.add_argument("--jobs", "-j", default="1", metavar="J", help="points run at once by this worker (default: 1)")
    p.add_argument("--dry-run", action="store_true", help="print the expanded runs and their status; run nothing")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite:///<repo>/mlflow.db)")
    p.add_argument("--storage", default=os.environ.get("DQT_STORAGE"), metavar="URL",
                   help="Optuna storage shared by all workers (default: $DQT_STORAGE, which keeps a password out "
                        "of the process list; or leave the password out and let PostgreSQL read ~/.pgpass or "
                        "$PGPASSWORD): an RDB URL (postgresql://, mysql://) or a journal "
                        "file path (default: optuna.journal next to the sqlite mlflow.db)")
    p.add_argument("--worker", action="store_true",
                   help="only work on points another `dqt sweep` queued in --storage (helpers on other hosts)")
    p.add_argument("--worker-id", default=None, metavar="ID",
                   help="this worker's identity in claims, unique per worker (default: $DQT_WORKER_ID, "
                        "else the hostname and a random suffix)")
    p.add_argument("--heartbeat", default="60", metavar="S", help="seconds between claim heartbeats (default: 60)")
    p.add_argument("--stale-after", default="600", metavar="S",
                   help="grace period: a claim whose heartbeat is older is dead and its point offered again "
                        "(default: 600; at least 3 heartbeats)")
    p.add_argument("--max-retries", default="3", metavar="N",
                   help="a point that failed more than N times is given up and named in the report; a run "
                        "stopped by a signal is handed back, which is no failure (default: 3)")
    p.set_defaults(handler=cmd_sweep)
    return p


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run `dqt sweep`; returns the exit status (0 ok, 1 a point of the spec left unfinished, 130 interrupted)."""
    from dqt.sweeps.expand import expand
    from dqt.sweeps.spec import load_spec

    opts = _options(args, _jobs(args.jobs))  # bad flags fail before the spec is read
    spec = load_spec(spec_path(args.spec), args.profile)
    if spec.search is not None:
        from dqt.sweeps import search

        if args.dry_run:
            search.describe(spec, args.storage, args.tracking_uri, sys.stdout)
            return 0
        return search.run_search(spec, opts).exit_code
    points = expand(spec)  # every point is validated here, before anything runs
    from dqt.sweeps import runner

    if args.dry_run:
        runner.dry_run(spec, points, args.tracking_uri, sys.stdout)
        return 0
    return runner.run_sweep(spec, points, opts).exit_code


def shipped_specs() -> dict[str, Path]:
    """The specs that ship with the package (noise, agents, tasks, search, ablation), by name."""
    from importlib.resources import files

    folder = Path(str(files("dqt.sweeps")))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def spec_path(name: str) -> Path:
    """A spec file as given, or a shipped spec by its name (``dqt sweep noise``), so an installed
    package needs no path into site-packages."""
    path = Path(name)
    if path.exists() or path.suffix in (".yaml", ".yml") or "/" in name:
        return path  # load_spec says what is wrong with a missing file
    shipped = shipped_specs()
    if name in shipped:
        return shipped[name]
    raise ConfigError(f"no spec file '{name}' and no shipped spec of that name{did_you_mean(name, shipped)} "
                      f"(shipped: {', '.join(shipped)})")


def _jobs(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"--jobs must be an integer >= 1, got '{value}'")
    return int(value)


def _options(args: argparse.Namespace, jobs: int) -> Any:
    from dqt.sweeps.runner import SweepOptions

    heartbeat, stale = _seconds("--heartbeat", args.heartbeat), _seconds("--stale-after", args.stale_after)
    if stale < 3 * heartbeat:
        raise ConfigError(f"--stale-after ({stale:g} s) must be at least 3 heartbeats (--heartbeat {heartbeat:g} s): "
                          "a live worker's claim would look dead")
    if args.worker_id is not None and (not args.worker_id or "|" in args.worker_id):
        raise ConfigError(f"--worker-id must be a non-empty name without '|', got '{args.worker_id}'")
    if not args.max_retries.isdigit():
        raise ConfigError(f"--max-retries must be an integer >= 0, got '{args.max_retries}'")
    return SweepOptions(jobs=jobs, tracking_uri=args.tracking_uri, storage=args.storage, worker=args.worker,
                        worker_id=args.worker_id, heartbeat_s=heartbeat, stale_after_s=stale,
                        max_retries=int(args.max_retries), poll_s=min(5.0, heartbeat))


def _seconds(flag: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(f"{flag} must be a number of seconds > 0, got '{value}'")
    return seconds
