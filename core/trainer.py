"""The distributed trainer: N agent processes, one learner, one evaluator (DQT 4.1; docs/ARCHITECTURE.md).

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
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from multiprocessing import connection as mp_connection
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.actor import AgentChannels, agent_main
from core.checkpoint import CHECKPOINT_FILE, save_checkpoint
from core.config import ConfigError, RunConfig
from core.envs import canonical_task, decisions_per_episode, make_run_env
from core.evaluator import eval_main
from core.learner import Learner
from core.progress import Progress
from core.replay import ReplayBuffer
from core.seeding import generator, torch_seed
from core.tracking import RunTracker
from core.transport import EpisodeSlots, SlotLayout, WeightBoard

ASYNC_SLOTS = 4  # episodes an async lane may have in flight before it would wait
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
    episode_limit: int  # decisions per episode: the length of an episode slot


def probe_env(cfg: RunConfig) -> EnvSpec:
    limit = decisions_per_episode(cfg.trainer.task, cfg.env.episode_length, cfg.env.action_repeat)
    env = make_run_env(cfg, seed=cfg.trainer.seed)
    try:
        return EnvSpec(int(np.prod(env.observation_space.shape)), int(env.action_space.shape[0]), limit)
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


def train(cfg: RunConfig | None, tracking: TrackingOptions | None = None, progress: bool = True) -> TrainResult:
    """Run one training run to the end and record it; never raises for run failures.

    With `tracking.resume_run_id`, continue that run from its last checkpoint (cfg None: the
    run's own config) into the same MLflow run.
    """
    tracking = tracking or TrackingOptions()
    checkpoint = None
    if tracking.resume_run_id:
        from core.resume import load_resume_point

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
            "device": str(device), **tracking.tags}
    tracker = RunTracker(tracking.uri, tracking.experiment, run_name=tracking.run_name, tags=tags,
                         parent_run_id=tracking.parent_run_id, resume_run_id=tracking.resume_run_id)
    tracker.log_params(cfg.to_flat())
    if checkpoint is None:
        tracker.log_text(cfg.to_yaml(), "config.yaml")
    run: _Run | None = None
    try:
        with _signals_end_run():
            run = _Run(cfg, spec, device, tracker, progress, checkpoint)
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


def _end(run: _Run | None, tracker: RunTracker, status: str, reason: str | None = None) -> TrainResult:
    if run is None:  # failed while setting up: nothing to stop, but the run must not stay RUNNING
        tracker.end(status, reason=reason)
        return TrainResult(tracker.run_id, status, None, reason)
    return run.end(status, reason)


@dataclass
class _Agent:
    proc: mp.process.BaseProcess
    reader: Any  # Connection agent -> learner
    writer: Any  # Connection learner -> agent
    lanes: range


def split_budget(total: int, parts: int) -> list[int]:
    """`total` env steps as `parts` near-equal lane quotas that add up exactly."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class _Run:
    """State of one run in the learner process."""

    def __init__(self, cfg: RunConfig, spec: EnvSpec, device: torch.device, tracker: RunTracker, progress: bool,
                 checkpoint: dict | None = None):
        self.cfg, self.spec, self.device, self.tracker = cfg, spec, device, tracker
        tr, lc = cfg.trainer, cfg.learner
        self.n_agents = tr.num_agents
        self.n_lanes = tr.num_agents * tr.envs_per_agent
        self.batch_size = lc.batch_size * (self.n_agents if lc.batch_per_agent else 1)
        self.repeat = cfg.env.action_repeat  # env steps per decision
        self.total_updates = max(1, math.ceil(lc.updates_per_step * max(tr.train_steps - lc.warmup_steps, 1)
                                              / self.repeat))
        if device.type == "cpu":
            torch.set_num_threads(max(1, (os.cpu_count() or 1) - self.n_agents))
        torch.manual_seed(torch_seed(tr.seed))
        self.learner = Learner(spec.obs_dim, spec.action_dims, cfg, device=device,
                               total_updates=self.total_updates, num_agents=self.n_agents)
        self.env_steps = 0  # received by the learner: the x-axis of every metric
        self.episodes = 0
        self.resumes = 0
        if checkpoint is not None:  # --resume: model, optimiser, target, schedules, env-step counter
            self.learner.load_state_dict(checkpoint["learner"])
            self.env_steps, self.episodes = int(checkpoint["env_steps"]), int(checkpoint["episodes"])
            self.resumes = int(checkpoint.get("resumes", 0)) + 1
        self.replay = ReplayBuffer(min(lc.replay_capacity, tr.train_steps // self.repeat), spec.obs_dim,
                                   spec.action_dims, lc.gamma, lc.n_step, lc.replay_sampling, lc.replay_return_floor)
        self.rng = generator(tr.seed, "replay")
        if checkpoint is not None and "replay" in checkpoint:  # --resume trains on the same data, same draws
            self.replay.load_state_dict(checkpoint["replay"])
            self.rng.bit_generator.state = checkpoint["replay_rng"]
        self.steps_before = self.env_steps  # the global env-step clock of epsilon and warm-up goes on from here
        self.held: list[tuple[int, int, int]] = []  # async slots (agent, lane, slot) held back by the backlog bound
        # Each lane gets a fixed share of the remaining decisions: no shared counter to lock.
        self.quota = split_budget((tr.train_steps - self.env_steps) // self.repeat, self.n_lanes)
        self.delivered = [0] * self.n_lanes  # decisions per lane received
        self.progress = Progress(tr.train_steps, enabled=progress)
        self.ctx = mp.get_context("spawn")
        self.agents: dict[int, _Agent] = {}
        self.eval_proc: mp.process.BaseProcess | None = None
        self.slots: EpisodeSlots | None = None
        self.ckpt_dir = Path(tempfile.mkdtemp(prefix="dqt-ckpt-"))
        self.ckpt_mark = self.env_steps // tr.checkpoint_every if tr.checkpoint_every else 0
        self.restarts = 0
        self.last_eval_step = -1
        self.next_eval = self.env_steps
        self.pending_evals: set[int] = set()
        self.last_success: float | None = None
        self.done_agents: set[int] = set()
        self.window = _Window(self.env_steps)
        self.agent_log = _AgentLog()
        self.started = time.monotonic()
        self.wall_before = float(checkpoint.get("wall_s", 0.0)) if checkpoint else 0.0  # resumed runs go on counting

    # ---- processes ----------------------------------------------------------------------
    def start_processes(self) -> None:
        sync = self.cfg.trainer.mode == "sync"
        self.layout = SlotLayout(self.n_lanes, 1 if sync else ASYNC_SLOTS, self.spec.episode_limit,
                                 self.spec.obs_dim, self.spec.action_dims)
        self.slots = EpisodeSlots(self.layout)
        self.board = WeightBoard(sum(p.numel() for p in self.learner.model.parameters()), self.ctx)
        self.board.publish(self.learner.model, self.learner.updates)
        self.claimed = self.ctx.RawArray("q", self.n_lanes)
        self.stop = self.ctx.Event()
        self.eval_requests, self.eval_results = self.ctx.Queue(), self.ctx.Queue()
        self.eval_proc = self.ctx.Process(
            target=eval_main, name="dqt-eval", daemon=True,
            args=(self.cfg, self.spec.obs_dim, self.spec.action_dims, self.eval_requests, self.eval_results,
                  os.getpid()))
        self.eval_proc.start()
        self.tracker.set_tags({"pid.learner": os.getpid(), "pid.eval": self.eval_proc.pid})
        for a in range(self.n_agents):
            self.spawn_agent(a, stream=1000 * self.resumes)

    def spawn_agent(self, a: int, stream: int) -> None:
        e = self.cfg.trainer.envs_per_agent
        lanes = range(a * e, (a + 1) * e)
        up_r, up_w = self.ctx.Pipe(duplex=False)
        down_r, down_w = self.ctx.Pipe(duplex=False)
        ch = AgentChannels(self.layout, self.slots.names, self.board, self.claimed, self.quota, lanes, up_w,
                           down_r, self.stop, self.steps_before)
        proc = self.ctx.Process(target=agent_main, name=f"dqt-agent{a}", daemon=True,
                                args=(a, self.cfg, ch, os.getpid(), stream))
        proc.start()
        up_w.close()  # only the agent writes: its death then reads as EOF here
        down_r.close()
        for lane in lanes:
            for s in range(self.layout.slots):
                down_w.send((lane, s))
        self.agents[a] = _Agent(proc, up_r, down_w, lanes)
        self.tracker.set_tags({f"pid.agent{a}": proc.pid})  # which OS process explores, for people and tests

    def restart_agent(self, a: int) -> None:
        """A dead agent's lanes continue in a new process, with the steps it took but never
        delivered given back to their quota (so the run still ends at exactly its budget)."""
        agent = self.agents[a]
        self.drain(agent)
        if a in self.done_agents:  # a finished agent exits at once: its "done" was still in the pipe
            return
        limit = self.cfg.trainer.max_agent_restarts
        code = agent.proc.exitcode
        if self.restarts >= limit:
            raise RuntimeError(f"agent {a} died (exit code {code}) and the restart limit ({limit}) is reached")
        self.restarts += 1
        self.held = [h for h in self.held if h[0] != a]  # the new agent gets every slot of its lanes anew
        for conn in (agent.reader, agent.writer):
            conn.close()
        claimed = np.frombuffer(self.claimed, dtype=np.int64)
        for lane in agent.lanes:
            claimed[lane] = self.delivered[lane]
        self.spawn_agent(a, stream=1000 * self.resumes + self.restarts)
        self.tracker.set_tags({"agent_restarts": self.restarts, f"agent_restart_{self.restarts}":
                               f"agent {a} exit code {code} at env step {self.env_steps}"})
        self.tracker.log_metrics({"perf/agent_restarts": self.restarts}, step=self.env_steps)

    def drain(self, agent: _Agent) -> None:
        """Take in whatever the agent sent before it died."""
        try:
            while agent.reader.poll():
                self.handle(agent.reader.recv())
        except (EOFError, OSError):
            pass

    def shutdown(self) -> None:
        """Stop every child of the run within a few seconds, whatever state they are in."""
        if getattr(self, "stop", None) is not None:
            self.stop.set()
        if self.eval_proc is not None:
            try:
                self.eval_requests.put_nowait(None)
            except Exception:  # noqa: BLE001
                pass
        procs = [a.proc for a in self.agents.values()] + ([self.eval_proc] if self.eval_proc else [])
        procs = [p for p in procs if p.pid is not None]  # a child whose start() failed has nothing to stop
        deadline = time.monotonic() + 3.0
        for p in procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(timeout=1.0)
        self.agents.clear()
        self.eval_proc = None
        if self.slots is not None:
            self.slots.close()
            self.slots = None
        self.progress.close()

    def check_children(self) -> None:
        if self.eval_proc is not None and not self.eval_proc.is_alive():
            raise RuntimeError(f"the evaluation process died (exit code {self.eval_proc.exitcode})")
        for a, agent in list(self.agents.items()):
            if a not in self.done_agents and not agent.proc.is_alive():
                self.restart_agent(a)

    # ---- main loop ----------------------------------------------------------------------
    def execute(self) -> None:
        self.start_processes()
        sync = self.cfg.trainer.mode == "sync"
        last_log = time.monotonic()
        while len(self.done_agents) < self.n_agents:
            owed = self.updates_owed()
            readers = [agent.reader for a, agent in self.agents.items() if a not in self.done_agents]
            ready = mp_connection.wait(readers, timeout=0.0 if (owed and not sync) else 0.05)
            for conn in ready:
                try:
                    msg = conn.recv()
                except (EOFError, OSError):  # the agent died: restart it (or fail past the limit)
                    self.check_children()
                    continue
                self.handle(msg)
            if not ready and owed and not sync:
                self.train_updates(min(owed, 4))
                self.release_slots()
            self.maybe_request_eval()
            self.collect_evals(block=False)
            if time.monotonic() - last_log >= LOG_INTERVAL_S:
                self.check_children()
                self.log_window()
                last_log = time.monotonic()
        self.finish()

    def handle(self, msg: tuple) -> None:
        if msg[0] == "done":
            self.done_agents.add(msg[1])
            return
        _, lane, slot, length, terminated, true_return, success, weights_updates, eps, (agent, pid, t0, t1) = msg
        self.agent_log.record(agent, pid, length * self.repeat, t0, t1)
        arr = self.slots.arrays
        self.replay.add_episode(arr["obs"][lane, slot, : length + 1], arr["bins"][lane, slot, :length],
                                arr["rewards"][lane, slot, :length], terminated)
        self.env_steps += length * self.repeat
        self.delivered[lane] += length
        self.episodes += 1
        # policy lag, the same in both modes: learner updates made since the weights the episode acted with
        self.window.episode(self.learner.updates - weights_updates, eps)
        self.tracker.log_metrics({"train/episode_return": true_return, "train/success": float(success)},
                                 step=self.env_steps)
        if self.cfg.trainer.mode == "sync":  # the paper: train on the episode, publish, then let it go on
            self.train_updates(self.updates_owed())
        self.held.append((agent, lane, slot))
        self.release_slots()
        every = self.cfg.trainer.checkpoint_every
        if every and self.env_steps // every > self.ckpt_mark:
            self.ckpt_mark = self.env_steps // every
            self.save_checkpoint()

    def release_slots(self) -> None:
        """Hand held slots back, unless (async) the learner owes more updates than the backlog bound."""
        bound = self.cfg.trainer.max_update_backlog
        if bound and self.updates_owed() > bound:
            return
        for agent, lane, slot in self.held:
            try:
                self.agents[agent].writer.send((lane, slot))
            except (OSError, KeyError):  # the agent has exited (finished or died); a restarted one gets every slot anew
                pass
        self.held.clear()

    def updates_owed(self) -> int:
        lc = self.cfg.learner
        target = math.floor(lc.updates_per_step * max(0, self.env_steps - lc.warmup_steps) / self.repeat)
        return max(0, min(target, self.total_updates) - self.learner.updates) if len(self.replay) else 0

    def train_updates(self, n: int) -> None:
        if n <= 0:
            return
        poison = self.cfg.learner.debug_nan_at_update
        for _ in range(n):
            batch = self.replay.sample(self.batch_size, self.rng).to(self.device)
            if poison and self.learner.updates == poison:
                batch.ret[0] = float("nan")  # test hook: a corrupted reward must fail the run
            try:
                metrics = self.learner.update(batch)
            except FloatingPointError as exc:
                raise FloatingPointError(f"{exc} (env step {self.env_steps})") from None
            self.window.update(metrics)
        self.board.publish(self.learner.model, self.learner.updates)

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
        while self.pending_evals:
            try:
                step, success, ret = self.eval_results.get(timeout=0.5 if block else 0.0)
            except queue.Empty:
                if not block:
                    return
                if self.eval_proc is None or not self.eval_proc.is_alive():
                    raise RuntimeError("the evaluation process stopped before finishing its episodes") from None
                continue
            self.pending_evals.discard(step)
            self.last_success = success
            self.tracker.log_metrics({"eval/success_rate": success, "eval/return": ret}, step=step)

    # ---- logging and ending -------------------------------------------------------------
    def log_window(self, final: bool = False) -> None:
        # One point per step keeps histories clean: a tick logs only when new steps arrived, and
        # the budget's last step is left to the final point, which comes after every update.
        if not final and (self.env_steps == self.window.steps_last
                          or self.env_steps >= self.cfg.trainer.train_steps):
            return
        now = time.monotonic()
        metrics = self.window.flush(now, self.env_steps, self.learner.updates, final)
        metrics["time/wall_s"] = self.wall_s()
        metrics["perf/update_backlog"] = self.updates_owed()  # async: bounded by trainer.max_update_backlog
        self.tracker.log_metrics(metrics, step=self.env_steps)
        self.progress.update(self.env_steps, metrics["perf/env_steps_per_s"], metrics["perf/updates_per_s"],
                             self.last_success, force=final)

    def wall_s(self) -> float:
        return self.wall_before + time.monotonic() - self.started

    def save_checkpoint(self) -> None:
        """Write the checkpoint and log it as the run's `checkpoint/` artifact (replaced each time)."""
        extra = {"episodes": self.episodes, "resumes": self.resumes, "wall_s": self.wall_s(),
                 "config": self.cfg.to_flat()}
        if self.cfg.trainer.checkpoint_replay:
            extra |= {"replay": self.replay.state_dict(), "replay_rng": self.rng.bit_generator.state}
        path = save_checkpoint(self.ckpt_dir / CHECKPOINT_FILE, self.learner.state_dict(), self.env_steps, extra)
        self.tracker.log_artifact(str(path), "checkpoint")

    def finish(self) -> None:
        # Async agents never wait, so the learner may trail them; it still makes every update the
        # update-to-data ratio promised, so sync and async runs get the same amount of learning.
        owed = self.updates_owed()
        while owed:
            self.train_updates(min(owed, 64))
            owed = self.updates_owed()
        self.maybe_request_eval(force=True)  # the curve always ends at the budget
        self.collect_evals(block=True)
        self.log_window(final=True)
        self.save_checkpoint()
        self.tracker.log_text(json.dumps(self.agent_log.summary(), indent=2), "agents.json")

    def end(self, status: str, reason: str | None = None) -> TrainResult:
        """Stop the children, keep a checkpoint of an unfinished run, close the MLflow run."""
        self.shutdown()
        if status != "FINISHED":
            try:
                self.save_checkpoint()  # what the run learnt so far, for --resume
            except Exception:  # noqa: BLE001 - the run's status matters more than this artifact
                pass
        self.tracker.end(status, reason=reason)
        shutil.rmtree(self.ckpt_dir, ignore_errors=True)  # the checkpoint lives on as the run's artifact
        return TrainResult(self.tracker.run_id, status, self.last_success, reason)


class _AgentLog:
    """Who collected what, and when: shows that agents really ran side by side."""

    def __init__(self):
        self.agents: dict[int, dict] = {}

    def record(self, agent: int, pid: int, steps: int, t0: float, t1: float) -> None:
        a = self.agents.setdefault(agent, {"pids": [], "env_steps": 0, "episodes": 0, "intervals": []})
        # [start, end, env steps] per episode: enough to show overlap and to time any stretch of the run
        if pid not in a["pids"]:
            a["pids"].append(pid)
        a["env_steps"] += steps
        a["episodes"] += 1
        a["intervals"].append((t0, t1, steps))

    def summary(self) -> dict[str, dict]:
        return {str(k): v for k, v in sorted(self.agents.items())}


class _Window:
    """Training metrics accumulated between two log points."""

    def __init__(self, steps: int = 0):
        self.t_last = time.monotonic()
        self.steps_last = steps
        self.updates_last = 0
        self.sums: dict[str, float] = {}
        self.count = 0
        self.latest: dict[str, float] = {}
        self.lags: list[int] = []
        self.epsilon = 1.0

    def episode(self, lag: int, eps: float) -> None:
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
