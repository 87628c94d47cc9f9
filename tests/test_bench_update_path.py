"""The trainer-path benchmark runs on the CPU with a tiny budget; its CUDA keys only where a GPU is."""

from __future__ import annotations

import json
import time

import pytest
import torch

from benchmarks import bench_update_path
from dqt.core.config import RunConfig

TINY = RunConfig.from_flat({"model.embed_dim": 16, "model.num_layers": 1, "model.num_heads": 2, "model.num_bins": 8,
                            "learner.batch_size": 32, "learner.replay_capacity": 2000})


def test_trainer_path_runs_the_real_replay_learner_and_board_and_reports_updates_per_second(monkeypatch):
    """Every update of a window goes through replay, learner and (by the publish clock) board,
    and the rate is updates over seconds: a learner slowed to >= 20 ms an update reports <= 50."""
    import dqt.core.learning.learner as learner_mod

    path = bench_update_path._Path("cpu", TINY)
    before = len(path.replay)
    path.window(2 * bench_update_path.EPISODE_DECISIONS + 1)
    assert path.learner.updates == 201 and len(path.replay) == before + 3 * 100  # an episode per 100 updates
    assert path.board.version >= 1
    update = learner_mod.Learner.update
    monkeypatch.setattr(learner_mod.Learner, "update", lambda self, b: (time.sleep(0.02), update(self, b))[1])
    assert 0 < path.window(5) <= 50.0


def test_gpu_report_names_the_device(tmp_path):
    path = bench_update_path.write_gpu_report({"trainer_updates_per_s_cuda": 1.0}, "Some GPU", tmp_path / "gpu.json")
    data = json.loads(path.read_text())
    assert data["trainer_updates_per_s_cuda"] == 1.0 and data["_meta"]["device"] == "Some GPU"


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU this is the full CUDA benchmark")
def test_no_cuda_keys_without_a_gpu():
    assert bench_update_path.run_cuda() == {}


@pytest.mark.slow
def test_packed_jobs_add_up_their_rates():
    """Two jobs, each timed over the same second: their sum cannot exceed twice one job's
    unshared rate by much (they share these cores), and both did work."""
    alone = bench_update_path.packed_updates_per_s("cpu", jobs=1, cfg=TINY, warmup=2, seconds=1.0)
    both = bench_update_path.packed_updates_per_s("cpu", jobs=2, cfg=TINY, warmup=2, seconds=1.0)
    assert alone > 0 and 0 < both < 3 * alone
