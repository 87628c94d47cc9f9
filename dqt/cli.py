"""`dqt`: the toolkit's one command (train, sweep, figures, ui).

Bad input anywhere ends with one line `dqt: error: ...` and exit code 2, before anything
is written to the tracking store.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence

from dqt.core.config import ConfigError, RunConfig, field_docs, parse_set
from dqt.core.ipc.procutil import settle_tracking

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Named `dqt train` flags -> config keys (the paper's command line plus the sweep axes).
TRAIN_FLAGS: dict[str, tuple[str, type]] = {
    "task": ("trainer.task", str),
    "num_agents": ("trainer.num_agents", int),
    "train_steps": ("trainer.train_steps", int),
    "seed": ("trainer.seed", int),
    "mode": ("trainer.mode", str),
    "device": ("trainer.device", str),
    "lr_schedule": ("learner.lr_schedule", str),
    "noise_mean": ("noise.mean", float),
    "noise_std": ("noise.std", float),
    "robust": ("noise.robust", str),
    "eval_every": ("eval.every", int),
    "eval_episodes": ("eval.episodes", int),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit 2 (not usage + message)."""

    def error(self, message: str):  # type: ignore[override]
        raise ConfigError(message)


def parse_tags(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"--tag '{item}' must look like key=value")
        out[key] = value
    return out


def resolve_train_config(args: argparse.Namespace) -> RunConfig:
    """Defaults < --config FILE < named flags < --set key=value."""
    cfg = RunConfig.from_yaml(args.config) if args.config else RunConfig()
    flags = {key: getattr(args, name) for name, (key, _) in TRAIN_FLAGS.items() if getattr(args, name) is not None}
    flags.update(parse_set(args.set))
    return RunConfig.from_flat(flags, base=cfg)


def add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train one Q-Transformer run (agents in parallel processes)",
                       description="Train one run; every config field can be set with --set section.field=value "
                                   "(see `dqt train --list-config`).")
    for name, (key, typ) in TRAIN_FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), type=str, default=None, metavar=typ.__name__.upper(),
                       help=f"{field_docs()[key]} [{key}]")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file with any config fields (sections as in config.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config field")
    p.add_argument("--experiment", default="dqt", help="MLflow experiment name (default: dqt)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite:///<repo>/mlflow.db)")
    p.add_argument("--run-name", default=None)
    p.add_argument("--parent-run-id", default=None, help="make this run a child of that MLflow run (sweeps)")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="extra MLflow run tag")
    p.add_argument("--resume", default=None, metavar="RUN_ID", help="continue that run from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--list-config", action="store_true", help="print every config field with its default and exit")
    p.set_defaults(handler=cmd_train)


def check_store_args(args: argparse.Namespace) -> str:
    """The resolved tracking URI, once the flags that name things in the store make sense.

    Runs before anything opens the store: opening a SQLite URI creates ``mlflow.db``, so
    bad input (an empty experiment name, a run to resume or attach to in a store that does
    not exist yet) must fail here, leaving no empty database behind.
    """
    from dqt.core.tracking import resolve_tracking_uri, sqlite_path

    if not args.experiment.strip():
        raise ConfigError(f"--experiment must name an MLflow experiment, got {args.experiment!r}")
    uri = resolve_tracking_uri(args.tracking_uri)
    db = sqlite_path(uri)
    for flag, run_id in (("--resume", args.resume), ("--parent-run-id", args.parent_run_id)):
        if run_id is None:
            continue
        if not run_id.strip():
            raise ConfigError(f"{flag} must name a run id, got {run_id!r}")
        if db is not None and not db.exists():
            raise ConfigError(f"{flag} {run_id}: no such run: the tracking store {db} does not exist")
    return uri


