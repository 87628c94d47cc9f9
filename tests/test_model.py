"""QTransformer: shapes, causality over action dims, first-dim shortcut, Q heads, dropout."""

from __future__ import annotations

import pytest
import torch

from dqt.core.config import ModelConfig
from dqt.core.learning.model import QTransformer

SMALL = ModelConfig(embed_dim=32, num_layers=2, num_heads=4, num_bins=16, dropout=0.1, num_q_heads=2, zero_init_q_out=False)


def make(obs_dim: int = 7, n: int = 4, cfg: ModelConfig = SMALL, seed: int = 0) -> QTransformer:
    torch.manual_seed(seed)
    return QTransformer(obs_dim, n, cfg)


def batch(model: QTransformer, b: int = 5, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(b, model.obs_dim, generator=g)
    bins = torch.randint(0, model.num_bins, (b, model.action_dims), generator=g)
    return obs, bins


def test_attributes_and_shapes() -> None:
    m = make()
    assert (m.obs_dim, m.action_dims, m.num_bins, m.num_q_heads) == (7, 4, 16, 2)
    obs, bins = batch(m)
    assert m(obs, bins).shape == (2, 5, 4, 16)
    assert m.first_dim(obs).shape == (2, 5, 16)
    assert m(obs, bins).dtype == torch.float32


def test_default_config_shapes() -> None:
    m = make(obs_dim=39, cfg=ModelConfig(zero_init_q_out=False))
    obs, bins = batch(m, b=3)
    assert m(obs, bins).shape == (2, 3, 4, 256)


@pytest.mark.parametrize("n", [1, 2, 6])
def test_other_action_dims(n: int) -> None:
    m = make(n=n).eval()
    obs, bins = batch(m)
    assert m(obs, bins).shape == (2, 5, n, 16)
    torch.testing.assert_close(m(obs, bins)[:, :, 0], m.first_dim(obs), rtol=0, atol=1e-6)


def test_single_q_head() -> None:
    cfg = ModelConfig(embed_dim=32, num_layers=1, num_heads=4, num_bins=16, num_q_heads=1, zero_init_q_out=False)
    m = make(cfg=cfg)
    obs, bins = batch(m)
    assert m(obs, bins).shape == (1, 5, 4, 16)


@pytest.mark.parametrize("j", [0, 1, 2])
def test_causal_over_action_dims(j: int) -> None:
    """Bins of dim j (0-based) feed Q of dims > j only (Q-Transformer's autoregressive factorisation)."""
    m = make().eval()
    obs, bins = batch(m)
    changed = bins.clone()
    changed[:, j] = (bins[:, j] + 1 + torch.arange(5)) % m.num_bins
    q, q2 = m(obs, bins), m(obs, changed)
    torch.testing.assert_close(q[:, :, : j + 1], q2[:, :, : j + 1], rtol=0, atol=1e-6)
    assert (q[:, :, j + 1 :] - q2[:, :, j + 1 :]).abs().amax() > 1e-4


def test_last_bin_never_read() -> None:
    m = make().eval()
    obs, bins = batch(m)
    changed = bins.clone()
    changed[:, -1] = (bins[:, -1] + 3) % m.num_bins
    assert torch.equal(m(obs, bins), m(obs, changed))


def test_first_dim_matches_forward_position_zero() -> None:
    m = make(obs_dim=39, cfg=ModelConfig(zero_init_q_out=False)).eval()
    obs, bins = batch(m, b=4)
    torch.testing.assert_close(m.first_dim(obs), m(obs, bins)[:, :, 0], rtol=0, atol=1e-6)


def test_q_heads_differ() -> None:
    m = make()
    obs, bins = batch(m)
    q = m.eval()(obs, bins)
    assert (q[0] - q[1]).abs().amax() > 1e-3


def test_dropout_only_in_train_mode() -> None:
    m = make()
    obs, bins = batch(m)
    m.train()
    assert not torch.equal(m(obs, bins), m(obs, bins))
    m.eval()
    assert torch.equal(m(obs, bins), m(obs, bins))


def test_every_parameter_gets_gradient() -> None:
    m = make()
    obs, bins = batch(m, b=32)
    (m(obs, bins).square().mean() + m.first_dim(obs).mean()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_rejects_zero_action_dims() -> None:
    with pytest.raises(ValueError):
        QTransformer(3, 0, SMALL)
