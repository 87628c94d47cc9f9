"""The learner actually learns: single-process QT on toy-reach reaches >= 0.9 success.

Budget: 5,000 env steps (about 15-40 s on one CPU thread); training stops at the first
evaluation that reaches the bar. Wall-clock speed is reported by the benchmark, not asserted.
"""

import time

import pytest
import torch

from core.config import RunConfig
from core.single_process import train_single_process

# A small QT (1 layer, 64 wide, 11 bins) so the check fits CI; gamma 0.8 suits 30-step episodes.
TOY = {
    "trainer.task": "toy-reach", "trainer.train_steps": 5000,
    "model.embed_dim": 64, "model.num_layers": 1, "model.num_heads": 4, "model.num_bins": 11, "model.dropout": 0.0,
    "learner.batch_size": 128, "learner.lr": 1e-3, "learner.lr_schedule": "constant", "learner.gamma": 0.8,
    "learner.warmup_steps": 300, "learner.updates_per_step": 0.5, "learner.target_update_every": 1,
    "learner.target_tau": 0.02, "exploration.decay_fraction": 0.5, "eval.every": 500, "eval.episodes": 20,
}


@pytest.mark.parametrize("seed", [0, 1])
def test_single_process_qt_learns_toy_reach(seed):
    # One thread: the model is tiny, and two spinning OpenMP threads on a busy 2-core machine
    # made updates 50x slower.
    torch.set_num_threads(1)
    cfg = RunConfig.from_flat({**TOY, "trainer.seed": seed})
    t0 = time.monotonic()
    history = train_single_process(cfg, on_eval=lambda p: p.success_rate >= 0.9)
    best = max(p.success_rate for p in history)
    print(f"seed {seed}: success {[p.success_rate for p in history]} in {time.monotonic() - t0:.1f}s")
    assert history[0].success_rate <= 0.2, "the untrained policy should not already solve the task"
    assert best >= 0.9, f"QT did not learn toy-reach: eval success {[p.success_rate for p in history]}"
