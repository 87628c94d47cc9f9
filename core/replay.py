"""Episode replay buffer with n-step returns and Monte-Carlo return-to-go.

Whole episodes go in; every per-step quantity the loss needs is computed once at
insertion (QT 4.3), so sampling is a single index gather over pre-allocated ring arrays
(Sample Factory style: allocate once, move indices, never loop per sample).

Per stored step t of an episode of length L (rewards r_0..r_{L-1}, observations
s_0..s_L, s_L the final observation):

* n' = min(n, L - t)                                   -- the n-step window, cut at the end
* R_t = sum_{k<n'} gamma^k r_{t+k}                     -- n-step discounted reward
* d_t = gamma^{n'} if s_{t+n'} may be bootstrapped, else 0.  Only a TRUE termination
  forbids it (t + n' = L of a terminated episode); a time-limit truncation keeps it,
  since the final observation still has a future (QT eq. 1 with done-masking).
* next_obs_t = s_{t+n'}
* G_t = sum_{j>=t} gamma^{j-t} r_j                    -- MC return-to-go (QT 4.3).
  For a truncated episode this is the return observed until the time limit; with
  non-negative rewards (MetaWorld, sparse success) it stays a lower bound on Q*.

Sampling (``learner.replay_sampling``):

* ``uniform``: every stored transition with the same probability.
* ``return-weighted`` (both peers' codes): an episode e is drawn with probability
  w_e / sum w, w_e = max(training return of e, floor), then a uniform step inside it. The
  return is that of the rewards the learner trains on (after noise), so noise studies do
  not leak the true reward through the sampler; the floor keeps zero- (or negative-)
  return episodes drawable (the peers give return 0 the weight 1e-4).

Memory: obs and next_obs are stored as float32 (2 x capacity x obs_dim x 4 bytes);
arrays come from ``np.zeros`` so the OS only commits pages that are written.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Batch:
    """A sampled minibatch, one row per transition (B rows).

    obs [B, obs_dim] f32, bins [B, N] int64, ret [B] f32 (R_t), discount [B] f32 (d_t),
    next_obs [B, obs_dim] f32 (s_{t+n'}), mc_return [B] f32 (G_t).
    """

    obs: torch.Tensor
    bins: torch.Tensor
    ret: torch.Tensor
    discount: torch.Tensor
    next_obs: torch.Tensor
    mc_return: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The same batch on `device` (a no-op copy-free view when already there)."""
        return Batch(
            *(t.to(device, non_blocking=non_blocking) for t in
              (self.obs, self.bins, self.ret, self.discount, self.next_obs, self.mc_return))
        )


def n_step_targets(
    rewards: np.ndarray, gamma: float, n_step: int, terminated: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-step (R_t, d_t, next index t+n', G_t) of one episode, in float64 / int64.

    See the module docstring for the definitions; `next index` indexes the episode's
    observation array of length L + 1.
    """
    r = np.asarray(rewards, dtype=np.float64)
    length = r.shape[0]
    t = np.arange(length)
    # n' = min(n, L - t): the window shrinks near the end of the episode.
    n_eff = np.minimum(n_step, length - t)
    ret = np.zeros(length, dtype=np.float64)
    for k in range(min(n_step, length)):
        # term gamma^k r_{t+k} exists for every t with t + k < L, i.e. k < n'
        ret[: length - k] += gamma**k * r[k:]
    next_idx = t + n_eff
    discount = gamma ** n_eff.astype(np.float64)
    if terminated:
        # s_L is a true terminal state: nothing to bootstrap from it.
        discount[next_idx == length] = 0.0
    mc = np.zeros(length, dtype=np.float64)
    acc = 0.0
    for j in range(length - 1, -1, -1):
        acc = r[j] + gamma * acc
        mc[j] = acc
    return ret, discount, next_idx, mc


SAMPLING = ("uniform", "return-weighted")


class ReplayBuffer:
    """FIFO ring of transitions built from whole episodes; uniform or return-weighted sampling.

    Args:
        capacity: transitions kept; the oldest are overwritten first.
        obs_dim: length of an observation vector.
        action_dims: N, the number of action dimensions (bins per step).
        gamma: discount between time steps (QT eq. 1).
        n_step: n of the n-step return (QT 4.3).
        sampling: "uniform" or "return-weighted" (module docstring).
        return_floor: the smallest episode weight of return-weighted sampling (> 0).
    """

    def __init__(self, capacity: int, obs_dim: int, action_dims: int, gamma: float, n_step: int,
                 sampling: str = "uniform", return_floor: float = 1e-4) -> None:
        if capacity < 1 or obs_dim < 1 or action_dims < 1 or n_step < 1:
            raise ValueError("capacity, obs_dim, action_dims and n_step must be >= 1")
        if sampling not in SAMPLING or not return_floor > 0:
            raise ValueError(f"sampling must be one of {SAMPLING} and return_floor > 0")
        self.sampling = sampling
        self.return_floor = float(return_floor)
        self.capacity = int(capacity)
        self.obs_dim = int(obs_dim)
        self.action_dims = int(action_dims)
        self.gamma = float(gamma)
        self.n_step = int(n_step)
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        # int16 holds any K up to 32768 bins at a quarter of int64's memory.
        self.bins = np.zeros((capacity, action_dims), dtype=np.int16)
        self.ret = np.zeros(capacity, dtype=np.float32)
        self.discount = np.zeros(capacity, dtype=np.float32)
        self.mc_return = np.zeros(capacity, dtype=np.float32)
        self._ptr = 0  # next slot to write
        self._size = 0
        self._written = 0  # slots written so far: transition g lives in slot g % capacity while g >= written - capacity
        # per stored episode: first global transition, kept length, sampling weight (oldest first)
        self._episodes: deque[tuple[int, int, float]] = deque()
        self._episode_table: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # cached arrays of the above
        self.episodes_added = 0
        self.transitions_added = 0

    def __len__(self) -> int:
        return self._size

    def add_episode(self, obs: np.ndarray, bins: np.ndarray, rewards: np.ndarray, terminated: bool) -> None:
        """Store one episode.

        Args:
            obs: [L + 1, obs_dim], s_0..s_L including the final observation.
            bins: [L, N] integer bins of the actions taken.
            rewards: [L] rewards r_0..r_{L-1} (as used for training, i.e. after noise).
            terminated: True for a true termination (no bootstrap past s_L), False for a
                time-limit truncation (bootstrap from s_L).
        """
        obs = np.asarray(obs, dtype=np.float32)
        bins = np.asarray(bins)
        rewards = np.asarray(rewards)
        length = rewards.shape[0]
        if obs.shape != (length + 1, self.obs_dim):
            raise ValueError(f"obs must be [L+1={length + 1}, {self.obs_dim}], got {list(obs.shape)}")
        if bins.shape != (length, self.action_dims):
            raise ValueError(f"bins must be [L={length}, {self.action_dims}], got {list(bins.shape)}")
        if length == 0:
            return
        if bins.min() < 0 or bins.max() > np.iinfo(np.int16).max:
            raise ValueError("bins must lie in [0, 32767]")
        ret, discount, next_idx, mc = n_step_targets(rewards, self.gamma, self.n_step, bool(terminated))
        self.episodes_added += 1
        self.transitions_added += length
        # An episode longer than the whole buffer keeps only its newest `capacity` steps.
        keep = slice(max(0, length - self.capacity), length)
        count = keep.stop - keep.start
        slots = (self._ptr + np.arange(count)) % self.capacity
        self.obs[slots] = obs[:length][keep]
        self.next_obs[slots] = obs[next_idx[keep]]
        self.bins[slots] = bins[keep]
        self.ret[slots] = ret[keep]
        self.discount[slots] = discount[keep]
        self.mc_return[slots] = mc[keep]
        self._ptr = int((self._ptr + count) % self.capacity)
        self._size = min(self._size + count, self.capacity)
        self._episodes.append((self._written, count, max(float(np.sum(rewards, dtype=np.float64)), self.return_floor)))
        self._written += count
        oldest = self._written - self.capacity
        while self._episodes and self._episodes[0][0] + self._episodes[0][1] <= oldest:
            self._episodes.popleft()  # fully overwritten
        self._episode_table = None

    # ---- checkpoint / resume ----------------------------------------------------------
    ARRAYS = ("obs", "next_obs", "bins", "ret", "discount", "mc_return")

    def state_dict(self) -> dict:
        """The stored transitions and bookkeeping (copies), for a checkpoint."""
        n = self._size
        return {"arrays": {k: getattr(self, k)[:n].copy() for k in self.ARRAYS},
                "ptr": self._ptr, "size": n, "written": self._written, "episodes": list(self._episodes),
                "episodes_added": self.episodes_added, "transitions_added": self.transitions_added}

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict` into a buffer of the same capacity and shapes."""
        n = int(state["size"])
        if n > self.capacity:
            raise ValueError(f"the saved replay holds {n} transitions, more than this buffer's {self.capacity}")
        for k in self.ARRAYS:
            getattr(self, k)[:n] = state["arrays"][k]
        self._ptr, self._size, self._written = int(state["ptr"]), n, int(state["written"])
        self._episodes = deque(tuple(e) for e in state["episodes"])
        self._episode_table = None
        self.episodes_added, self.transitions_added = int(state["episodes_added"]), int(state["transitions_added"])

    def sample_indices(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Slot indices of a minibatch (with replacement), by the buffer's sampling rule."""
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if self.sampling == "uniform":
            return rng.integers(0, self._size, size=batch_size)
        first, length, cum = self._table()
        ep = np.searchsorted(cum, rng.random(batch_size) * cum[-1], side="right")
        # a partly overwritten oldest episode keeps its surviving steps
        lo = np.maximum(first[ep], self._written - self.capacity)
        hi = first[ep] + length[ep]
        return (lo + (rng.random(batch_size) * (hi - lo)).astype(np.int64)) % self.capacity

    def episode_probabilities(self) -> np.ndarray:
        """Probability of each stored episode (oldest first) under return-weighted sampling."""
        _, _, cum = self._table()
        return np.diff(cum, prepend=0.0) / cum[-1]

    def _table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._episode_table is None:
            first, length, weight = (np.array(c) for c in zip(*self._episodes, strict=True))
            self._episode_table = (first.astype(np.int64), length.astype(np.int64), np.cumsum(weight))
        return self._episode_table

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """A uniform minibatch (with replacement) as CPU tensors; call ``.to(device)``."""
        idx = self.sample_indices(batch_size, rng)
        # Slots [0, size) are exactly the stored ones: before the first wrap they are the
        # written prefix, after it every slot holds a live transition.
        return Batch(
            obs=torch.from_numpy(self.obs[idx]),
            bins=torch.from_numpy(self.bins[idx].astype(np.int64)),
            ret=torch.from_numpy(self.ret[idx]),
            discount=torch.from_numpy(self.discount[idx]),
            next_obs=torch.from_numpy(self.next_obs[idx]),
            mc_return=torch.from_numpy(self.mc_return[idx]),
        )
