"""Greedy decode throughput on one CPU thread (targets and reference numbers: docs/BACKGROUND.md)."""

from __future__ import annotations

import statistics
import time

import torch

from dqt.core.config import ModelConfig
from dqt.core.learning.decode import GreedyDecoder
from dqt.core.learning.model import QTransformer

OBS_DIM, ACTION_DIMS = 39, 4


def _actions_per_s(decoder: GreedyDecoder, obs: torch.Tensor, repeats: int, calls: int) -> float:
    """Median over `repeats` windows of `calls` decodes, counting every action in the batch."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(calls):
            decoder(obs[i % len(obs)])
        rates.append(calls * obs.shape[1] / (time.perf_counter() - start))
    return statistics.median(rates)


def run(repeats: int = 7, calls: int = 200) -> dict:
    """Default model (QT-TDM Table III), obs_dim 39, N 4, a single torch thread (as agents run)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = QTransformer(OBS_DIM, ACTION_DIMS, ModelConfig())
        decoder = GreedyDecoder(model)
        result = {}
        for key, batch in (("decode_actions_per_s", 1), ("decode_actions_per_s_b8", 8)):
            obs = torch.randn(16, batch, OBS_DIM)  # a few distinct inputs, cycled
            _actions_per_s(decoder, obs, 1, 20)  # warm-up (weight snapshot, allocator)
            result[key] = _actions_per_s(decoder, obs, repeats, calls)
        start = time.perf_counter()
        decoder.refresh()
        result["decode_refresh_ms"] = (time.perf_counter() - start) * 1e3
        return result
    finally:
        torch.set_num_threads(threads)
