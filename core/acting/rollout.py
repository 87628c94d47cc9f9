"""Epsilon-greedy interaction of one process with E envs ("lanes"), written into slot arrays.

Run by every agent process over its lanes: uniform random actions during warm-up, then DQT
eq. 1 with eps_t from eq. 2.

An agent steps its E envs in lockstep and decodes the greedy actions of all of them in one
batched call: a batch-8 decode costs about twice a batch-1 decode, so the policy stops
dominating the agent's step time (docs/BACKGROUND.md). Each lane is its own episode stream with its
own slots; whoever drives the lanes decides what happens when an episode ends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dqt.core.acting.envs import episode_successes, step_success
from dqt.core.learning.bins import to_continuous


@dataclass
class EpisodeStats:
    length: int
    terminated: bool
    true_return: float  # undiscounted and noise-free: what the agent really earned
    success: bool  # under the run's eval.success convention (dqt.core.acting.envs.episode_successes)
    has_success: bool  # the env reported a success flag (a task without one is judged by return)
    budget_hit: bool  # the run's env-step budget ran out during this episode
    t_start: float = 0.0
    t_end: float = 0.0


class ExplorationPolicy:
    """Uniform random bins before `warmup_env_steps`, then epsilon-greedy over the greedy decode,
    then (optionally) each dim redrawn with probability `dim_redraw_prob` (the peers' acting).

    `global_steps()` counts env steps on the budget's clock (all agents', or one agent's under a
    per-agent budget): the clock of DQT eq. 2 and of the warm-up.
    """

    def __init__(self, decoder, num_bins: int, action_dims: int, rng: np.random.Generator,
                 warmup_env_steps: int, eps_fn: Callable[[int], float], global_steps: Callable[[], int],
                 dim_redraw_prob: float = 0.0):
        self.decoder = decoder
        self.dim_redraw_prob = dim_redraw_prob
        self.num_bins = num_bins
        self.action_dims = action_dims
        self.rng = rng
        self.warmup_env_steps = warmup_env_steps
        self.eps_fn = eps_fn
        self.global_steps = global_steps
        self.last_epsilon = 1.0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Bins [E, N] for observations [E, obs_dim]."""
        t = self.global_steps()
        self.last_epsilon = 1.0 if t < self.warmup_env_steps else self.eps_fn(t)
        e = obs.shape[0]
        bins = self.rng.integers(0, self.num_bins, size=(e, self.action_dims))
        # Drawing the coins first skips decoding random rows; same law as DQT eq. 1.
        greedy = self.rng.random(e) >= self.last_epsilon
        if greedy.any():
            bins[greedy] = self.decoder(obs[greedy]).numpy()
            if self.dim_redraw_prob > 0:
                # per-dim noise on top of the greedy action; random rows are uniform already
                redraw = greedy[:, None] & (self.rng.random(bins.shape) < self.dim_redraw_prob)
                bins[redraw] = self.rng.integers(0, self.num_bins, size=int(redraw.sum()))
        return bins


@dataclass
class LaneArrays:
    """One lane's slots: obs [S, T+1, D], bins [S, T, N], rewards [S, T]."""

    obs: np.ndarray
    bins: np.ndarray
    rewards: np.ndarray


def run_lanes(
    envs: Sequence,
    policy: ExplorationPolicy,
    num_bins: int,
    arrays: Sequence[LaneArrays],
    claim_step: Callable[[int], bool],
    next_slot: Callable[[int], int | None],
    episode_done: Callable[[int, int, EpisodeStats], None],
    clock: Callable[[], float],
    success: str = "last-step",
) -> None:
    """Step every lane until each has hit the budget or been refused a slot.

    `claim_step(lane)` reserves one env step of the lane's budget.
    `next_slot(lane)` hands out a free slot for the lane's next episode (None: stop the lane);
    `episode_done(lane, slot, stats)` receives every episode with at least one step, then
    owns the slot. A lane whose episode is cut by the budget or by its slot's length counts
    as truncated (its last state stays bootstrappable). `success` names the convention of
    `EpisodeStats.success` (``last-step`` or ``any-step``).
    """
    n = len(envs)
    max_len = arrays[0].bins.shape[1]
    slot = [next_slot(i) for i in range(n)]
    obs = np.zeros((n, arrays[0].obs.shape[-1]), np.float32)
    t = [0] * n
    ret = [0.0] * n
    successes: list[list[float]] = [[] for _ in range(n)]
    last_success = [0.0] * n
    started = [0.0] * n

    def begin(i: int) -> None:
        obs[i], _ = envs[i].reset()
        arrays[i].obs[slot[i], 0] = obs[i]
        t[i], ret[i], successes[i], last_success[i], started[i] = 0, 0.0, [], 0.0, clock()

    def end(i: int, terminated: bool, budget_hit: bool) -> None:
        ok = episode_successes(successes[i], last_success[i])[success]
        stats = EpisodeStats(t[i], terminated, ret[i], ok, bool(successes[i]), budget_hit, started[i], clock())
        if t[i] > 0:
            episode_done(i, slot[i], stats)
        slot[i] = None if budget_hit else next_slot(i)
        if slot[i] is not None:
            begin(i)

    for i in range(n):
        if slot[i] is not None:
            begin(i)
    while True:
        live = [i for i in range(n) if slot[i] is not None]
        if not live:
            return
        bins = policy(obs[live])
        actions = to_continuous(bins, num_bins)
        for row, i in enumerate(live):
            if not claim_step(i):
                end(i, False, budget_hit=True)
                continue
            o, reward, terminated, truncated, info = envs[i].step(actions[row])
            s, k = slot[i], t[i]
            arrays[i].bins[s, k] = bins[row]
            arrays[i].rewards[s, k] = reward
            arrays[i].obs[s, k + 1] = o
            obs[i] = o
            ret[i] += float(reward)
            flag = step_success(info)
            if flag is not None:
                successes[i].append(flag[0])
                last_success[i] = flag[1]
            t[i] = k + 1
            if terminated or truncated or t[i] >= max_len:
                end(i, bool(terminated), budget_hit=False)