def cmd_train(args: argparse.Namespace) -> int:
    if args.list_config:
        for key, value in RunConfig().to_flat().items():
            print(f"{key} = {value!r}\n    {field_docs()[key]}")
        return 0
    uri = check_store_args(args)
    given = args.config or args.set or any(getattr(args, name) is not None for name in TRAIN_FLAGS)
    # --resume alone continues with the run's own config; with a config, it must match the run's.
    cfg = resolve_train_config(args) if given or not args.resume else None
    from dqt.core.running.trainer import TrackingOptions, resolve, train

    if cfg is not None:
        cfg = resolve(cfg)  # unknown task -> ConfigError before the store is touched
    tags = parse_tags(args.tag)
    if args.resume:
        refuse_a_run_claimed_elsewhere(uri, args.resume, tags.get("dqt.claim"))
    opts = TrackingOptions(uri=uri, experiment=args.experiment, run_name=args.run_name,
                           parent_run_id=args.parent_run_id, tags=tags, resume_run_id=args.resume)
    result = train(cfg, opts, progress=not args.quiet)
    stream = sys.stderr if result.status != "FINISHED" else sys.stdout
    extra = f" ({result.reason})" if result.reason else ""
    print(f"run {result.run_id} {result.status}{extra}", file=stream)
    return {"FINISHED": 0, "KILLED": EXIT_INTERRUPTED}.get(result.status, 1)


def refuse_a_run_claimed_elsewhere(uri: str, run_id: str, our_claim: str | None) -> None:
    """`--resume` of a sweep point's run while the claim it records is live on a worker (the
    sweep's own run of it goes on there): resuming it here would run the point twice. The
    claim queue is ``$DQT_STORAGE`` or the one next to a SQLite store; elsewhere nothing can
    be checked. A sweep resuming the run under a claim of its own passes that claim."""
    if importlib.util.find_spec("dqt.sweeps.claims") is None:
        return
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from dqt.sweeps.claims import STORAGE_ENV, default_storage, live_holder

    try:
        claim = MlflowClient(uri).get_run(run_id).data.tags.get("dqt.claim")
    except MlflowException:
        return  # no such run: `train` says so
    if not claim or claim == our_claim:
        return
    try:
        storage = os.environ.get(STORAGE_ENV) or default_storage(uri)
    except ConfigError:
        return
    holder = live_holder(claim, storage)
    if holder is not None:
        raise ConfigError(f"--resume {run_id}: its point is claimed ({claim}) by the live sweep worker {holder}, "
                          "which runs it; stop that worker first, or let its claim go stale")


def add_ui_parser(sub) -> None:
    p = sub.add_parser("ui", help="browse the tracking store in the MLflow UI")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(handler=cmd_ui)


def cmd_ui(args: argparse.Namespace) -> int:
    from dqt.core.tracking import resolve_tracking_uri
    from dqt.ui import serve_ui

    return serve_ui(resolve_tracking_uri(args.tracking_uri), host=args.host, port=args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="dqt", description="Distributed Q-Transformer sweep toolkit.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    add_train_parser(sub)
    for module in ("dqt.sweeps.cli", "dqt.analysis.cli"):
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module).register(sub)
    add_ui_parser(sub)
    return parser


def refused_credentials(exc: BaseException) -> str | None:
    """One line for a tracking server that refused us (HTTP 401/403: basic auth), else None."""
    text = str(exc)
    code = getattr(exc, "error_code", "")
    if code in ("UNAUTHENTICATED", "PERMISSION_DENIED") or "error code 401" in text or "error code 403" in text:
        what = "refused the credentials" if "403" in text or code == "PERMISSION_DENIED" else "asks for credentials"
        return (f"the tracking server {what} ({text.split('Response body:')[0].strip().rstrip('.')}); set "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD in the environment of every process")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "handler", None):
            parser.print_help()
            return EXIT_USAGE
        return args.handler(args)
    except ConfigError as exc:
        print(f"dqt: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - one kind is the user's to fix: say it in one line
        refused = refused_credentials(exc)
        if refused is None:
            raise
        print(f"dqt: error: {refused}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dqt: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def entry() -> None:
    """The console script: run, flush, and leave without the interpreter's slow teardown.

    Everything a run owns is persisted before `main` returns; tearing down torch, MuJoCo and
    their thread pools only added seconds to every exit (and to every Ctrl-C).
    """
    try:
        code = main()
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # `dqt sweep --dry-run | head` ends quietly (SIGPIPE stays ignored:
        code = 0  # the learner must see EPIPE from an exited agent's pipe, not die of it)
    settle_tracking()  # os._exit skips atexit: leave mlflow.db self-contained first
    os._exit(code)


if __name__ == "__main__":
    entry()
