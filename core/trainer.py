"""The distributed trainer: N agent processes, one learner, one evaluator (DQT 4.1, DESIGN §4).

The learner runs in the calling process and is the only writer to MLflow. Agents explore
in parallel OS processes and hand whole episodes over through shared memory
(`core.transport`); the learner copies them into replay, trains at the configured
update-to-data ratio and publishes versioned weights. The x-axis of every metric is the
number of env steps of all agents the learner has received.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import queue
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from core.actor import AgentChannels, agent_main
from core.checkpoint import CHECKPOINT_FILE, save_checkpoint
from core.config import ConfigError, RunConfig
from core.envs import canonical_task, make_env
from core.evaluator import eval_main
from core.learner import Learner
from core.progress import Progress
from core.replay import ReplayBuffer
from core.tracking import RunTracker
from core.transport import EpisodeSlots, SlotLayout, WeightBoard

DEFAULT_EPISODE_LIMIT = 500  # MetaWorld's max_path_length
ASYNC_SLOTS = 4  # episodes an async agent may have in flight before it would wait
LOG_INTERVAL_S = 1.0


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


@dataclass
class EnvSpec:
    obs_dim: int
    action_dims: int
    episode_limit: int


def probe_env(cfg: RunConfig) -> EnvSpec:
    env = make_env(cfg.trainer.task, seed=cfg.trainer.seed, max_episode_steps=cfg.trainer.max_episode_steps)
    try:
        limit = (cfg.trainer.max_episode_steps or (env.spec.max_episode_steps if env.spec else None)
                 or getattr(env.unwrapped, "max_episode_steps", None) or getattr(env.unwrapped, "max_path_length", None))
        return EnvSpec(int(np.prod(env.observation_space.shape)), int(env.action_space.shape[0]),
                       int(limit or DEFAULT_EPISODE_LIMIT))
    finally:
        env.close()


@contextmanager
def _signals_end_run() -> Iterator[None]:
    """SIGTERM (a sweep runner stopping us) ends the run like Ctrl-C does."""

    def raise_interrupt(signum, frame):  # noqa: ARG001
        raise RunInterrupted()

    old = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def train(cfg: RunConfig, tracking: TrackingOptions | None = None, progress: bool = True) -> TrainResult:
    """Run one training run to the end and record it; never raises for run failures."""
    tracking = tracking or TrackingOptions()
    cfg = resolve(cfg)
    device = resolve_device(cfg.trainer.device)
    spec = probe_env(cfg)
    tags = {"config_hash": cfg.config_hash(), "seed": str(cfg.trainer.seed), "git_commit": git_commit(),
            "device": str(device), **tracking.tags}
    tracker = RunTracker(tracking.uri, tracking.experiment, run_name=tracking.run_name, tags=tags,
                         parent_run_id=tracking.parent_run_id, resume_run_id=tracking.resume_run_id)
    tracker.log_params(cfg.to_flat())
    tracker.log_text(cfg.to_yaml(), "config.yaml")
    run = _Run(cfg, spec, device, tracker, progress)
    try:
        with _signals_end_run():
            run.execute()
    except KeyboardInterrupt:
        run.shutdown()
        run.save_checkpoint(log=True)
        tracker.end("KILLED", reason="interrupted (SIGINT/SIGTERM)")
        return TrainResult(tracker.run_id, "KILLED", run.last_success, "interrupted")
    except Exception as exc:  # noqa: BLE001 - any failure ends the run FAILED with its reason
        run.shutdown()
        reason = f"{type(exc).__name__}: {exc}"
        tracker.end("FAILED", reason=reason)
        return TrainResult(tracker.run_id, "FAILED", run.last_success, reason)
    run.shutdown()
    tracker.end("FINISHED")
    return TrainResult(tracker.run_id, "FINISHED", run.last_success)


class _Run:
    """State of one run in the learner process."""

    def __init__(self, cfg: RunConfig, spec: EnvSpec, device: torch.device, tracker: RunTracker, progress: bool):
        self.cfg, self.spec, self.device, self.tracker = cfg, spec, device, tracker
        tr, lc = cfg.trainer, cfg.learner
        self.n_agents = tr.num_agents
        self.batch_size = lc.batch_size * (self.n_agents if lc.batch_per_agent else 1)
        self.total_updates = max(1, math.ceil(lc.updates_per_step * max(tr.train_steps - lc.warmup_steps, 1)))
        if device.type == "cpu":
            torch.set_num_threads(max(1, (os.cpu_count() or 1) - self.n_agents))
        torch.manual_seed(tr.seed)
        self.learner = Learner(spec.obs_dim, spec.action_dims, cfg, device=device,
                               total_updates=self.total_updates, num_agents=self.n_agents)
        self.replay = ReplayBuffer(min(lc.replay_capacity, tr.train_steps), spec.obs_dim, spec.action_dims,
                                   lc.gamma, lc.n_step)
        self.rng = np.random.default_rng([tr.seed, 7])
        self.progress = Progress(tr.train_steps, enabled=progress)
        self.ctx = mp.get_context("spawn")
        self.procs: dict[str, mp.process.BaseProcess] = {}
        self.slots: EpisodeSlots | None = None
        self.ch: AgentChannels | None = None
        self.ckpt_dir = Path(tempfile.mkdtemp(prefix="dqt-ckpt-"))
        # counters
        self.env_steps = 0  # received by the learner: the x-axis
        self.episodes = 0
        self.last_eval_step = -1
        self.next_eval = 0
        self.pending_evals: set[int] = set()
        self.last_success: float | None = None
        self.done_agents: set[int] = set()
        self.window = _Window()
        self.agent_log = _AgentLog()
        self.started = time.monotonic()

    # ---- processes ----------------------------------------------------------------------
    def start_processes(self) -> None:
        sync = self.cfg.trainer.mode == "sync"
        lanes = self.n_agents * self.cfg.trainer.envs_per_agent
        layout = SlotLayout(lanes, 1 if sync else ASYNC_SLOTS, self.spec.episode_limit,
                            self.spec.obs_dim, self.spec.action_dims)
        self.slots = EpisodeSlots(layout)
        numel = sum(p.numel() for p in self.learner.model.parameters())
        board = WeightBoard(numel, self.ctx)
        board.publish(self.learner.model)
        self.ch = AgentChannels(layout, self.slots.names, board, self.ctx.Value("q", 0), self.ctx.Queue(),
                                [self.ctx.Queue() for _ in range(lanes)], self.ctx.Event())
        for lane in range(lanes):
            for s in range(layout.slots):
                self.ch.free_slots[lane].put(s)
        self.eval_requests, self.eval_results = self.ctx.Queue(), self.ctx.Queue()
        me = os.getpid()
        self.procs["eval"] = self.ctx.Process(
            target=eval_main, name="dqt-eval", daemon=True,
            args=(self.cfg, self.spec.obs_dim, self.spec.action_dims, self.eval_requests, self.eval_results, me))
        for a in range(self.n_agents):
            self.procs[f"agent{a}"] = self.ctx.Process(target=agent_main, name=f"dqt-agent{a}", daemon=True,
                                                       args=(a, self.cfg, self.ch, me))
        for p in self.procs.values():
            p.start()

    def shutdown(self) -> None:
        """Stop every child of the run within a few seconds, whatever state they are in."""
        if self.ch is not None:
            self.ch.stop.set()
        if "eval" in self.procs:
            try:
                self.eval_requests.put_nowait(None)
            except Exception:  # noqa: BLE001
                pass
        deadline = time.monotonic() + 3.0
        for p in self.procs.values():
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in self.procs.values():
            if p.is_alive():
                p.kill()
                p.join(timeout=1.0)
        self.procs.clear()
        if self.slots is not None:
            self.slots.close()
            self.slots = None
        self.progress.close()

    def check_children(self) -> None:
        for name, p in self.procs.items():
            if not p.is_alive() and p.exitcode not in (0, None):
                raise RuntimeError(f"{name} process died (exit code {p.exitcode})")
            if name.startswith("agent") and not p.is_alive() and int(name[5:]) not in self.done_agents:
                raise RuntimeError(f"{name} process exited before its work was done")

    # ---- main loop ----------------------------------------------------------------------
    def execute(self) -> None:
        self.start_processes()
        sync = self.cfg.trainer.mode == "sync"
        last_log = time.monotonic()
        while len(self.done_agents) < self.n_agents:
            owed = self.updates_owed()
            try:
                msg = self.ch.episodes.get(timeout=0.0 if (owed and not sync) else 0.05)
            except queue.Empty:
                msg = None
            if msg is not None:
                self.handle(msg, sync)
            elif owed and not sync:
                self.train_updates(min(owed, 4))
            self.maybe_request_eval()
            self.collect_evals(block=False)
            if time.monotonic() - last_log >= LOG_INTERVAL_S:
                self.check_children()
                self.log_window()
                last_log = time.monotonic()
        self.finish()

    def handle(self, msg: tuple, sync: bool) -> None:
        if msg[0] == "done":
            self.done_agents.add(msg[1])
            return
        _, lane, slot, length, terminated, true_return, success, version, eps, (agent, pid, t0, t1) = msg
        self.agent_log.record(agent, pid, length, t0, t1)
        arr = self.slots.arrays
        self.replay.add_episode(arr["obs"][lane, slot, : length + 1], arr["bins"][lane, slot, :length],
                                arr["rewards"][lane, slot, :length], terminated)
        self.env_steps += length
        self.episodes += 1
        self.window.episode(true_return, success, self.ch.board.version.value - version, eps)
        self.tracker.log_metrics({"train/episode_return": true_return, "train/success": float(success)},
                                 step=self.env_steps)
        if sync:  # the paper: train on the episode, publish, only then let the agent go on
            self.train_updates(self.updates_owed())
        self.ch.free_slots[lane].put(slot)

    def updates_owed(self) -> int:
        lc = self.cfg.learner
        target = math.floor(lc.updates_per_step * max(0, self.env_steps - lc.warmup_steps))
        return max(0, min(target, self.total_updates) - self.learner.updates) if len(self.replay) else 0

    def train_updates(self, n: int) -> None:
        if n <= 0:
            return
        for _ in range(n):
            batch = self.replay.sample(self.batch_size, self.rng).to(self.device)
            try:
                metrics = self.learner.update(batch)
            except FloatingPointError as exc:
                raise FloatingPointError(f"{exc} (env step {self.env_steps})") from None
            self.window.update(metrics)
        self.ch.board.publish(self.learner.model)
        every = self.cfg.trainer.checkpoint_every
        if every and self.env_steps // every > getattr(self, "_ckpt_mark", 0):
            self._ckpt_mark = self.env_steps // every
            self.save_checkpoint(log=True)

    # ---- evaluation ---------------------------------------------------------------------
    def maybe_request_eval(self, force: bool = False) -> None:
        if (self.env_steps >= self.next_eval or force) and self.env_steps != self.last_eval_step:
            flat = torch.nn.utils.parameters_to_vector(self.learner.model.parameters()).detach().cpu().numpy()
            self.eval_requests.put((self.env_steps, flat))
            self.pending_evals.add(self.env_steps)
            self.last_eval_step = self.env_steps
            every = self.cfg.eval.every
            self.next_eval = (self.env_steps // every + 1) * every

    def collect_evals(self, block: bool) -> None:
        deadline = time.monotonic() + 3600
        while self.pending_evals:
            try:
                step, success, ret = self.eval_results.get(timeout=0.5 if block else 0.0)
            except queue.Empty:
                if not block:
                    return
                if not self.procs["eval"].is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the evaluation process stopped before finishing its episodes") from None
                continue
            self.pending_evals.discard(step)
            self.last_success = success
            self.tracker.log_metrics({"eval/success_rate": success, "eval/return": ret}, step=step)

    # ---- logging ------------------------------------------------------------------------
    def log_window(self, final: bool = False) -> None:
        now = time.monotonic()
        metrics = self.window.flush(now, self.env_steps, self.learner.updates, final)
        metrics["time/wall_s"] = now - self.started
        self.tracker.log_metrics(metrics, step=self.env_steps)
        self.progress.update(self.env_steps, metrics["perf/env_steps_per_s"], metrics["perf/updates_per_s"],
                             self.last_success, force=final)

    def save_checkpoint(self, log: bool) -> Path | None:
        if not hasattr(self, "learner"):
            return None
        path = save_checkpoint(self.ckpt_dir / CHECKPOINT_FILE, self.learner.state_dict(), self.env_steps,
                               {"episodes": self.episodes, "config": self.cfg.to_flat()})
        if log:
            self.tracker.log_artifact(str(path), "checkpoint")
        return path

    def finish(self) -> None:
        self.maybe_request_eval(force=True)  # the curve always ends at the budget
        self.collect_evals(block=True)
        self.log_window(final=True)
        self.save_checkpoint(log=True)
        self.tracker.log_text(json.dumps(self.agent_log.summary(), indent=2), "agents.json")


class _AgentLog:
    """Who collected what, and when: shows that agents really ran side by side."""

    def __init__(self):
        self.agents: dict[int, dict] = {}

    def record(self, agent: int, pid: int, steps: int, t0: float, t1: float) -> None:
        a = self.agents.setdefault(agent, {"pids": [], "env_steps": 0, "episodes": 0, "intervals": []})
        if pid not in a["pids"]:
            a["pids"].append(pid)
        a["env_steps"] += steps
        a["episodes"] += 1
        a["intervals"].append((t0, t1))

    def summary(self) -> dict[str, dict]:
        return {str(k): v for k, v in sorted(self.agents.items())}


class _Window:
    """Training metrics accumulated between two log points."""

    def __init__(self):
        self.t_last = time.monotonic()
        self.steps_last = 0
        self.updates_last = 0
        self.sums: dict[str, float] = {}
        self.count = 0
        self.latest: dict[str, float] = {}
        self.lags: list[int] = []
        self.epsilon = 1.0

    def episode(self, ret: float, success: bool, lag: int, eps: float) -> None:
        self.lags.append(lag)
        self.epsilon = eps

    def update(self, metrics: dict) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.count += 1

    def flush(self, now: float, steps: int, updates: int, final: bool) -> dict[str, float]:
        dt = max(now - self.t_last, 1e-9)
        out = {
            "perf/env_steps_per_s": (steps - self.steps_last) / dt,
            "perf/updates_per_s": (updates - self.updates_last) / dt,
            "explore/epsilon": self.epsilon,
        }
        if self.lags:
            out["perf/policy_lag"] = float(np.mean(self.lags))
        if self.count:
            self.latest = {k: v / self.count for k, v in self.sums.items()}
        out.update(self.latest if (self.count or final) else {})
        self.t_last, self.steps_last, self.updates_last = now, steps, updates
        self.sums, self.count, self.lags = {}, 0, []
        return out
