"""The agent process: explores its own envs with the latest published policy (DQT 4.1).

Each agent steps its own environments (own seeds) in its own OS process, writes episodes
into its shared-memory slots and sends only slot indices to the learner. In sync mode each
of its envs ("lanes") has one slot, so waiting for the slot to come back is waiting for the
learner to train on the episode and publish new weights (the paper's per-episode
synchronisation); in async mode a lane has several and practically never waits.
"""

from __future__ import annotations

import os
import queue
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core.config import RunConfig
from core.decode import GreedyDecoder
from core.envs import make_env
from core.model import QTransformer
from core.noise import RewardNoise
from core.procutil import become_child_of_run, parent_alive
from core.rollout import EpisodeStats, ExplorationPolicy, LaneArrays, run_lanes
from core.schedules import epsilon
from core.transport import EpisodeSlots, SlotLayout, WeightBoard


def env_seed(base_seed: int, lane: int) -> int:
    """Every env of every agent gets its own seed so they explore different episodes."""
    return base_seed + 1000 * (lane + 1)


@dataclass
class AgentChannels:
    """What an agent shares with the learner (all picklable for spawn)."""

    layout: SlotLayout
    slot_names: dict[str, str]
    board: WeightBoard
    steps_taken: Any  # mp.Value: env steps claimed by all agents (the budget counter)
    episodes: Any  # mp.Queue agent -> learner: ("episode", lane, slot, ...) / ("done", agent_id)
    free_slots: list  # per lane mp.Queue learner -> agent: slot ids handed back
    stop: Any  # mp.Event


def claim_step(counter: Any, budget: int) -> bool:
    with counter.get_lock():
        if counter.value >= budget:
            return False
        counter.value += 1
        return True


def agent_main(agent_id: int, cfg: RunConfig, ch: AgentChannels, parent_pid: int, restart: int = 0) -> None:
    become_child_of_run(parent_pid)
    torch.set_num_threads(cfg.trainer.torch_threads)
    tr, lay, ex = cfg.trainer, ch.layout, cfg.exploration
    e = tr.envs_per_agent
    lanes = range(agent_id * e, (agent_id + 1) * e)  # this agent's rows in the slot arrays
    # A restarted agent gets fresh episode and random streams instead of replaying its predecessor's.
    envs = [make_env(tr.task, seed=env_seed(tr.seed, lane) + 100_000 * restart, max_episode_steps=tr.max_episode_steps)
            for lane in lanes]
    model = QTransformer(lay.obs_dim, lay.action_dims, cfg.model).eval()
    decoder = GreedyDecoder(model)
    slots = EpisodeSlots(lay, ch.slot_names)
    rng = np.random.default_rng([tr.seed, agent_id, restart])
    noise = RewardNoise(cfg.noise, np.random.default_rng([tr.seed, agent_id, restart, 1]))
    decay = ex.decay_fraction * tr.train_steps
    policy = ExplorationPolicy(
        decoder, cfg.model.num_bins, lay.action_dims, rng, cfg.learner.warmup_steps,
        lambda t: epsilon(t, ex.eps_max, ex.eps_min, decay), lambda: ch.steps_taken.value,
    )
    arrays = [LaneArrays(slots.arrays["obs"][lane], slots.arrays["bins"][lane], slots.arrays["rewards"][lane])
              for lane in lanes]
    version = -1

    def next_slot(i: int) -> int | None:
        nonlocal version
        slot = _next_slot(ch.free_slots[lanes[i]], ch.stop, parent_pid)
        new_version = ch.board.pull(model, version)  # the paper: new weights for every episode
        if new_version != version:
            decoder.refresh()
            version = new_version
        return slot

    def episode_done(i: int, slot: int, st: EpisodeStats) -> None:
        rewards = arrays[i].rewards[slot, : st.length]
        rewards[:] = noise(rewards)  # DQT eq. 13/15: training rewards only, evaluation stays clean
        ch.episodes.put(("episode", lanes[i], slot, st.length, st.terminated, st.true_return, st.success,
                         version, policy.last_epsilon, (agent_id, os.getpid(), st.t_start, st.t_end)))

    try:
        run_lanes(envs, policy, cfg.model.num_bins, arrays, lambda: claim_step(ch.steps_taken, tr.train_steps),
                  next_slot, episode_done, time.time)
        if not ch.stop.is_set():
            ch.episodes.put(("done", agent_id))
    finally:
        slots.close()
        for env in envs:
            env.close()


def _next_slot(free: Any, stop: Any, parent_pid: int) -> int | None:
    while not stop.is_set():
        try:
            return free.get(timeout=0.2)
        except queue.Empty:
            if not parent_alive(parent_pid):
                return None
    return None
