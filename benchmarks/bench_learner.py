"""Learner throughput: updates/s at batch 512 on the default model (reference numbers: docs/BACKGROUND.md).

`learner_updates_per_s` is the default config as a user gets it (``learner.precision: auto``:
bf16 on a CPU with native bf16 at this size). `cpu_variants` measures the CPU learner's other
settings beside it, as ``learner_updates_per_s_<variant>``: fp32 eager (the baseline), bf16,
torch.compile (inductor, default mode, fp32), one thread instead of two (fp32 and bf16), and the
quick profiles' small model (width 64, 1 layer, 64 bins, batch 128) in fp32 and bf16.
Measured 2026-12-05 on the 2-core build machine (AMD EPYC, avx512_bf16), alone: default model
fp32 11.0 -> bf16 13.2 updates/s on 2 threads (6.3 -> 8.0 on one), compiled 11.1 (no gain, 30 s
to compile); small model fp32 151 -> bf16 131 (101 -> 99 on one thread). Hence auto's rule.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from dqt.core.config import RunConfig
from dqt.core.learning.learner import Learner
from dqt.core.learning.replay import Batch

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
    """The CPU learner's settings beside the default (`learner_updates_per_s`), 2 threads unless named."""
    out = {}
    fp32, bf16 = {"learner.precision": "fp32"}, {"learner.precision": "bf16"}
    variants = {
        "fp32": {"flat": fp32},
        "bf16": {"flat": bf16},
        "compiled": {"flat": fp32, "compile_cpu": True, "warmup": 5},
        "1thread": {"flat": fp32, "threads": 1},
        "bf16_1thread": {"flat": bf16, "threads": 1},
        "quick": {"flat": {**QUICK_MODEL, **fp32}, "per_window": 40},
        "quick_bf16": {"flat": {**QUICK_MODEL, **bf16}, "per_window": 40},
    }
    for name, kw in variants.items():
        out[f"learner_updates_per_s_{name}"] = run("cpu", **kw)["learner_updates_per_s"]
    return out


if __name__ == "__main__":
    print(run())
