"""Episode replay buffer with n-step returns and Monte-Carlo return-to-go, on the learner's device.

Whole episodes go in; every per-step quantity the loss needs is computed once at
insertion (QT 4.3), so sampling is a single index gather over pre-allocated ring tensors
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

Device: the storage lives where the learner trains, so a batch is drawn (``torch.randint``
/ ``torch.rand``) and gathered there without touching the host. The n-step quantities are
still computed on the host (numpy, once per episode); the episode then travels in ONE
host-to-device copy, from pinned memory on CUDA, packed with its row of the episode table
(first transition, kept length, weight) that return-weighted sampling reads on the device.
Randomness: `sample` takes the caller's numpy generator and draws one 64-bit seed from it
per batch for the device generator, so that generator's state (which the trainer
checkpoints) alone decides every batch, on any device, and a resume draws the same batches.

Memory: all float columns of a transition share one float32 row
(obs | next_obs | R | d | G: (2 obs_dim + 3) x 4 bytes), bins are int16. On the CPU the
storage comes from ``np.zeros`` so the OS only commits pages that are written.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from dqt.core.config import REPLAY_SAMPLING


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


_HEADER = 24  # bytes of an episode's table row in its packed transfer: float64 first, length, weight


_NUMPY = {torch.float32: np.float32, torch.float64: np.float64, torch.int16: np.int16}


def _zeros(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if device.type == "cpu":  # np.zeros: untouched pages are never committed (a large, mostly empty ring)
        return torch.from_numpy(np.zeros(shape, dtype=_NUMPY[dtype]))
    return torch.zeros(shape, dtype=dtype, device=device)


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
        device: where the transitions are stored and batches are drawn and gathered.
    """

    ARRAYS = ("obs", "next_obs", "bins", "ret", "discount", "mc_return")

    def __init__(self, capacity: int, obs_dim: int, action_dims: int, gamma: float, n_step: int,
                 sampling: str = "uniform", return_floor: float = 1e-4, device: torch.device | str = "cpu") -> None:
        if capacity < 1 or obs_dim < 1 or action_dims < 1 or n_step < 1:
            raise ValueError("capacity, obs_dim, action_dims and n_step must be >= 1")
        if sampling not in REPLAY_SAMPLING or not return_floor > 0:
            raise ValueError(f"sampling must be one of {REPLAY_SAMPLING} and return_floor > 0")
        self.sampling = sampling
        self.return_floor = float(return_floor)
        self.capacity = int(capacity)
        self.obs_dim = int(obs_dim)
        self.action_dims = int(action_dims)
        self.gamma = float(gamma)
        self.n_step = int(n_step)
        self.device = torch.device(device)
        D = self.obs_dim
        self._width = 2 * D + 3
        # one row per transition: a batch is two gathers (this and bins), not six
        self._rows = _zeros((capacity, self._width), torch.float32, self.device)
        self.obs, self.next_obs = self._rows[:, :D], self._rows[:, D: 2 * D]
        self.ret, self.discount, self.mc_return = self._rows[:, 2 * D], self._rows[:, 2 * D + 1], self._rows[:, 2 * D + 2]
        # int16 holds any K up to 32768 bins at a quarter of int64's memory.
        self.bins = _zeros((capacity, action_dims), torch.int16, self.device)
        self._gen = torch.Generator(device=self.device)
        self._pinned = self.device.type == "cuda"
        self._ptr = 0  # next slot to write
        self._size = 0
        self._written = 0  # slots written so far: transition g lives in slot g % capacity while g >= written - capacity
        # per stored episode: first global transition, kept length, sampling weight (oldest first);
        # the host copy is the bookkeeping (checkpoint, eviction), the device ring the sampler's table
        self._episodes: deque[tuple[int, int, float]] = deque()
        self._ep_ring = _zeros((64, 3), torch.float64, self.device)  # rows (first, length, weight), float64: exact
        self._ep_head = 0  # ring row of the oldest stored episode
        self._ep_table: tuple[torch.Tensor, torch.Tensor] | None = None  # live rows oldest first, their cumsum

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
        # An episode longer than the whole buffer keeps only its newest `capacity` steps.
        keep = slice(max(0, length - self.capacity), length)
        count = keep.stop - keep.start
        weight = max(float(np.sum(rewards, dtype=np.float64)), self.return_floor)
        entry = (self._written, count, weight)

        D, W, N = self.obs_dim, self._width, self.action_dims
        f32_bytes, i16_bytes = count * W * 4, count * N * 2
        packed = torch.empty(_HEADER + f32_bytes + i16_bytes, dtype=torch.uint8, pin_memory=self._pinned)
        host = packed.numpy()
        host[:_HEADER].view(np.float64)[:] = entry
        rows = host[_HEADER: _HEADER + f32_bytes].view(np.float32).reshape(count, W)
        rows[:, :D] = obs[:length][keep]
        rows[:, D: 2 * D] = obs[next_idx[keep]]
        rows[:, 2 * D], rows[:, 2 * D + 1], rows[:, 2 * D + 2] = ret[keep], discount[keep], mc[keep]
        host[_HEADER + f32_bytes:].view(np.int16).reshape(count, N)[:] = bins[keep]
        dev = packed.to(self.device, non_blocking=True)  # the episode's one host-to-device copy
        dev_rows = dev[_HEADER: _HEADER + f32_bytes].view(torch.float32).view(count, W)
        dev_bins = dev[_HEADER + f32_bytes:].view(torch.int16).view(count, N)
        # at most two contiguous runs of slots: up to the end of the ring, then from its start
        first_run = min(count, self.capacity - self._ptr)
        self._rows[self._ptr: self._ptr + first_run] = dev_rows[:first_run]
        self.bins[self._ptr: self._ptr + first_run] = dev_bins[:first_run]
        if first_run < count:
            self._rows[: count - first_run] = dev_rows[first_run:]
            self.bins[: count - first_run] = dev_bins[first_run:]
        self._ptr = int((self._ptr + count) % self.capacity)
        self._size = min(self._size + count, self.capacity)

        self._written += count
        oldest = self._written - self.capacity
        while self._episodes and self._episodes[0][0] + self._episodes[0][1] <= oldest:
            self._episodes.popleft()  # fully overwritten
            self._ep_head = (self._ep_head + 1) % self._ep_ring.shape[0]
        self._episodes.append(entry)
        self._ring_reserve(len(self._episodes))
        row = (self._ep_head + len(self._episodes) - 1) % self._ep_ring.shape[0]
        self._ep_ring[row] = dev[:_HEADER].view(torch.float64)
        self._ep_table = None

    def _ring_reserve(self, n: int) -> None:
        """Make the device episode ring hold `n` live rows (doubling; the live rows move to the front)."""
        size = self._ep_ring.shape[0]
        if n <= size:
            return
        new = _zeros((max(2 * size, n), 3), torch.float64, self.device)
        live = n - 1  # the newest row is written by the caller
        order = (self._ep_head + torch.arange(live, device=self.device)) % size
        new[:live] = self._ep_ring[order]
        self._ep_ring, self._ep_head = new, 0

    # ---- checkpoint / resume ----------------------------------------------------------
    def state_dict(self) -> dict:
        """The stored transitions and bookkeeping (host numpy copies), for a checkpoint."""
        n = self._size
        return {"arrays": {k: getattr(self, k)[:n].cpu().numpy().copy() for k in self.ARRAYS},
                "ptr": self._ptr, "size": n, "written": self._written, "episodes": list(self._episodes)}

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict` into a buffer of the same capacity and shapes (any device)."""
        n = int(state["size"])
        if n > self.capacity:
            raise ValueError(f"the saved replay holds {n} transitions, more than this buffer's {self.capacity}")
        for k in self.ARRAYS:
            getattr(self, k)[:n] = torch.as_tensor(np.asarray(state["arrays"][k])).to(self.device)
        self._ptr, self._size, self._written = int(state["ptr"]), n, int(state["written"])
        self._episodes = deque(tuple(e) for e in state["episodes"])
        table = np.array(list(self._episodes), dtype=np.float64).reshape(-1, 3)
        self._ep_ring = _zeros((max(64, len(table)), 3), torch.float64, self.device)
        self._ep_ring[: len(table)] = torch.from_numpy(table).to(self.device)
        self._ep_head = 0
        self._ep_table = None

    # ---- sampling ---------------------------------------------------------------------
    def _generator(self, rng: np.random.Generator | torch.Generator) -> torch.Generator:
        if isinstance(rng, torch.Generator):
            return rng
        return self._gen.manual_seed(int(rng.integers(0, 2**63 - 1)))

    def sample_indices(self, batch_size: int, rng: np.random.Generator | torch.Generator) -> torch.Tensor:
        """Slot indices [batch_size] (int64, on the buffer's device) of a minibatch drawn with
        replacement by the buffer's sampling rule. `rng`: a numpy generator (one seed drawn
        from it per batch) or a torch generator on the buffer's device."""
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        g = self._generator(rng)
        if self.sampling == "uniform":
            return torch.randint(0, self._size, (batch_size,), generator=g, device=self.device)
        table, cum = self._table()
        u = torch.rand(batch_size, generator=g, device=self.device, dtype=torch.float64) * cum[-1]
        # rounding can put u on the total; every weight is >= floor > 0, so the last row is live
        ep = torch.searchsorted(cum, u, right=True).clamp_(max=len(self._episodes) - 1)
        first, length = table[ep, 0], table[ep, 1]
        # a partly overwritten oldest episode keeps its surviving steps
        lo = first.clamp(min=float(self._written - self.capacity))
        span = first + length - lo
        step = torch.floor(torch.rand(batch_size, generator=g, device=self.device, dtype=torch.float64) * span)
        return (lo + torch.minimum(step, span - 1)).long() % self.capacity

    def episode_probabilities(self) -> np.ndarray:
        """Probability of each stored episode (oldest first) under return-weighted sampling."""
        weight = np.array([w for _, _, w in self._episodes], dtype=np.float64)
        return weight / weight.sum()

    def _table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Live episode rows oldest first [E, 3] and the cumulative weights [E], on the device;
        rebuilt after each new episode, not per batch."""
        if self._ep_table is None:
            size = self._ep_ring.shape[0]
            order = (self._ep_head + torch.arange(len(self._episodes), device=self.device)) % size
            table = self._ep_ring[order]
            self._ep_table = (table, torch.cumsum(table[:, 2], 0))
        return self._ep_table

    def sample(self, batch_size: int, rng: np.random.Generator | torch.Generator) -> Batch:
        """A minibatch (with replacement), gathered on the buffer's device."""
        idx = self.sample_indices(batch_size, rng)
        # Slots [0, size) are exactly the stored ones: before the first wrap they are the
        # written prefix, after it every slot holds a live transition.
        rows = self._rows.index_select(0, idx)
        D = self.obs_dim
        return Batch(obs=rows[:, :D], bins=self.bins.index_select(0, idx).long(), ret=rows[:, 2 * D],
                     discount=rows[:, 2 * D + 1], next_obs=rows[:, D: 2 * D], mc_return=rows[:, 2 * D + 2])
