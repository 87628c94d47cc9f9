"""Replay on the learner's device: the device episode table, seeded draws, checkpoints; CUDA where present."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dqt.core.learning.replay import ReplayBuffer

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def fill(buf: ReplayBuffer, episodes: int, seed: int = 0) -> list[tuple[float, int, float]]:
    """Episodes of 1-6 steps; obs[j, 0] = 1000 e + j names episode e's step j. Returns (id, length, weight)."""
    rng = np.random.default_rng(seed)
    added = []
    for e in range(episodes):
        length = int(rng.integers(1, 7))
        obs = np.repeat((1000.0 * e + np.arange(length + 1, dtype=np.float32))[:, None], buf.obs_dim, axis=1)
        rewards = rng.choice([0.0, 0.5, 2.0], size=length)
        buf.add_episode(obs, rng.integers(0, 8, (length, buf.action_dims)), rewards, terminated=bool(e % 2))
        added.append((1000.0 * e, length, max(rewards.sum(), buf.return_floor)))
    return added


def test_device_episode_table_follows_growth_and_eviction():
    """300 episodes into 250 slots: the table grows past its first 64 rows and drops evicted episodes."""
    buf = ReplayBuffer(250, obs_dim=2, action_dims=2, gamma=0.9, n_step=2, sampling="return-weighted",
                       return_floor=0.1)
    fill(buf, 300)
    table, cum = buf._table()
    np.testing.assert_array_equal(table.numpy(), np.array(list(buf._episodes), dtype=np.float64))
    np.testing.assert_allclose(cum.numpy(), np.cumsum([w for _, _, w in buf._episodes]))
    assert buf._ep_ring.shape[0] >= len(buf._episodes) > 64


def test_return_weighted_frequencies_after_growth_and_eviction():
    buf = ReplayBuffer(120, obs_dim=2, action_dims=2, gamma=0.9, n_step=1, sampling="return-weighted",
                       return_floor=0.1)
    fill(buf, 100, seed=1)
    idx = buf.sample_indices(200_000, np.random.default_rng(0))
    episode_of = (buf.obs[idx, 0].numpy() // 1000).astype(int)
    live = sorted({int(f) for f, _, _ in buf._episodes})  # first transitions, in global order
    probs = buf.episode_probabilities()
    ids = np.unique(episode_of)
    assert len(ids) == len(live) == len(probs)  # every stored episode drawn, no evicted one
    freq = np.array([(episode_of == i).mean() for i in ids])
    np.testing.assert_allclose(freq, probs, atol=0.004)


def test_same_numpy_generator_state_gives_the_same_batch_and_torch_generators_work():
    buf = ReplayBuffer(100, obs_dim=3, action_dims=2, gamma=0.9, n_step=3)
    fill(buf, 20)
    a, b = buf.sample(32, np.random.default_rng(7)), buf.sample(32, np.random.default_rng(7))
    assert torch.equal(a.obs, b.obs) and torch.equal(a.bins, b.bins)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(buf.sample_indices(50, g1), buf.sample_indices(50, g2))
    assert buf.sample_indices(50, np.random.default_rng(1)).dtype == torch.int64


def test_checkpoint_round_trip_after_growth_draws_the_same_batches():
    buf = ReplayBuffer(300, obs_dim=2, action_dims=2, gamma=0.9, n_step=2, sampling="return-weighted")
    fill(buf, 150)
    state = buf.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state["arrays"].values())  # portable: host numpy
    other = ReplayBuffer(300, obs_dim=2, action_dims=2, gamma=0.9, n_step=2, sampling="return-weighted")
    other.load_state_dict(state)
    for seed in range(3):
        a, b = buf.sample(64, np.random.default_rng(seed)), other.sample(64, np.random.default_rng(seed))
        assert torch.equal(a.obs, b.obs) and torch.equal(a.ret, b.ret) and torch.equal(a.bins, b.bins)
    fill(buf, 10, seed=5)
    fill(other, 10, seed=5)
    assert torch.equal(buf._table()[1], other._table()[1])


# ---- CUDA (run where a GPU is present) ----------------------------------------------------
@cuda
@pytest.mark.parametrize("sampling", ["uniform", "return-weighted"])
def test_cuda_replay_stores_and_gathers_on_the_device_like_the_cpu_one(sampling):
    cpu = ReplayBuffer(200, obs_dim=4, action_dims=3, gamma=0.9, n_step=3, sampling=sampling)
    gpu = ReplayBuffer(200, obs_dim=4, action_dims=3, gamma=0.9, n_step=3, sampling=sampling, device="cuda")
    fill(cpu, 80)
    fill(gpu, 80)
    assert gpu.obs.device.type == gpu.bins.device.type == "cuda"
    for k in ReplayBuffer.ARRAYS:
        assert torch.equal(getattr(cpu, k), getattr(gpu, k).cpu()), k
    idx = gpu.sample_indices(4096, np.random.default_rng(0))
    assert idx.device.type == "cuda" and int(idx.max()) < len(gpu)
    batch = gpu.sample(128, np.random.default_rng(0))
    assert all(t.device.type == "cuda" for t in (batch.obs, batch.bins, batch.ret, batch.next_obs))
    # checkpoint from the GPU loads on the CPU
    back = ReplayBuffer(200, obs_dim=4, action_dims=3, gamma=0.9, n_step=3, sampling=sampling)
    back.load_state_dict(gpu.state_dict())
    for k in ReplayBuffer.ARRAYS:
        assert torch.equal(getattr(back, k), getattr(cpu, k)), k


@cuda
def test_cuda_episode_arrival_is_one_host_to_device_copy():
    from torch.profiler import ProfilerActivity, profile

    buf = ReplayBuffer(500, obs_dim=4, action_dims=3, gamma=0.9, n_step=3, sampling="return-weighted", device="cuda")
    fill(buf, 5)
    buf.sample(16, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    obs, bins, rewards = rng.standard_normal((41, 4)), rng.integers(0, 8, (40, 3)), rng.random(40)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        buf.add_episode(obs, bins, rewards, terminated=False)
        buf.sample(16, rng)
        torch.cuda.synchronize()
    copies = [e for e in prof.events() if "HtoD" in e.name]
    assert len(copies) == 1, [e.name for e in copies]
