"""The agent process: explores its own env with the latest published policy (DQT 4.1).

Each agent steps its own environment (own seed) in its own OS process, writes episodes
into its shared-memory slots and sends only slot indices to the learner. In sync mode it
has one slot, so waiting for the slot to come back is waiting for the learner to train on
the episode and publish new weights (the paper's per-episode synchronisation); in async
mode it has several and practically never waits.
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
from core.rollout import ExplorationPolicy, run_episode
from core.schedules import epsilon
from core.transport import EpisodeSlots, SlotLayout, WeightBoard


def env_seed(base_seed: int, agent_id: int) -> int:
    """Each agent's env gets its own seed so agents explore different episodes."""
    return base_seed + 1000 * (agent_id + 1)


@dataclass
class AgentChannels:
    """What an agent shares with the learner (all picklable for spawn)."""

    layout: SlotLayout
    slot_names: dict[str, str]
    board: WeightBoard
    steps_taken: Any  # mp.Value: env steps claimed by all agents (the budget counter)
    episodes: Any  # mp.Queue agent -> learner: ("episode", ...) / ("done", agent_id)
    free_slots: list  # per agent mp.Queue learner -> agent: slot ids handed back
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
    tr, lay = cfg.trainer, ch.layout
    # A restarted agent gets a fresh episode stream instead of replaying its predecessor's.
    env = make_env(tr.task, seed=env_seed(tr.seed, agent_id) + 100_000 * restart, max_episode_steps=tr.max_episode_steps)
    model = QTransformer(lay.obs_dim, lay.action_dims, cfg.model).eval()
    decoder = GreedyDecoder(model)
    version = -1
    slots = EpisodeSlots(lay, ch.slot_names)
    # A restarted agent must not replay its predecessor's random stream.
    rng = np.random.default_rng([tr.seed, agent_id, restart])
    noise = RewardNoise(cfg.noise, np.random.default_rng([tr.seed, agent_id, restart, 1]))
    ex = cfg.exploration
    decay = ex.decay_fraction * tr.train_steps
    policy = ExplorationPolicy(
        decoder, cfg.model.num_bins, lay.action_dims, rng, cfg.learner.warmup_steps,
        lambda t: epsilon(t, ex.eps_max, ex.eps_min, decay), lambda: ch.steps_taken.value,
    )
    obs_a, bins_a, rew_a = slots.arrays["obs"][agent_id], slots.arrays["bins"][agent_id], slots.arrays["rewards"][agent_id]
    try:
        while not ch.stop.is_set():
            slot = _next_slot(ch.free_slots[agent_id], ch.stop, parent_pid)
            if slot is None:
                return
            new_version = ch.board.pull(model, version)
            if new_version != version:
                decoder.refresh()
                version = new_version
            t_start = time.time()
            stats = run_episode(env, policy, cfg.model.num_bins, obs_a[slot], bins_a[slot], rew_a[slot],
                                lambda: claim_step(ch.steps_taken, tr.train_steps))
            if stats.length > 0:
                rew_a[slot, : stats.length] = noise(rew_a[slot, : stats.length])  # DQT eq. 13/15, training only
                ch.episodes.put(("episode", agent_id, slot, stats.length, stats.terminated, stats.true_return,
                                 stats.success, version, policy.last_epsilon, (os.getpid(), t_start, time.time())))
            else:
                ch.free_slots[agent_id].put(slot)
            if stats.budget_hit:
                ch.episodes.put(("done", agent_id))
                return
    finally:
        slots.close()
        env.close()


def _next_slot(free: Any, stop: Any, parent_pid: int) -> int | None:
    while not stop.is_set():
        try:
            return free.get(timeout=0.2)
        except queue.Empty:
            if not parent_alive(parent_pid):
                return None
    return None
