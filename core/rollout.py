"""One episode of epsilon-greedy interaction, written straight into pre-allocated arrays.

Shared by the agent processes and the single-process loop so both explore identically:
uniform random actions during warm-up, then DQT eq. 1 with eps_t from eq. 2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.bins import to_continuous
from core.envs import episode_success


@dataclass
class EpisodeStats:
    length: int
    terminated: bool
    true_return: float  # undiscounted and noise-free: what the agent really earned
    success: bool  # MetaWorld's evaluation convention (core.envs.episode_success)
    budget_hit: bool  # the run's env-step budget ran out during this episode


def run_episode(
    env,
    choose_bins: Callable[[np.ndarray], np.ndarray],
    num_bins: int,
    obs_out: np.ndarray,
    bins_out: np.ndarray,
    rewards_out: np.ndarray,
    claim_step: Callable[[], bool],
    reset_seed: int | None = None,
) -> EpisodeStats:
    """Fill obs_out[0..L], bins_out[0..L-1], rewards_out[0..L-1]; L <= len(bins_out).

    `claim_step()` reserves one env step of the run's budget; once it says no, the episode
    ends as a truncation (its last state stays bootstrappable). Hitting the slot's length
    also counts as truncation, like a time limit.
    """
    obs, _ = env.reset(seed=reset_seed)
    obs_out[0] = obs
    max_len = len(bins_out)
    ret, successes, terminated, budget_hit, t = 0.0, [], False, False, 0
    while t < max_len:
        if not claim_step():
            budget_hit = True
            break
        bins = choose_bins(obs)
        obs, reward, terminated, truncated, info = env.step(to_continuous(bins, num_bins))
        bins_out[t] = bins
        rewards_out[t] = reward
        obs_out[t + 1] = obs
        ret += float(reward)
        successes.append(float(info.get("success", 0.0)))
        t += 1
        if terminated or truncated:
            break
    return EpisodeStats(t, bool(terminated), ret, episode_success(successes) if successes else False, budget_hit)


class ExplorationPolicy:
    """Uniform random bins before `warmup_steps`, then epsilon-greedy over the greedy decode."""

    def __init__(self, decoder, num_bins: int, action_dims: int, rng: np.random.Generator,
                 warmup_steps: int, eps_fn: Callable[[int], float], global_steps: Callable[[], int]):
        self.decoder = decoder
        self.num_bins = num_bins
        self.action_dims = action_dims
        self.rng = rng
        self.warmup_steps = warmup_steps
        self.eps_fn = eps_fn
        self.global_steps = global_steps
        self.last_epsilon = 1.0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        t = self.global_steps()
        self.last_epsilon = 1.0 if t < self.warmup_steps else self.eps_fn(t)
        # Drawing the coin first skips the decode for random steps; same law as DQT eq. 1.
        if self.rng.random() < self.last_epsilon:
            return self.rng.integers(0, self.num_bins, size=self.action_dims)
        return self.decoder(obs[None])[0].numpy()
