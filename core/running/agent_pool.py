"""The run's child processes: the agents and the evaluator (DQT 4.1; docs/ARCHITECTURE.md).

The pool starts them, hands episode slots back to agents, restarts a dead agent on the same
lanes and stops every child however the run ends. It also keeps the per-lane bookkeeping a
restart needs (decisions delivered, slots held), so the learner loop sees only messages.
It holds no reference back to the loop (no callbacks): such a cycle kept the run's
semaphores alive past the end of `train`, and the resource tracker reported them leaked.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dqt.core.acting.actor import AgentChannels, agent_main
from dqt.core.acting.evaluator import eval_main
from dqt.core.config import RunConfig
from dqt.core.ipc.messages import AgentMsg, EpisodeMsg, SlotFree
from dqt.core.ipc.transport import EpisodeSlots, SlotLayout, WeightBoard
from dqt.core.tracking import RunTracker

ASYNC_SLOTS = 4  # episodes an async lane may have in flight before it would wait


@dataclass
class EnvSpec:
    obs_dim: int
    action_dims: int
    episode_limit: int  # decisions per episode: the length of an episode slot


def split_budget(total: int, parts: int) -> list[int]:
    """`total` env steps as `parts` near-equal lane quotas that add up exactly."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


@dataclass
class AgentProc:
    proc: mp.process.BaseProcess
    reader: Any  # Connection agent -> learner
    writer: Any  # Connection learner -> agent
    lanes: range


class AgentPool:
    """Agents 0..N-1 (each on `envs_per_agent` lanes) and the evaluation process.

    Args:
        quota: each lane's share of the decisions left in the run (`split_budget`).
        steps_before: env steps taken before this start (--resume), for the agents' clock.
        resumes: how often the run was resumed; with the restart count it picks fresh random
            streams, so no session replays another's episodes.
    """

    def __init__(self, cfg: RunConfig, spec: EnvSpec, tracker: RunTracker, quota: list[int], steps_before: int,
                 resumes: int):
        self.cfg, self.spec, self.tracker = cfg, spec, tracker
        self.n_agents = cfg.trainer.num_agents
        self.n_lanes = self.n_agents * cfg.trainer.envs_per_agent
        self.quota = quota
        self.steps_before = steps_before
        self.resumes = resumes
        self.ctx = mp.get_context("spawn")
        sync = cfg.trainer.mode == "sync"
        self.layout = SlotLayout(self.n_lanes, 1 if sync else ASYNC_SLOTS, spec.episode_limit, spec.obs_dim,
                                 spec.action_dims)
        # Shared resources are made by start(), so a run that fails before it leaves none behind.
        self.slots: EpisodeSlots | None = None
        self.board: WeightBoard | None = None
        self.claimed: Any = None  # RawArray int64 [lanes]: decisions each lane has claimed
        self.stop: Any = None  # Event: tells every agent to stop
        self.eval_requests: Any = None  # Queue of EvalRequest (None: exit)
        self.eval_results: Any = None  # Queue of EvalResult
        self.eval_proc: mp.process.BaseProcess | None = None
        self.agents: dict[int, AgentProc] = {}
        self.done: set[int] = set()  # agents that used their whole quota and exit on their own
        self.delivered = [0] * self.n_lanes  # decisions per lane received
        self.held: list[tuple[int, int, int]] = []  # async slots (agent, lane, slot) held back by the backlog bound
        self.restarts = 0

    # ---- starting -----------------------------------------------------------------------
    def start(self, model: torch.nn.Module, updates: int) -> None:
        """Shared memory, the evaluator and every agent; agents start from `model`'s weights."""
        self.slots = EpisodeSlots(self.layout)
        self.board = WeightBoard(sum(p.numel() for p in model.parameters()), self.ctx)
        self.board.publish(model, updates)
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
            self.spawn(a, stream=1000 * self.resumes)

    def spawn(self, a: int, stream: int) -> None:
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
                down_w.send(SlotFree(lane, s))
        self.agents[a] = AgentProc(proc, up_r, down_w, lanes)
        self.tracker.set_tags({f"pid.agent{a}": proc.pid})  # which OS process explores, for people and tests

    # ---- slots and messages -------------------------------------------------------------
    def live_readers(self) -> list[Any]:
        return [agent.reader for a, agent in self.agents.items() if a not in self.done]

    def all_done(self) -> bool:
        return len(self.done) >= self.n_agents

    def finished(self, agent: int) -> None:
        self.done.add(agent)

    def received(self, msg: EpisodeMsg) -> None:
        """The learner has copied the episode: count it to its lane, hold its slot for release."""
        self.delivered[msg.lane] += msg.length
        self.held.append((msg.agent, msg.lane, msg.slot))

    def release_held(self) -> None:
        for agent, lane, slot in self.held:
            try:
                self.agents[agent].writer.send(SlotFree(lane, slot))
            except (OSError, KeyError):  # the agent has exited (finished or died); a restarted one gets every slot anew
                pass
        self.held.clear()

    # ---- liveness and restarts ----------------------------------------------------------
    def dead_agents(self) -> list[int]:
        """Agents that died before their AgentDone; raises if the evaluator died (it has no stand-in)."""
        if self.eval_proc is not None and not self.eval_proc.is_alive():
            raise RuntimeError(f"the evaluation process died (exit code {self.eval_proc.exitcode})")
        return [a for a, agent in self.agents.items() if a not in self.done and not agent.proc.is_alive()]

    def eval_alive(self) -> bool:
        return self.eval_proc is not None and self.eval_proc.is_alive()

    def drain(self, a: int) -> list[AgentMsg]:
        """What a dead agent sent before it died: the learner still takes it in."""
        reader, msgs = self.agents[a].reader, []
        try:
            while reader.poll():
                msgs.append(reader.recv())
        except (EOFError, OSError):
            pass
        return msgs

    def restart(self, a: int, env_steps: int) -> None:
        """A dead agent's lanes continue in a new process, with the steps it took but never
        delivered given back to their quota (so the run still ends at exactly its budget).
        Drain it first: its AgentDone may still have been in the pipe."""
        if a in self.done:  # a finished agent exits at once, which is no death
            return
        agent = self.agents[a]
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
        self.spawn(a, stream=1000 * self.resumes + self.restarts)
        self.tracker.set_tags({"agent_restarts": self.restarts, f"agent_restart_{self.restarts}":
                               f"agent {a} exit code {code} at env step {env_steps}"})
        self.tracker.log_metrics({"perf/agent_restarts": self.restarts}, step=env_steps)

    # ---- stopping -----------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop every child of the run within a few seconds, whatever state they are in."""
        if self.stop is not None:
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
