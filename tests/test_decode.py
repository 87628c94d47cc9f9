"""Greedy decode: the cached fast path equals the brute-force reference bin for bin; epsilon-greedy (DQT eq. 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dqt.core.config import ModelConfig
from dqt.core.learning.decode import GreedyDecoder, brute_force_greedy
from dqt.core.learning.model import QTransformer

SMALL = ModelConfig(embed_dim=32, num_layers=2, num_heads=4, num_bins=16, dropout=0.1, num_q_heads=2, zero_init_q_out=False)
SIZES = {
    "small": (7, 3, SMALL),
    "small-1head-1layer": (5, 5, ModelConfig(embed_dim=16, num_layers=1, num_heads=2, num_bins=8, num_q_heads=1, zero_init_q_out=False)),
    "one-dim": (4, 1, SMALL),
    "default": (39, 4, ModelConfig(zero_init_q_out=False)),
}


def make(size: str, seed: int) -> QTransformer:
    obs_dim, n, cfg = SIZES[size]
    torch.manual_seed(seed)
    return QTransformer(obs_dim, n, cfg)


def observations(model: QTransformer, b: int, seed: int) -> torch.Tensor:
    return torch.randn(b, model.obs_dim, generator=torch.Generator().manual_seed(100 + seed)) * 2


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_decode_equals_brute_force(size: str, batch: int, seed: int) -> None:
    m = make(size, seed)
    obs = observations(m, batch, seed)
    fast = GreedyDecoder(m)(obs)
    assert fast.dtype == torch.int64 and fast.shape == (batch, m.action_dims)
    assert torch.equal(fast, brute_force_greedy(m, obs))


def test_greedy_uses_min_over_heads() -> None:
    """At each dim the chosen bin maximises min over heads, not head 0 or the mean."""
    m = make("small", 3).eval()
    obs = observations(m, 64, 3)
    bins = GreedyDecoder(m)(obs)
    q = m(obs, bins)  # teacher-forced on the chosen bins
    torch.testing.assert_close(q.amin(0).argmax(-1), bins, rtol=0, atol=0)
    assert not torch.equal(q[0].argmax(-1), bins)  # head 0 alone would pick differently somewhere


def test_decode_ignores_train_mode_dropout() -> None:
    m = make("default", 0)
    obs = observations(m, 8, 0)
    dec = GreedyDecoder(m)
    expected = dec(obs)
    m.train()
    assert torch.equal(dec(obs), expected)
    assert torch.equal(brute_force_greedy(m, obs), expected)
    assert m.training  # neither path changes the caller's mode


def test_decode_follows_weight_updates() -> None:
    """Agents load new weights every episode; after refresh() the decoder uses them.

    foreach Adam (the default, and what the learner uses) does not bump parameter
    version counters, so the decoder cannot notice by itself: this once froze the policy.
    """
    m = make("small", 0)
    obs = observations(m, 32, 0)
    dec = GreedyDecoder(m)
    before = dec(obs)
    opt = torch.optim.Adam(m.parameters(), lr=0.05, foreach=True)
    m(obs, before).amin(0).mean().backward()
    opt.step()
    dec.refresh()
    after = dec(obs)
    assert not torch.equal(after, before)
    assert torch.equal(after, brute_force_greedy(m, obs))
    other = make("small", 7)
    m.load_state_dict(other.state_dict())
    dec.refresh()
    assert torch.equal(dec(obs), brute_force_greedy(other, obs))


def test_accepts_numpy_and_single_observation() -> None:
    m = make("small", 0)
    obs = observations(m, 4, 0)
    dec = GreedyDecoder(m)
    expected = brute_force_greedy(m, obs)
    assert torch.equal(dec(obs.numpy().astype(np.float64)), expected)
    assert torch.equal(dec(obs[2].numpy()), expected[2])


def test_greedy_can_act_on_the_mean_of_the_heads() -> None:
    """`heads="mean"` (the peers' acting) maximises the heads' mean at each dim."""
    m = make("small", 3).eval()
    obs = observations(m, 64, 3)
    bins = GreedyDecoder(m, "mean")(obs)
    torch.testing.assert_close(m(obs, bins).mean(0).argmax(-1), bins, rtol=0, atol=0)
    assert torch.equal(bins, brute_force_greedy(m, obs, "mean"))
    assert not torch.equal(bins, GreedyDecoder(m, "min")(obs))
