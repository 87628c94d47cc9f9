"""Learner throughput: updates/s at batch 512 on the default model (reference numbers: docs/BACKGROUND.md),
and on a CPU the variants beside fp32 eager: bf16 autocast, torch.compile (inductor, default mode),
one thread instead of two, and the quick profiles' small model (width 64, 1 layer, 64 bins,
batch 128) in fp32 and bf16. `cpu_variants` returns them as ``learner_updates_per_s_<variant>``.
"""

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


QUICK_MODEL = {"model.embed_dim": 64, "model.num_layers": 1, "model.num_heads": 4, "model.num_bins": 64,
               "learner.batch_size": 128}


def run(device: str = "cpu", warmup: int = 3, windows: int = 5, per_window: int = 4, *, flat: dict | None = None,
        threads: int = 2, compile_cpu: bool = False) -> dict:
    """Median updates/s over `windows` windows of `per_window` updates, after `warmup` updates
    (`flat`: config fields over the defaults; `compile_cpu`: the loss under torch.compile)."""
    if device != "cpu":  # graph capture needs a few calls; windows of 4 updates would time mostly the sync
        warmup, per_window = max(warmup, 30), max(per_window, 200)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = RunConfig.from_flat(flat or {})
    learner = Learner(OBS_DIM, ACTION_DIMS, cfg, device=device, total_updates=10_000)
    if compile_cpu:  # what the learner would do on a CPU if compiling paid (it does not: see cpu_variants)
        learner._loss = torch.compile(learner._loss_terms)
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


def cpu_variants() -> dict:
    """The CPU learner's settings beside fp32 eager on 2 threads (`learner_updates_per_s`)."""
    out = {}
    variants = {
        "bf16": {"flat": {"learner.precision": "bf16"}},
        "compiled": {"compile_cpu": True, "warmup": 5},
        "1thread": {"threads": 1},
        "bf16_1thread": {"flat": {"learner.precision": "bf16"}, "threads": 1},
        "quick": {"flat": QUICK_MODEL, "per_window": 40},
        "quick_bf16": {"flat": {**QUICK_MODEL, "learner.precision": "bf16"}, "per_window": 40},
    }
    for name, kw in variants.items():
        out[f"learner_updates_per_s_{name}"] = run("cpu", **kw)["learner_updates_per_s"]
    return out


if __name__ == "__main__":
    print(run())
