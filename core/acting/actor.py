"""The agent process: explores its own envs with the latest published policy (DQT 4.1).

Each agent steps its own environments (own seeds) in its own OS process, writes episodes
into its shared-memory slots and sends only slot indices to the learner. In sync mode each
of its envs ("lanes") has one slot, so waiting for the slot to come back is waiting for the
learner to train on the episode and publish new weights (the paper's per-episode
synchronisation); in async mode a lane has several and practically never waits.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dqt.core.acting.envs import make_run_env
from dqt.core.acting.rollout import EpisodeStats, ExplorationPolicy, LaneArrays, run_lanes
from dqt.core.config import RunConfig
from dqt.core.ipc.messages import AgentDone, EpisodeMsg, SlotFree
from dqt.core.ipc.procutil import become_child_of_run, exit_now, parent_alive
from dqt.core.ipc.transport import EpisodeSlots, SlotLayout, WeightBoard
from dqt.core.learning.decode import GreedyDecoder
from dqt.core.learning.model import QTransformer
from dqt.core.learning.schedules import epsilon
from dqt.core.noise import RewardNoise
from dqt.core.seeding import generator


def env_seed(base_seed: int, lane: int) -> int:
    """Every env of every agent gets its own seed so they explore different episodes."""
    return base_seed + 1000 * (lane + 1)


@dataclass
class AgentChannels:
    """What one agent shares with the learner (picklable for spawn).

    Nothing here is a lock an agent could die holding: each pipe has one writer, each
    lane's step counter one writer, and the weight board is a seqlock.
    """

    layout: SlotLayout
    slot_names: dict[str, str]
    board: WeightBoard
    claimed: Any  # mp.Array int64 [lanes], lock-free: decisions each lane has taken (its agent writes)
    quota: list[int]  # [lanes]: each lane's share of the run's decisions (train_steps / action_repeat)
    lanes: range  # this agent's lanes
    to_learner: Any  # Connection: an EpisodeMsg per episode, finally AgentDone
    from_learner: Any  # Connection: SlotFree, a slot handed back to the agent
    stop: Any  # mp.Event
    steps_before: int = 0  # env steps the run had taken before this start (--resume)


def agent_main(agent_id: int, cfg: RunConfig, ch: AgentChannels, parent_pid: int, stream: int = 0) -> None:
    """Explore until every lane has used its quota; `stream` > 0 for restarted/resumed agents."""
    become_child_of_run(parent_pid)
    torch.set_num_threads(cfg.trainer.torch_threads)
    tr, lay, ex = cfg.trainer, ch.layout, cfg.exploration
    lanes = ch.lanes
    # A restarted agent gets fresh episode and random streams instead of replaying its predecessor's.
    envs = [make_run_env(cfg, seed=env_seed(tr.seed, lane) + 100_000 * stream) for lane in lanes]
    model = QTransformer(lay.obs_dim, lay.action_dims, cfg.model).eval()
    decoder = GreedyDecoder(model, ex.greedy_heads)
    repeat = cfg.env.action_repeat
    slots = EpisodeSlots(lay, ch.slot_names)
    claimed = np.frombuffer(ch.claimed, dtype=np.int64)
    rng = generator(tr.seed, "explore", agent_id, stream)
    noise = RewardNoise(cfg.noise, generator(tr.seed, "noise", agent_id, stream), cfg.env.reward_scale)
    decay = ex.decay_fraction * tr.train_steps
    divisor = cfg.clock_divisor
    policy = ExplorationPolicy(
        decoder, cfg.model.num_bins, lay.action_dims, rng, cfg.learner.warmup_decisions * repeat,
        # the budget's clock (trainer.budget): the run's env steps before a resume + decisions claimed
        # since, all agents' (total) or one agent's share (per-agent)
        lambda t: epsilon(t, ex.eps_max, ex.eps_min, decay),
        lambda: (ch.steps_before + int(claimed.sum()) * repeat) // divisor,
        ex.dim_redraw_prob,
    )
    arrays = [LaneArrays(slots.arrays["obs"][lane], slots.arrays["bins"][lane], slots.arrays["rewards"][lane])
              for lane in lanes]
    free: dict[int, list[int]] = {lane: [] for lane in lanes}
    version = -1

    def claim(i: int) -> bool:
        lane = lanes[i]
        if claimed[lane] >= ch.quota[lane]:
            return False
        claimed[lane] += 1
        return True

    def next_slot(i: int) -> int | None:
        nonlocal version
        lane = lanes[i]
        while not free[lane]:  # sync mode: this is the wait for the learner (paper, 4.1)
            if ch.stop.is_set() or not parent_alive(parent_pid):
                return None
            if ch.from_learner.poll(0.2):
                back: SlotFree = ch.from_learner.recv()
                free[back.lane].append(back.slot)
        new_version = ch.board.pull(model, version)  # the paper: new weights for every episode
        if new_version != version:
            decoder.refresh()
            version = new_version
        return free[lane].pop()

    def episode_done(i: int, slot: int, st: EpisodeStats) -> None:
        rewards = arrays[i].rewards[slot, : st.length]
        rewards[:] = noise(rewards)  # DQT eq. 13/15: training rewards only, evaluation stays clean
        # the return in env-reward units (the peers' logged return), whatever env.reward_scale
        ch.to_learner.send(EpisodeMsg(agent_id, os.getpid(), lanes[i], slot, st.length, st.terminated,
                                      st.true_return / cfg.env.reward_scale, st.success, st.has_success,
                                      ch.board.pulled_updates, policy.last_epsilon, st.t_start, st.t_end))

    try:
        run_lanes(envs, policy, cfg.model.num_bins, arrays, claim, next_slot, episode_done, time.time,
                  cfg.eval.success)
        if not ch.stop.is_set():
            ch.to_learner.send(AgentDone(agent_id))
    finally:
        slots.close()
        for env in envs:
            env.close()
    exit_now(0)
