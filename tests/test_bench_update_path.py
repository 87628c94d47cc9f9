"""The trainer-path benchmark runs on the CPU with a tiny budget; its CUDA keys only where a GPU is."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import bench_update_path
from core.config import RunConfig

TINY = RunConfig.from_flat({"model.embed_dim": 16, "model.num_layers": 1, "model.num_heads": 2, "model.num_bins": 8,
                            "learner.batch_size": 32, "learner.replay_capacity": 2000})


def test_trainer_path_runs_the_real_replay_learner_and_board_on_cpu():
    threads = torch.get_num_threads()
    try:
        rate = bench_update_path.trainer_updates_per_s("cpu", cfg=TINY, warmup=2, windows=2, per_window=3)
    finally:
        torch.set_num_threads(threads)
    assert rate > 0


def test_gpu_report_names_the_device(tmp_path):
    path = bench_update_path.write_gpu_report({"trainer_updates_per_s_cuda": 1.0}, "Some GPU", tmp_path / "gpu.json")
    data = json.loads(path.read_text())
    assert data["trainer_updates_per_s_cuda"] == 1.0 and data["_meta"]["device"] == "Some GPU"


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU this is the full CUDA benchmark")
def test_no_cuda_keys_without_a_gpu():
    assert bench_update_path.run_cuda() == {}


@pytest.mark.slow
def test_packed_jobs_add_up_their_rates():
    rate = bench_update_path.packed_updates_per_s("cpu", jobs=2, cfg=TINY, warmup=2, seconds=1.0)
    assert rate > 0
