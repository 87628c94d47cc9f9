"""Learner throughput: updates/s at batch 512 on the default model (reference numbers: docs/BACKGROUND.md)."""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from core.config import RunConfig
from core.learner import Learner
from core.replay import Batch

OBS_DIM, ACTION_DIMS = 39, 4


def _batch(rng: np.random.Generator, batch_size: int, num_bins: int) -> Batch:
    return Batch(
        obs=torch.from_numpy(rng.standard_normal((batch_size, OBS_DIM), dtype=np.float32)),
        bins=torch.from_numpy(rng.integers(0, num_bins, (batch_size, ACTION_DIMS))),
        ret=torch.from_numpy(rng.random(batch_size, dtype=np.float32)),
        discount=torch.full((batch_size,), 0.98**3),
        next_obs=torch.from_numpy(rng.standard_normal((batch_size, OBS_DIM), dtype=np.float32)),
        mc_return=torch.from_numpy(rng.random(batch_size, dtype=np.float32)),
    )


def run(device: str = "cpu", warmup: int = 3, windows: int = 5, per_window: int = 4) -> dict:
    """Median updates/s over `windows` windows of `per_window` updates, after `warmup` updates."""
    if device != "cpu":  # graph capture needs a few calls; windows of 4 updates would time mostly the sync
        warmup, per_window = max(warmup, 30), max(per_window, 200)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    cfg = RunConfig()
    learner = Learner(OBS_DIM, ACTION_DIMS, cfg, device=device, total_updates=10_000)
    rng = np.random.default_rng(0)
    batches = [_batch(rng, cfg.learner.batch_size, cfg.model.num_bins).to(device) for _ in range(4)]
    for i in range(warmup):
        learner.update(batches[i % len(batches)])
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        for i in range(per_window):
            learner.update(batches[i % len(batches)])
        if device != "cpu":
            torch.cuda.synchronize()
        rates.append(per_window / (time.perf_counter() - start))
    return {"learner_updates_per_s": statistics.median(rates)}


if __name__ == "__main__":
    print(run())
