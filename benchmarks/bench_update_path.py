"""Learner updates/s along the trainer's real path, and J runs packed on one GPU.

`learner_updates_per_s` (bench_learner) times `Learner.update` on pre-made batches. The
trainer does more per update: it draws the batch from the replay on the learner's device,
takes in an episode every `EPISODE_DECISIONS` updates (update-to-data ratio 1), publishes
the weights by the publish clock and reads the learner's metrics once per log window. This
benchmark does exactly those calls:

* `trainer_updates_per_s` (CPU) / `trainer_updates_per_s_cuda`: one learner;
* `packed_updates_per_s_cuda`: the sum over `PACKED_JOBS` processes, each an independent
  learner on the same GPU as `dqt sweep --jobs J` would start them (docs/GPU.md).

The CUDA keys exist only where a GPU is present; they go, with the device name, to
reports/bench/gpu.json.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from dqt.core.config import RunConfig
from dqt.core.ipc.transport import WeightBoard
from dqt.core.learning.learner import Learner
from dqt.core.learning.replay import ReplayBuffer

OBS_DIM, ACTION_DIMS = 39, 4
EPISODE_DECISIONS = 100  # the paper protocol: 200 env steps at action repeat 2
PACKED_JOBS = 4
GPU_REPORT = Path(__file__).resolve().parent.parent / "reports" / "bench" / "gpu.json"


class _Path:
    """One learner with its replay and weight board, driven as the trainer drives them."""

    def __init__(self, device: str, cfg: RunConfig | None = None, seed: int = 0):
        torch.manual_seed(seed)
        self.cfg = cfg or RunConfig()
        lc = self.cfg.learner
        self.learner = Learner(OBS_DIM, ACTION_DIMS, self.cfg, device=device, total_updates=10**6)
        self.replay = ReplayBuffer(lc.replay_capacity, OBS_DIM, ACTION_DIMS, lc.gamma, lc.n_step,
                                   lc.replay_sampling, lc.replay_return_floor, device=device)
        self.rng = np.random.default_rng(seed)
        self.board = WeightBoard(sum(p.numel() for p in self.learner.model.parameters()), mp.get_context("spawn"))
        for _ in range(max(1, -(-lc.batch_size // EPISODE_DECISIONS))):  # at least one batch of data
            self.add_episode()

    def add_episode(self) -> None:
        L, K = EPISODE_DECISIONS, self.cfg.model.num_bins
        self.replay.add_episode(self.rng.standard_normal((L + 1, OBS_DIM), dtype=np.float32),
                                self.rng.integers(0, K, (L, ACTION_DIMS)), self.rng.random(L), terminated=False)

    def updates(self, n: int) -> None:
        for _ in range(n):
            if self.learner.updates % EPISODE_DECISIONS == 0:
                self.add_episode()
            self.learner.update(self.replay.sample(self.cfg.learner.batch_size, self.rng))
            if self.learner.publish_due():
                self.board.publish(self.learner.model, self.learner.updates)

    def window(self, n: int) -> float:
        """Updates/s of `n` updates ended by the log window's read (which waits for the device)."""
        start = time.perf_counter()
        self.updates(n)
        self.learner.window_metrics()
        return n / (time.perf_counter() - start)


def trainer_updates_per_s(device: str = "cpu", cfg: RunConfig | None = None, warmup: int = 3, windows: int = 5,
                          per_window: int = 4) -> float:
    """Median updates/s over `windows` log windows of `per_window` updates, after `warmup`."""
    if device == "cpu":
        torch.set_num_threads(2)  # as bench_learner: the build machine's two cores
    path = _Path(device, cfg)
    path.window(warmup)  # first calls: allocator, fused-kernel set-up, and on CUDA graph capture
    return statistics.median(path.window(per_window) for _ in range(windows))


def _packed_worker(device: str, cfg: RunConfig | None, seed: int, warmup: int, seconds: float, threads: int,
                   barrier, results) -> None:
    torch.set_num_threads(threads)
    path = _Path(device, cfg, seed)
    path.window(warmup)
    barrier.wait(timeout=900)  # every job steady before any is timed: the window is shared
    start, done = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        path.updates(8)
        done += 8
    path.learner.window_metrics()
    results.put(done / (time.perf_counter() - start))


def packed_updates_per_s(device: str = "cuda", jobs: int = PACKED_JOBS, cfg: RunConfig | None = None,
                         warmup: int = 30, seconds: float = 20.0, threads: int = 1) -> float:
    """Total updates/s of `jobs` independent learner processes sharing `device`."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(jobs), ctx.Queue()
    procs = [ctx.Process(target=_packed_worker, args=(device, cfg, s, warmup, seconds, threads, barrier, results))
             for s in range(jobs)]
    for p in procs:
        p.start()
    try:
        rates = [results.get(timeout=600 + 4 * seconds) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return float(sum(rates))


def write_gpu_report(results: dict, device_name: str, path: Path = GPU_REPORT) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "device": device_name, "machine": platform.machine(),
            "torch": torch.__version__, "packed_jobs": PACKED_JOBS}
    path.write_text(json.dumps({**results, "_meta": meta}, indent=2))
    return path


def run_cuda(learner_updates_per_s_cuda: float | None = None) -> dict:
    """The CUDA keys, also written to reports/bench/gpu.json; {} without a GPU."""
    if not torch.cuda.is_available():
        return {}
    out = {"trainer_updates_per_s_cuda": trainer_updates_per_s("cuda", warmup=30, windows=5, per_window=200),
           "packed_updates_per_s_cuda": packed_updates_per_s("cuda")}
    report = dict(out)
    if learner_updates_per_s_cuda is not None:
        report["learner_updates_per_s_cuda"] = learner_updates_per_s_cuda
    write_gpu_report(report, torch.cuda.get_device_name(0))
    return out


if __name__ == "__main__":
    print({"trainer_updates_per_s": trainer_updates_per_s("cpu"), **run_cuda()})
