"""Replay buffer: n-step returns, bootstrap masking, MC return-to-go, ring wrap, uniform sampling.

The buffer stores torch tensors (here on the CPU); indices come back as tensors too."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dqt.core.learning.replay import ReplayBuffer


def episode(length: int, start: float = 0.0, obs_dim: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """obs[j] = start + j in every feature (so a stored obs names its step); bins = step."""
    obs = np.repeat((start + np.arange(length + 1, dtype=np.float32))[:, None], obs_dim, axis=1)
    bins = np.repeat(np.arange(length)[:, None], 3, axis=1)
    return obs, bins


def stored(buf: ReplayBuffer) -> dict[float, tuple[float, float, float, float]]:
    """{obs id: (R, d, next obs id, G)} of every stored transition."""
    n = len(buf)
    return {
        float(buf.obs[i, 0]): (float(buf.ret[i]), float(buf.discount[i]), float(buf.next_obs[i, 0]),
                               float(buf.mc_return[i]))
        for i in range(n)
    }


def test_one_step_terminated():
    buf = ReplayBuffer(10, obs_dim=2, action_dims=3, gamma=0.5, n_step=1)
    obs, bins = episode(3)
    buf.add_episode(obs, bins, np.array([1.0, 2.0, 4.0]), terminated=True)
    # R = r_t; d = 0.5 except the terminal step; G2 = 4, G1 = 2 + 2 = 4, G0 = 1 + 2 = 3
    assert stored(buf) == {0.0: (1.0, 0.5, 1.0, 3.0), 1.0: (2.0, 0.5, 2.0, 4.0), 2.0: (4.0, 0.0, 3.0, 4.0)}


@pytest.mark.parametrize("terminated", [True, False])
def test_three_step_terminated_vs_truncated(terminated):
    buf = ReplayBuffer(10, obs_dim=2, action_dims=3, gamma=0.5, n_step=3)
    obs, bins = episode(4)
    buf.add_episode(obs, bins, np.array([1.0, 2.0, 4.0, 8.0]), terminated=terminated)
    # R0 = 1 + .5*2 + .25*4 = 3; R1 = 2 + 2 + 2 = 6; R2 = 4 + 4 = 8 (n' = 2); R3 = 8 (n' = 1)
    # next: s3, s4, s4, s4; d = gamma^n' = .125, .125, .25, .5 unless s4 is a true terminal
    # G3 = 8, G2 = 4 + 4 = 8, G1 = 2 + 4 = 6, G0 = 1 + 3 = 4
    d = [0.125, 0.0, 0.0, 0.0] if terminated else [0.125, 0.125, 0.25, 0.5]
    assert stored(buf) == {
        0.0: (3.0, d[0], 3.0, 4.0),
        1.0: (6.0, d[1], 4.0, 6.0),
        2.0: (8.0, d[2], 4.0, 8.0),
        3.0: (8.0, d[3], 4.0, 8.0),
    }


def test_ring_wraps_at_capacity_oldest_first():
    buf = ReplayBuffer(5, obs_dim=2, action_dims=3, gamma=0.5, n_step=1)
    buf.add_episode(*episode(3, start=0.0), np.array([1.0, 1.0, 1.0]), terminated=True)  # ids 0,1,2
    buf.add_episode(*episode(4, start=10.0), np.array([2.0, 2.0, 2.0, 2.0]), terminated=False)  # 10..13
    assert len(buf) == 5
    # slots 0..2 <- 0,1,2; then 10,11 -> slots 3,4 and 12,13 overwrite slots 0,1
    assert buf.obs[:, 0].tolist() == [12.0, 13.0, 2.0, 10.0, 11.0]
    data = stored(buf)
    assert data[2.0] == (1.0, 0.0, 3.0, 1.0)  # survivor of episode 1 keeps its own terminal step
    assert data[13.0] == (2.0, 0.5, 14.0, 2.0)  # truncated: bootstraps from the final obs
    batch = buf.sample(2000, np.random.default_rng(0))
    assert set(batch.obs[:, 0].tolist()) == {2.0, 10.0, 11.0, 12.0, 13.0}


def test_episode_longer_than_capacity_keeps_newest_steps():
    buf = ReplayBuffer(3, obs_dim=2, action_dims=3, gamma=1.0, n_step=2)
    buf.add_episode(*episode(5), np.ones(5), terminated=True)
    data = stored(buf)
    assert sorted(data) == [2.0, 3.0, 4.0]
    assert data[2.0] == (2.0, 1.0, 4.0, 3.0)  # n-step window still computed over the whole episode
    assert data[4.0] == (1.0, 0.0, 5.0, 1.0)


def test_sampling_is_uniform_over_stored_transitions():
    buf = ReplayBuffer(8, obs_dim=2, action_dims=3, gamma=0.9, n_step=3)
    for start in (0.0, 100.0, 200.0):  # 3 x 5 = 15 transitions into 8 slots: wrapped
        buf.add_episode(*episode(5, start), np.zeros(5), terminated=False)
    ids = np.concatenate([buf.sample(4000, np.random.default_rng(s)).obs[:, 0].numpy() for s in range(5)])
    values, counts = np.unique(ids, return_counts=True)
    assert values.tolist() == [102.0, 103.0, 104.0, 200.0, 201.0, 202.0, 203.0, 204.0]  # the newest 8
    # 20000 draws over 8 slots: each ~2500, binomial std ~47; 5 std is a safe bound
    assert np.all(np.abs(counts - 2500) < 250)


def test_batch_dtypes_shapes_and_to():
    buf = ReplayBuffer(10, obs_dim=2, action_dims=3, gamma=0.5, n_step=1)
    buf.add_episode(*episode(4), np.arange(4.0), terminated=True)
    batch = buf.sample(6, np.random.default_rng(0)).to("cpu")
    assert batch.obs.shape == (6, 2) and batch.obs.dtype == torch.float32
    assert batch.bins.shape == (6, 3) and batch.bins.dtype == torch.int64
    assert batch.ret.shape == batch.discount.shape == batch.mc_return.shape == (6,)
    assert torch.equal(batch.bins[:, 0].float(), batch.obs[:, 0])  # rows stay aligned


def test_rejects_bad_shapes_and_empty_sampling():
    buf = ReplayBuffer(10, obs_dim=2, action_dims=3, gamma=0.5, n_step=1)
    with pytest.raises(ValueError):
        buf.sample(1, np.random.default_rng(0))
    obs, bins = episode(3)
    with pytest.raises(ValueError, match="obs must be"):
        buf.add_episode(obs[:-1], bins, np.zeros(3), terminated=True)  # final observation missing
    with pytest.raises(ValueError, match="bins must be"):
        buf.add_episode(obs, bins[:, :2], np.zeros(3), terminated=True)


def test_return_weighted_sampling_follows_the_peers_rule():
    """P(episode) = max(return, floor) / sum, then a uniform step inside it: 100k draws."""
    buf = ReplayBuffer(100, obs_dim=2, action_dims=3, gamma=0.9, n_step=1, sampling="return-weighted",
                       return_floor=0.5)
    lengths, rewards = [4, 10, 6, 5], [1.0, 0.2, 0.0, -3.0]  # returns 4, 2, 0, -15
    start = 0.0
    for length, r in zip(lengths, rewards, strict=True):
        obs, bins = episode(length, start)
        buf.add_episode(obs, bins, np.full(length, r), terminated=False)
        start += 100.0
    weights = np.array([4.0, 2.0, 0.5, 0.5])  # floors for the zero and the negative return
    np.testing.assert_allclose(buf.episode_probabilities(), weights / weights.sum())
    idx = buf.sample_indices(100_000, np.random.default_rng(0)).numpy()
    ep = (buf.obs[idx, 0].numpy() // 100).astype(int)
    freq = np.bincount(ep, minlength=4) / idx.size
    np.testing.assert_allclose(freq, weights / weights.sum(), atol=0.005)
    # uniform inside an episode: episode 1's ten steps each get 1/10 of its draws
    steps = buf.obs[idx[ep == 1], 0].numpy() - 100
    np.testing.assert_allclose(np.bincount(steps.astype(int), minlength=10) / steps.size, 0.1, atol=0.01)


def test_return_weighted_sampling_forgets_overwritten_episodes():
    buf = ReplayBuffer(10, obs_dim=2, action_dims=3, gamma=0.9, n_step=1, sampling="return-weighted")
    for k, r in enumerate([5.0, 1.0, 1.0]):  # 6 + 4 + 4 steps into 10 slots: the first is half gone
        length = 6 if k == 0 else 4
        obs, bins = episode(length, 100.0 * k)
        buf.add_episode(obs, bins, np.full(length, r), terminated=False)
    idx = buf.sample_indices(20_000, np.random.default_rng(1))
    ids = buf.obs[idx, 0].numpy()
    # episode 0 keeps steps 4 and 5 (slots 4, 5), still with its return 30 as weight
    assert set(np.unique(ids[ids < 100])) == {4.0, 5.0}
    assert (ids < 100).mean() == pytest.approx(30 / 38, abs=0.01)
    buf.add_episode(*episode(2, 300.0), np.ones(2), terminated=False)  # overwrites the rest of episode 0
    ids = buf.obs[buf.sample_indices(5_000, np.random.default_rng(2)), 0].numpy()
    assert (ids >= 100).all()


@pytest.mark.parametrize("sampling", ["uniform", "return-weighted"])
def test_state_dict_round_trip_samples_the_same_batches(sampling):
    """A checkpointed buffer (and generator state) resumes the exact same draws, after a wrap too."""
    buf = ReplayBuffer(12, obs_dim=2, action_dims=3, gamma=0.9, n_step=2, sampling=sampling)
    for k in range(4):
        obs, bins = episode(5, 100.0 * k)
        buf.add_episode(obs, bins, np.full(5, k + 1.0), terminated=k % 2 == 0)
    rng = np.random.default_rng(3)
    rng.random()
    state, rng_state = buf.state_dict(), rng.bit_generator.state
    other = ReplayBuffer(12, obs_dim=2, action_dims=3, gamma=0.9, n_step=2, sampling=sampling)
    other.load_state_dict(state)
    rng2 = np.random.default_rng(0)
    rng2.bit_generator.state = rng_state
    assert len(other) == len(buf) == 12
    for _ in range(3):
        a, b = buf.sample(16, rng), other.sample(16, rng2)
        for name in ("obs", "bins", "ret", "discount", "next_obs", "mc_return"):
            assert torch.equal(getattr(a, name), getattr(b, name))
    obs, bins = episode(3, 900.0)
    buf.add_episode(obs, bins, np.ones(3), terminated=False)
    other.add_episode(obs, bins, np.ones(3), terminated=False)
    np.testing.assert_array_equal(buf.obs, other.obs)
