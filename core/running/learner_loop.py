"""The learner loop: episodes in, updates, evals, checkpoints and metrics out (DQT 4.1).

It runs in the `dqt train` process, the only MLflow writer. It takes each episode an agent
reports into replay, makes the updates the update-to-data ratio owes, publishes weights,
asks the evaluator for evals and checkpoints the run. The child processes themselves are
the `AgentPool`'s business.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import shutil
import tempfile
import time
from multiprocessing import connection as mp_connection
from pathlib import Path

import numpy as np
import torch

from dqt.core.config import RunConfig
from dqt.core.ipc.messages import AgentDone, AgentMsg, EpisodeMsg, EvalRequest, EvalResult
from dqt.core.learning.learner import Learner
from dqt.core.learning.replay import ReplayBuffer
from dqt.core.metrics import SUCCESS, train_values
from dqt.core.running.agent_pool import AgentPool, EnvSpec, split_budget
from dqt.core.running.checkpoint import CHECKPOINT_FILE, save_checkpoint
from dqt.core.running.metric_window import AgentLog, Window
from dqt.core.running.progress import Progress
from dqt.core.seeding import generator, torch_seed
from dqt.core.tracking import RunTracker
from dqt.core.tracking.retry import TrackingError

LOG_INTERVAL_S = 1.0
log = logging.getLogger(__name__)


class LearnerLoop:
    """State of one run in the learner process."""

    def __init__(self, cfg: RunConfig, spec: EnvSpec, device: torch.device, tracker: RunTracker, progress: bool,
                 checkpoint: dict | None = None):
        self.cfg, self.spec, self.device, self.tracker = cfg, spec, device, tracker
        tr, lc = cfg.trainer, cfg.learner
        self.n_agents = tr.num_agents
        self.n_lanes = tr.num_agents * tr.envs_per_agent
        self.batch_size = lc.batch_size * (self.n_agents if lc.batch_per_agent else 1)
        self.repeat = cfg.env.action_repeat  # env steps per decision
        # The budget's clock (trainer.budget): warm-up, updates and evals count decisions of all agents
        # (total), or of one agent (per-agent: the DQT code's lockstep agents, total / num_agents).
        self.divisor = cfg.clock_divisor
        self.total_steps = cfg.total_env_steps
        self.total_updates = max(1, math.ceil(lc.updates_per_step
                                              * max(tr.train_steps // self.repeat - lc.warmup_decisions, 1)))
        if device.type == "cpu":  # leave a core to each agent
            torch.set_num_threads(max(1, (os.cpu_count() or 1) - self.n_agents))
        torch.manual_seed(torch_seed(tr.seed))
        self.learner = Learner(spec.obs_dim, spec.action_dims, cfg, device=device,
                               total_updates=self.total_updates, num_agents=self.n_agents)
        tracker.set_tags({"precision": self.learner.precision})  # learner.precision auto, resolved
        self.env_steps = 0  # received by the learner: the x-axis of every metric
        self.episodes = 0
        self.resumes = 0
        if checkpoint is not None:  # --resume: model, optimiser, target, schedules, env-step counter
            self.learner.load_state_dict(checkpoint["learner"])
            self.env_steps, self.episodes = int(checkpoint["env_steps"]), int(checkpoint["episodes"])
            self.resumes = int(checkpoint.get("resumes", 0)) + 1
        self.replay = ReplayBuffer(min(lc.replay_capacity, self.total_steps // self.repeat), spec.obs_dim,
                                   spec.action_dims, lc.gamma, lc.n_step, lc.replay_sampling, lc.replay_return_floor,
                                   device=device)
        self.rng = generator(tr.seed, "replay")
        if checkpoint is not None and "replay" in checkpoint:  # --resume trains on the same data, same draws
            self.replay.load_state_dict(checkpoint["replay"])
            self.rng.bit_generator.state = checkpoint["replay_rng"]
        self.steps_before = self.env_steps  # the global env-step clock of epsilon and warm-up goes on from here
        # Each lane gets a fixed share of the remaining decisions: no shared counter to lock.
        quota = split_budget((self.total_steps - self.env_steps) // self.repeat, self.n_lanes)
        self.pool = AgentPool(cfg, spec, tracker, quota, self.steps_before, self.resumes)
        self.progress = Progress(self.total_steps, enabled=progress)
        self.ckpt_dir = Path(tempfile.mkdtemp(prefix="dqt-ckpt-"))
        self.ckpt_mark = self.env_steps // tr.checkpoint_every if tr.checkpoint_every else 0
        self.last_eval_step = -1
        self.next_eval = self.env_steps
        # env step -> the weights asked to be evaluated there, until the result is logged
        self.pending_evals: dict[int, np.ndarray] = {}
        self.resubmit: dict[int, np.ndarray] = {}
        if checkpoint is not None and "evals" in checkpoint:
            # The eval schedule goes on where it was, and evaluations asked for before the checkpoint
            # but not logged when the run died are asked again with their own weights: a SIGKILL
            # between a request and its result would otherwise leave that interval without one.
            evals = checkpoint["evals"]
            self.next_eval, self.last_eval_step = int(evals["next_eval"]), int(evals["last_eval_step"])
            self.resubmit = dict(evals["pending"])
        self.last_success: float | None = None
        self.success_signal: bool | None = None  # known from the first evaluation
        self.backlog_at_end = 0  # updates owed when the agents finished; finish() works them off
        self.window = Window(self.env_steps)
        self.agent_log = AgentLog()
        self.started = time.monotonic()
        self.wall_before = float(checkpoint.get("wall_s", 0.0)) if checkpoint else 0.0  # resumed runs go on counting

    # ---- main loop ----------------------------------------------------------------------
    def execute(self) -> None:
        self.pool.start(self.learner.model, self.learner.updates)
        for step, flat in sorted(self.resubmit.items()):
            self.pool.eval_requests.put(EvalRequest(step, flat))
            self.pending_evals[step] = flat
        sync = self.cfg.trainer.mode == "sync"
        last_log = time.monotonic()
        while not self.pool.all_done():
            owed = self.updates_owed()
            # async: with updates owed only peek, so training fills the time between messages
            ready = mp_connection.wait(self.pool.live_readers(), timeout=0.0 if (owed and not sync) else 0.05)
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

    def check_children(self) -> None:
        """What a dead agent sent before dying still counts, and may be its AgentDone."""
        for a in self.pool.dead_agents():
            for msg in self.pool.drain(a):
                self.handle(msg)
            self.pool.restart(a, self.env_steps)

    def handle(self, msg: AgentMsg) -> None:
        match msg:
            case EpisodeMsg():
                self.take_episode(msg)
            case AgentDone(agent=agent):
                self.pool.finished(agent)
            case _:
                raise TypeError(f"unexpected message from an agent: {msg!r}")

    def take_episode(self, msg: EpisodeMsg) -> None:
        steps = msg.length * self.repeat
        self.agent_log.record(msg.agent, msg.pid, steps, msg.t_start, msg.t_end)
        arr, lane, slot, length = self.pool.slots.arrays, msg.lane, msg.slot, msg.length
        self.replay.add_episode(arr["obs"][lane, slot, : length + 1], arr["bins"][lane, slot, :length],
                                arr["rewards"][lane, slot, :length], msg.terminated)
        self.env_steps += steps
        self.episodes += 1
        # policy lag, the same in both modes: learner updates made since the weights the episode acted with
        self.window.episode(self.learner.updates - msg.weights_updates, msg.epsilon)
        self.tracker.log_metrics(train_values(msg, self.cfg), step=self.env_steps)
        if self.cfg.trainer.mode == "sync":  # the paper: train on the episode, publish, then let it go on
            self.train_updates(self.updates_owed())
        self.pool.received(msg)
        self.maybe_request_eval()  # at the episode that reaches an eval step, not after its batch of messages
        self.release_slots()
        every = self.cfg.trainer.checkpoint_every
        if every and self.env_steps // every > self.ckpt_mark:
            self.ckpt_mark = self.env_steps // every
            self.save_checkpoint(final=False)

    def release_slots(self) -> None:
        """Hand held slots back, unless (async) the learner owes more updates than the backlog bound."""
        bound = self.cfg.trainer.max_update_backlog
        if bound and self.updates_owed() > bound:
            return
        self.pool.release_held()

    def updates_owed(self) -> int:
        lc = self.cfg.learner
        per_decision = self.repeat * self.divisor  # total env steps per decision of the budget's clock
        target = math.floor(lc.updates_per_step * max(0, self.env_steps - lc.warmup_decisions * per_decision)
                            / per_decision)
        return max(0, min(target, self.total_updates) - self.learner.updates) if len(self.replay) else 0

    def train_updates(self, n: int) -> None:
        if n <= 0:
            return
        for _ in range(n):
            batch = self.replay.sample(self.batch_size, self.rng)  # already on the learner's device
            try:
                self.learner.update(batch)
            except FloatingPointError as exc:  # raised here only where Adam has no fused kernel
                raise FloatingPointError(f"{exc} (env step {self.env_steps})") from None
        if self.learner.publish_due(force=self.cfg.trainer.mode == "sync"):
            self.pool.board.publish(self.learner.model, self.learner.updates)

    # ---- evaluation ---------------------------------------------------------------------
    def maybe_request_eval(self, force: bool = False) -> None:
        if (self.env_steps >= self.next_eval or force) and self.env_steps != self.last_eval_step:
            flat = torch.nn.utils.parameters_to_vector(self.learner.model.parameters()).detach().cpu().numpy()
            self.pool.eval_requests.put(EvalRequest(self.env_steps, flat))
            self.pending_evals[self.env_steps] = flat
            self.last_eval_step = self.env_steps
            every = self.cfg.eval.every * self.divisor  # eval.every counts the budget's clock
            self.next_eval = (self.env_steps // every + 1) * every

    def collect_evals(self, block: bool) -> None:
        while self.pending_evals:
            try:
                res: EvalResult = self.pool.eval_results.get(timeout=0.5 if block else 0.0)
            except queue.Empty:
                if not block:
                    return
                if not self.pool.eval_alive():
                    raise RuntimeError("the evaluation process stopped before finishing its episodes") from None
                continue
            self.pending_evals.pop(res.env_steps, None)
            self.last_success = res.values.get(SUCCESS)
            if self.success_signal is None:  # the analysis draws a task without one by its return alone
                try:
                    self.tracker.set_tags({"dqt.success_signal": str(res.has_success).lower()})
                    self.success_signal = res.has_success
                except TrackingError as exc:  # the store is down: tag it at the next evaluation
                    log.warning("tag dqt.success_signal not set yet, the store is unavailable: %s", exc)
            self.tracker.log_metrics(res.values, step=res.env_steps)

    # ---- logging and ending -------------------------------------------------------------
    def log_window(self, final: bool = False) -> None:
        # One point per step keeps histories clean: a tick logs only when new steps arrived, and
        # the budget's last step is left to the final point, which comes after every update.
        if not final and (self.env_steps == self.window.steps_last
                          or self.env_steps >= self.total_steps):
            return
        now = time.monotonic()
        metrics = self.window.flush(now, self.env_steps, self.learner.updates)
        try:  # the learner's one host read per window, which also finds a non-finite update
            metrics.update(self.learner.window_metrics(repeat_latest=final))
        except FloatingPointError as exc:
            raise FloatingPointError(f"{exc} (found at env step {self.env_steps})") from None
        metrics["time/wall_s"] = self.wall_s()
        # async: bounded by trainer.max_update_backlog; the final point, logged after the catch-up,
        # reports what the learner still owed when the budget's last env step arrived
        metrics["perf/update_backlog"] = self.backlog_at_end if final else self.updates_owed()
        self.tracker.log_metrics(metrics, step=self.env_steps)
        self.progress.update(self.env_steps, metrics["perf/env_steps_per_s"], metrics["perf/updates_per_s"],
                             self.last_success, force=final)

    def wall_s(self) -> float:
        return self.wall_before + time.monotonic() - self.started

    def save_checkpoint(self, final: bool = True) -> None:
        """Write the checkpoint and log it as the run's `checkpoint/` artifact (replaced each time).
        A periodic one (not `final`) that the tracking store refuses after its retries (a server
        down for minutes) is skipped with a warning: the run trains on, and the next checkpoint,
        or the final one, which must succeed, replaces it."""
        extra = {"episodes": self.episodes, "resumes": self.resumes, "wall_s": self.wall_s(),
                 "config": self.cfg.to_flat(), "evals": {"next_eval": self.next_eval, "last_eval_step":
                                                          self.last_eval_step, "pending": dict(self.pending_evals)}}
        if self.cfg.trainer.checkpoint_replay:
            extra |= {"replay": self.replay.state_dict(), "replay_rng": self.rng.bit_generator.state}
        path = save_checkpoint(self.ckpt_dir / CHECKPOINT_FILE, self.learner.state_dict(), self.env_steps, extra)
        try:
            # Every point logged so far is stored before the checkpoint a resume starts from: a
            # SIGKILL after it must not lose the metrics of steps the resumed run will not redo.
            self.tracker.flush()
            self.tracker.log_artifact(str(path), "checkpoint")
        except TrackingError as exc:
            if final:
                raise
            log.warning("checkpoint at env step %d not logged, the store is unavailable: %s", self.env_steps, exc)

    def finish(self) -> None:
        # Async agents never wait, so the learner may trail them; it still makes every update the
        # update-to-data ratio promised, so sync and async runs get the same amount of learning.
        owed = self.backlog_at_end = self.updates_owed()
        while owed:
            self.train_updates(min(owed, 64))
            owed = self.updates_owed()
        self.maybe_request_eval(force=True)  # the curve always ends at the budget
        self.collect_evals(block=True)
        self.log_window(final=True)
        self.save_checkpoint()
        self.tracker.log_text(json.dumps(self.agent_log.summary(), indent=2), "agents.json")

    def end(self, status: str, reason: str | None = None) -> None:
        """Stop the children, keep a checkpoint of an unfinished run, close the MLflow run."""
        self.pool.shutdown()
        self.progress.close()
        if status != "FINISHED":
            try:
                self.save_checkpoint()  # what the run learnt so far, for --resume
            except Exception:  # noqa: BLE001 - the run's status matters more than this artifact
                pass
        self.tracker.end(status, reason=reason)
        shutil.rmtree(self.ckpt_dir, ignore_errors=True)  # the checkpoint lives on as the run's artifact
