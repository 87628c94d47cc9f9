"""The distributed trainer: N agent processes, one learner, one evaluator (DQT 4.1; docs/ARCHITECTURE.md).

The learner runs in the calling process and is the only writer to MLflow. Agents explore
in parallel OS processes and hand whole episodes over through shared memory
(`core.ipc.transport`); the learner copies them into replay, trains at the configured
update-to-data ratio and publishes versioned weights. The x-axis of every metric is the
number of env steps of all agents the learner has received.

`train` sets a run up and ends it with a status whatever happens; the work is done by
`core.running.learner_loop.LearnerLoop` (episodes, updates, evals, checkpoints, metrics) and its
`core.running.agent_pool.AgentPool` (the child processes), which talk in `core.ipc.messages`.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from dqt.core.acting.envs import canonical_task, decisions_per_episode, make_run_env
from dqt.core.config import VERSION_TAG, ConfigError, RunConfig
from dqt.core.running.agent_pool import EnvSpec
from dqt.core.running.learner_loop import LearnerLoop
from dqt.core.tracking import RunTracker
from dqt.core.version import toolkit_version

__all__ = ["RunInterrupted", "TrackingOptions", "TrainResult", "config_changes", "probe_env", "resolve",
           "resolve_device", "train"]


@dataclass
class TrackingOptions:
    """Where and how `train` records the run."""

    uri: str | None = None  # None: sqlite:///<repo>/mlflow.db
    experiment: str = "dqt"
    run_name: str | None = None
    parent_run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    resume_run_id: str | None = None


@dataclass
class TrainResult:
    run_id: str
    status: str  # FINISHED | FAILED | KILLED
    final_success: float | None = None
    reason: str | None = None


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: the run ends KILLED."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device is 'cuda' but no CUDA device is available")
    return torch.device(name)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def resolve(cfg: RunConfig) -> RunConfig:
    """The config as it will run: canonical task id (raises ConfigError for unknown tasks)."""
    return replace(cfg, trainer=replace(cfg.trainer, task=canonical_task(cfg.trainer.task)))


def probe_env(cfg: RunConfig) -> EnvSpec:
    limit = decisions_per_episode(cfg.trainer.task, cfg.env.episode_length, cfg.env.action_repeat)
    env = make_run_env(cfg, seed=cfg.trainer.seed)
    try:
        return EnvSpec(int(np.prod(env.observation_space.shape)), int(env.action_space.shape[0]), limit)
    finally:
        env.close()


@contextmanager
def _signals_end_run() -> Iterator[None]:
    """SIGTERM (a sweep runner stopping us) ends the run like Ctrl-C does.

    SIGINT is caught explicitly too: a process started in the background by a non-interactive
    shell (`cmd &` in a script) inherits SIGINT ignored, and Python then installs no
    KeyboardInterrupt handler, so `kill -INT` would leave the run training forever."""

    def raise_interrupt(signum, frame):  # noqa: ARG001
        raise RunInterrupted()

    old = {sig: signal.signal(sig, raise_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def train(cfg: RunConfig | None, tracking: TrackingOptions | None = None, progress: bool = True) -> TrainResult:
    """Run one training run to the end and record it; never raises for run failures.

    With `tracking.resume_run_id`, continue that run from its last checkpoint (cfg None: the
    run's own config) into the same MLflow run.
    """
    tracking = tracking or TrackingOptions()
    checkpoint = None
    if tracking.resume_run_id:
        from dqt.core.running.resume import load_resume_point

        point = load_resume_point(tracking.uri, tracking.resume_run_id)
        if cfg is not None:  # checked before the run is reopened, so a refused resume leaves it as it was
            changed = config_changes(resolve(point.cfg), resolve(cfg))
            if changed:
                raise ConfigError(f"--resume {tracking.resume_run_id}: the config differs from the run's "
                                  f"({'; '.join(changed[:3])}); resume with the run's own config")
        cfg, checkpoint = cfg or point.cfg, point.checkpoint
        tracking = replace(tracking, experiment=point.experiment)
    cfg = resolve(cfg)
    device = resolve_device(cfg.trainer.device)
    spec = probe_env(cfg)
    tags = {"config_hash": cfg.config_hash(), "seed": str(cfg.trainer.seed), "git_commit": git_commit(),
            VERSION_TAG: toolkit_version(),
            "device": str(device), **tracking.tags}
    tracker = RunTracker(tracking.uri, tracking.experiment, run_name=tracking.run_name, tags=tags,
                         parent_run_id=tracking.parent_run_id, resume_run_id=tracking.resume_run_id)
    tracker.log_params(cfg.to_flat())
    if checkpoint is None:
        tracker.log_text(cfg.to_yaml(), "config.yaml")
    run: LearnerLoop | None = None
    try:
        with _signals_end_run():
            run = LearnerLoop(cfg, spec, device, tracker, progress, checkpoint)
            run.execute()
    except KeyboardInterrupt:
        return _end(run, tracker, "KILLED", "interrupted (SIGINT/SIGTERM)")
    except Exception as exc:  # noqa: BLE001 - any failure ends the run FAILED with its reason
        return _end(run, tracker, "FAILED", f"{type(exc).__name__}: {exc}")
    return _end(run, tracker, "FINISHED")


def config_changes(old: RunConfig, new: RunConfig) -> list[str]:
    """``key: old -> new`` for every field that differs."""
    a, b = old.to_flat(), new.to_flat()
    return [f"{k}: {a[k]} -> {b[k]}" for k in a if a[k] != b[k]]


def _end(run: LearnerLoop | None, tracker: RunTracker, status: str, reason: str | None = None) -> TrainResult:
    if run is None:  # failed while setting up: nothing to stop, but the run must not stay RUNNING
        tracker.end(status, reason=reason)
        return TrainResult(tracker.run_id, status, None, reason)
    run.end(status, reason)
    return TrainResult(tracker.run_id, status, run.last_success, reason)
