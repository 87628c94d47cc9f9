"""The learner and one explorer in one process: the smallest complete training loop.

Used to check that the algorithm learns (tests, quick experiments) without processes,
shared memory or MLflow; it explores with exactly the agents' code (`core.rollout`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from core.bins import to_continuous
from core.config import RunConfig
from core.decode import GreedyDecoder
from core.envs import canonical_task, make_env, run_eval_episodes
from core.learner import Learner
from core.noise import RewardNoise
from core.replay import ReplayBuffer
from core.rollout import EpisodeStats, ExplorationPolicy, LaneArrays, run_lanes
from core.schedules import epsilon


@dataclass
class EvalPoint:
    env_steps: int
    success_rate: float
    episode_return: float


def train_single_process(
    cfg: RunConfig, on_eval: Callable[[EvalPoint], bool | None] | None = None
) -> list[EvalPoint]:
    """Train for cfg.trainer.train_steps env steps; evaluate every cfg.eval.every steps.

    `on_eval` sees each evaluation; returning True stops training early.
    """
    tr, lc, ex = cfg.trainer, cfg.learner, cfg.exploration
    task = canonical_task(tr.task)
    env = make_env(task, seed=tr.seed, max_episode_steps=tr.max_episode_steps)
    eval_env = make_env(task, seed=tr.seed + 999, max_episode_steps=tr.max_episode_steps)
    obs_dim, n_dims = int(env.observation_space.shape[0]), int(env.action_space.shape[0])
    limit = tr.max_episode_steps or getattr(env.unwrapped, "max_episode_steps", None) or 500
    torch.manual_seed(tr.seed)
    total_updates = max(1, math.ceil(lc.updates_per_step * max(tr.train_steps - lc.warmup_steps, 1)))
    learner = Learner(obs_dim, n_dims, cfg, device="cpu", total_updates=total_updates, num_agents=1)
    replay = ReplayBuffer(min(lc.replay_capacity, tr.train_steps), obs_dim, n_dims, lc.gamma, lc.n_step)
    rng = np.random.default_rng([tr.seed, 0])
    noise = RewardNoise(cfg.noise, np.random.default_rng([tr.seed, 0, 0, 1]))
    decoder = GreedyDecoder(learner.model)
    steps = 0
    policy = ExplorationPolicy(decoder, cfg.model.num_bins, n_dims, rng, lc.warmup_steps,
                               lambda t: epsilon(t, ex.eps_max, ex.eps_min, ex.decay_fraction * tr.train_steps),
                               lambda: steps)
    lane = LaneArrays(np.zeros((1, limit + 1, obs_dim), np.float32), np.zeros((1, limit, n_dims), np.int64),
                      np.zeros((1, limit), np.float32))
    history: list[EvalPoint] = []
    next_eval = cfg.eval.every
    stop = False

    def claim(_lane: int) -> bool:
        nonlocal steps
        if steps >= tr.train_steps or stop:
            return False
        steps += 1
        return True

    def evaluate() -> EvalPoint:
        out = run_eval_episodes(eval_env, lambda o: to_continuous(decoder(o[None])[0].numpy(), cfg.model.num_bins),
                                cfg.eval.episodes)
        return EvalPoint(steps, out["success_rate"], out["return"])

    def episode_done(_lane: int, slot: int, st: EpisodeStats) -> None:
        nonlocal next_eval, stop
        n = st.length
        replay.add_episode(lane.obs[slot, : n + 1], lane.bins[slot, :n], noise(lane.rewards[slot, :n]), st.terminated)
        owed = min(math.floor(lc.updates_per_step * max(0, steps - lc.warmup_steps)), total_updates) - learner.updates
        for _ in range(max(0, owed)):
            learner.update(replay.sample(lc.batch_size, rng))
        if owed > 0:
            decoder.refresh()  # like an agent receiving new weights after its episode
        if steps >= next_eval or steps >= tr.train_steps:
            next_eval = (steps // cfg.eval.every + 1) * cfg.eval.every
            history.append(evaluate())
            stop = on_eval is not None and bool(on_eval(history[-1]))

    run_lanes([env], policy, cfg.model.num_bins, [lane], claim, lambda _i: None if stop else 0, episode_done,
              time.monotonic)
    return history
