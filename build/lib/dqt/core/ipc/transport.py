"""Shared-memory transport between agent processes and the learner.

Like Sample Factory: buffers are allocated once, messages carry only indices.
- `EpisodeSlots`: per agent, S pre-allocated episode slots in shared memory. An agent
  fills a free slot step by step and sends only ``(agent, slot, length, ...)`` through a
  queue; the learner copies the slot into replay and hands the slot back. With one slot
  per agent the hand-back doubles as the paper's synchronous "new weights after each
  episode" barrier; with several, agents never wait on the learner.
- `WeightBoard`: one flat float32 vector of the policy's parameters plus a version
  counter. The learner publishes, agents poll the version and copy only when it moved.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

import numpy as np
import torch


def _attach(name: str, create_bytes: int = 0) -> shared_memory.SharedMemory:
    if create_bytes:
        return shared_memory.SharedMemory(create=True, size=max(create_bytes, 1))
    # Spawned agents share the learner's resource tracker, so attaching registers nothing
    # new; the creating learner alone unlinks (and the tracker cleans up if it is killed).
    return shared_memory.SharedMemory(name=name)


@dataclass(frozen=True)
class SlotLayout:
    """Shapes of one agent's slots; picklable so it travels to spawned agents."""

    lanes: int  # envs of all agents: each lane is one episode stream
    slots: int
    max_len: int
    obs_dim: int
    action_dims: int

    def fields(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        a, s, t = self.lanes, self.slots, self.max_len
        return {
            "obs": ((a, s, t + 1, self.obs_dim), np.float32),  # includes the final observation
            "bins": ((a, s, t, self.action_dims), np.int16),
            "rewards": ((a, s, t), np.float32),  # training rewards, after noise / robust estimate
        }


class EpisodeSlots:
    """Numpy views of every agent's episode slots over shared memory blocks."""

    def __init__(self, layout: SlotLayout, names: dict[str, str] | None = None):
        self.layout = layout
        self.owner = names is None
        self._shm: dict[str, shared_memory.SharedMemory] = {}
        self.arrays: dict[str, np.ndarray] = {}
        for key, (shape, dtype) in layout.fields().items():
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            shm = _attach("", nbytes) if self.owner else _attach(names[key])
            self._shm[key] = shm
            self.arrays[key] = np.ndarray(shape, dtype=dtype, buffer=shm.buf)

    @property
    def names(self) -> dict[str, str]:
        return {k: s.name for k, s in self._shm.items()}

    def close(self) -> None:
        self.arrays.clear()
        for shm in self._shm.values():
            shm.close()
            if self.owner:
                try:
                    shm.unlink()
                except FileNotFoundError:
                    pass
        self._shm.clear()


def load_flat(model: torch.nn.Module, flat: torch.Tensor) -> None:
    """Copy a flat parameter vector into `model` (copy, never alias: the source is rewritten)."""
    with torch.no_grad():
        offset = 0
        for p in model.parameters():
            p.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()


class WeightBoard:
    """A versioned flat parameter vector in shared memory (learner writes, agents read).

    A seqlock, not a lock: the single writer makes the version odd while it copies, and a
    reader retries if the version was odd or moved during its copy. No agent ever holds
    anything the learner waits on, so an agent killed mid-read cannot stall the run.
    """

    def __init__(self, numel: int, ctx: Any):
        self.numel = numel
        self.vector = torch.zeros(numel, dtype=torch.float32).share_memory_()
        self.seq = ctx.Value(ctypes.c_int64, 0, lock=False)
        self._updates = ctx.Value(ctypes.c_int64, 0, lock=False)  # learner updates behind the weights
        self.pulled_updates = 0  # reader side: learner updates behind the weights last pulled

    @property
    def version(self) -> int:
        """Number of publishes so far."""
        return int(self.seq.value) // 2

    def publish(self, model: torch.nn.Module, updates: int = 0) -> int:
        """Write `model`'s weights, made by `updates` learner updates; returns the new version."""
        flat = torch.nn.utils.parameters_to_vector(model.parameters()).detach().to("cpu")
        self.seq.value += 1  # odd: a write is in progress
        self.vector.copy_(flat)
        self._updates.value = updates
        self.seq.value += 1
        return self.version

    def pull(self, model: torch.nn.Module, have: int) -> int:
        """Copy the weights into `model` if a newer version exists; return the version held
        (and keep the learner updates behind it in `pulled_updates`)."""
        while True:
            start = int(self.seq.value)
            if start // 2 == have:
                return have
            if start % 2:
                time.sleep(0.0005)
                continue
            load_flat(model, self.vector)
            updates = int(self._updates.value)
            if int(self.seq.value) == start:
                self.pulled_updates = updates
                return start // 2
