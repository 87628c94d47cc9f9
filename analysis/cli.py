"""``dqt figures``: the paper's figures, summary.csv and report.md from an MLflow store.

    dqt figures EXPERIMENT [--tracking-uri URI] [--out DIR]
    dqt figures --all      [--tracking-uri URI] [--out DIR]      (what `make figures` runs)
    dqt paper [--profile P] [--tracking-uri URI] [--out DIR]      (what `make paper` ends with)

Files go to ``DIR/<experiment>/`` (DIR defaults to ``<repo>/reports``) and are logged as
artifacts of the experiment's latest sweep parent run.  Metric histories are cached per run
in ``DIR/.cache/`` (a `joblib.Memory`) so a second call re-reads only runs that changed.  Bad input raises
`ConfigError`, which ``dqt`` prints as one line before exiting 2.

This module is imported whenever ``dqt`` builds its parser, so pandas, matplotlib and mlflow
are imported inside the handler only: ``dqt --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dqt.core.config import ConfigError

STATISTIC_CHOICES = ("mean", "iqm")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``figures`` subcommand (handler: `run`) to ``dqt``'s subparsers."""
    p = subparsers.add_parser(
        "figures",
        help="paper figures, AUC table and report of an experiment, read from MLflow",
        description="Read the training runs of an MLflow experiment and write the figures that apply "
                    "(success per configuration; DQT fig. 2 when agent count or LR schedule varies, "
                    "fig. 4 when noise mean/std vary, fig. 5 when the task varies) as PNG and PDF, "
                    "plus summary.csv and report.md with the success AUC per configuration, to "
                    "OUT/<experiment>/; the same files are logged to the experiment's latest sweep "
                    "parent run.",
    )
    p.add_argument("experiment", nargs="?", help="MLflow experiment name (a sweep's spec name, e.g. noise)")
    p.add_argument("--all", action="store_true", dest="all_experiments",
                   help="every experiment in the store that has runs")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: sqlite:///<repo>/mlflow.db)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="output root: files go to DIR/<experiment>/ (default: <repo>/reports)")
    p.add_argument("--statistic", choices=STATISTIC_CHOICES, default="mean",
                   help="what lines and bars show over seeds: mean or interquartile mean (default: mean); "
                        "the table always has both")
    p.add_argument("--profile", default=None, metavar="NAME",
                   help="sweep profile to show when an experiment holds several (default: the profile of "
                        "its latest run; 'all' mixes them)")
    p.add_argument("--include-unfinished", action="store_true",
                   help="also use RUNNING, FAILED and KILLED runs (default: finished runs only)")
    p.add_argument("--no-log", action="store_true", help="do not log the files to the sweep's parent run")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default: 0)")
    p.set_defaults(handler=run)
    q = subparsers.add_parser(
        "paper",
        help="the paper's figures 2, 4 and 5 with a claims table, from the agents, noise and tasks sweeps",
        description="Read the runs of the experiments agents (DQT fig. 2), noise (fig. 4) and tasks (fig. 5) "
                    "at one sweep profile and write OUT/paper/: each experiment's figures, summary.csv and "
                    "report.md, and a README.md with the commands, the budget, which task stood in for which, "
                    "and the paper's claims beside ours (agree / disagree / this budget cannot tell).",
    )
    q.add_argument("--profile", default=None, metavar="NAME",
                   help="sweep profile of the runs (default: each experiment's latest)")
    q.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: sqlite:///<repo>/mlflow.db)")
    q.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="output root: files go to DIR/paper/ (default: <repo>/reports)")
    q.add_argument("--no-log", action="store_true", help="do not log the files to the sweeps' parent runs")
    q.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default: 0)")
    q.set_defaults(handler=run_paper)
    return p


def run_paper(args: argparse.Namespace) -> int:
    """Handle ``dqt paper``; returns 0 or raises ConfigError."""
    from dqt.analysis.paper import build_paper
    from dqt.analysis.store import open_client
    from dqt.core.tracking import repo_root, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    out_root = args.out if args.out is not None else repo_root() / "reports"
    if out_root.exists() and not out_root.is_dir():
        raise ConfigError(f"--out {out_root}: not a folder")
    readme = build_paper(uri, out_root, profile=args.profile, cache_dir=out_root / ".cache", seed=args.seed,
                         log_artifacts=not args.no_log, client=open_client(uri))
    print(f"paper: figures 2, 4, 5, their tables and the claims -> {readme.parent} (README.md)")
    return 0


def run(args: argparse.Namespace) -> int:
    """Handle ``dqt figures``; returns the exit code (0) or raises ConfigError."""
    from dqt.analysis.report import build_report
    from dqt.analysis.store import experiments_with_runs, open_client
    from dqt.core.tracking import repo_root, resolve_tracking_uri

    if args.all_experiments and args.experiment:
        raise ConfigError("figures: give an experiment name or --all, not both")
    if not args.all_experiments and not args.experiment:
        raise ConfigError("figures: name an experiment, or pass --all")
    uri = resolve_tracking_uri(args.tracking_uri)
    out_root = args.out if args.out is not None else repo_root() / "reports"
    if out_root.exists() and not out_root.is_dir():
        raise ConfigError(f"--out {out_root}: not a folder")
    client = open_client(uri)
    if args.all_experiments:
        names = experiments_with_runs(client)
        if not names:
            raise ConfigError(f"no experiment with runs in {uri}")
    else:
        names = [args.experiment]
    for name in names:
        try:
            result = build_report(
                name, uri, out_root, cache_dir=out_root / ".cache",
                include_unfinished=args.include_unfinished, profile=args.profile, statistic=args.statistic,
                seed=args.seed, log_artifacts=not args.no_log, client=client,
            )
        except ConfigError as exc:
            if not args.all_experiments:
                raise
            print(f"{name}: skipped ({exc})")  # one empty experiment must not stop `make figures`
            continue
        logged = f"; logged to parent run {result.parent_run_id}" if result.parent_run_id else ""
        print(f"{name}: {len(result.figures)} figure(s) ({', '.join(result.figures)}), summary.csv, "
              f"report.md -> {result.out_dir}{logged}")
    return 0
