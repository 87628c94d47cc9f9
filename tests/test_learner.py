"""Learner: target assembly, EMA (DQT eq. 10), LR schedule, learning, NaN guard, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dqt.core.config import RunConfig
from dqt.core.learning.learner import METRIC_KEYS, Learner, ema_update
from dqt.core.learning.replay import Batch, ReplayBuffer

OBS_DIM = 3


def small_cfg(**over) -> RunConfig:
    flat = {
        "model.embed_dim": 16, "model.num_layers": 1, "model.num_heads": 2, "model.num_bins": 8,
        "model.dropout": 0.0, "learner.lr_schedule": "constant", "learner.td_loss": "mse",
    }
    flat.update(over)
    return RunConfig.from_flat(flat)


def fixed_batch(n_dims: int = 2, batch: int = 16, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(batch, OBS_DIM, generator=g),
        bins=torch.randint(0, 8, (batch, n_dims), generator=g),
        ret=torch.rand(batch, generator=g),
        discount=torch.zeros(batch),
        next_obs=torch.randn(batch, OBS_DIM, generator=g),
        mc_return=torch.zeros(batch),
    )


def step(learner: Learner, batch: Batch) -> dict[str, float]:
    """One update and its metrics: the update alone never reads the device."""
    learner.update(batch)
    return learner.window_metrics()


class FakeTarget(nn.Module):
    """Target network stub with known outputs; counts which inputs it was run on."""

    def __init__(self, seq: torch.Tensor, boot: torch.Tensor) -> None:
        super().__init__()
        self.seq, self.boot, self.calls = seq, boot, []

    def forward(self, obs, bins):
        self.calls.append(("forward", obs))
        return self.seq

    def first_dim(self, obs):
        self.calls.append(("first_dim", obs))
        return self.boot


def test_learner_targets_use_sequence_on_obs_and_first_dim_on_next_obs():
    learner = Learner(OBS_DIM, 2, small_cfg(**{"learner.mc_lower_bound": True}))
    # two target heads, B = 1, N = 2, K = 3
    seq = torch.tensor([[[[5.0, 5.0, 5.0], [0.2, 0.9, 0.4]]], [[[5.0, 5.0, 5.0], [0.3, 0.6, 0.1]]]])
    boot = torch.tensor([[[1.0, 4.0, 2.0]], [[2.0, 3.0, 0.0]]])
    learner.target = FakeTarget(seq, boot)
    b = Batch(obs=torch.zeros(1, OBS_DIM), bins=torch.zeros(1, 2, dtype=torch.long), ret=torch.tensor([0.5]),
              discount=torch.tensor([0.25]), next_obs=torch.ones(1, OBS_DIM), mc_return=torch.tensor([0.7]))
    y = learner.targets(b)
    # dim 1: min heads [0.2, 0.6, 0.1] -> 0.6, raised to MC 0.7; dim 2: 0.5 + 0.25 * max[1, 3, 0] = 1.25
    assert torch.allclose(y, torch.tensor([[0.7, 1.25]]))
    kinds = {k: o for k, o in learner.target.calls}
    assert torch.equal(kinds["forward"], b.obs) and torch.equal(kinds["first_dim"], b.next_obs)


def test_single_dim_learner_never_runs_target_sequence():
    learner = Learner(OBS_DIM, 1, small_cfg())
    learner.target = FakeTarget(torch.full((2, 1, 1, 3), 100.0), torch.tensor([[[1.0, 2.0, 0.0]]] * 2))
    b = fixed_batch(n_dims=1, batch=1)
    b.discount = torch.tensor([0.5])
    assert torch.allclose(learner.targets(b), b.ret.unsqueeze(-1) + 1.0)
    assert [k for k, _ in learner.target.calls] == ["first_dim"]


def test_ema_update_is_convex_combination():
    online, target = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        online.weight.fill_(5.0), online.bias.fill_(-2.0)
        target.weight.fill_(1.0), target.bias.fill_(2.0)
    ema_update(target, online, tau=0.25)
    assert target.weight.tolist() == [[2.0, 2.0]]  # 0.25 * 5 + 0.75 * 1
    assert target.bias.tolist() == [1.0]  # 0.25 * -2 + 0.75 * 2


def test_learner_updates_target_every_k_updates():
    learner = Learner(OBS_DIM, 2, small_cfg(**{"learner.target_update_every": 2, "learner.target_tau": 0.1}))
    theta0 = [p.detach().clone() for p in learner.target.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(theta0, learner.model.parameters(), strict=True))
    batch = fixed_batch()
    learner.update(batch)
    assert all(torch.equal(a, b) for a, b in zip(theta0, learner.target.parameters(), strict=True))  # not yet
    learner.update(batch)
    for t0, t2, th in zip(theta0, learner.target.parameters(), learner.model.parameters(), strict=True):
        assert torch.allclose(t2, 0.1 * th.detach() + 0.9 * t0, atol=1e-7)
    assert not any(p.requires_grad for p in learner.target.parameters())


def test_update_reduces_loss_on_fixed_batch_and_reports_metrics():
    torch.manual_seed(0)
    learner = Learner(OBS_DIM, 2, small_cfg(**{"learner.lr": 3e-3, "learner.target_update_every": 1000}))
    batch = fixed_batch()
    history = [step(learner, batch) for _ in range(60)]
    assert set(history[0]) == set(METRIC_KEYS)
    assert all(isinstance(v, float) for v in history[0].values())
    assert history[-1]["loss/td"] < 0.2 * history[0]["loss/td"]
    assert learner.updates == 60


def test_lr_follows_schedule():
    learner = Learner(OBS_DIM, 2, small_cfg(**{"learner.lr_schedule": "linear", "learner.lr": 1e-3}),
                      total_updates=4)
    lrs = [step(learner, fixed_batch())["opt/lr"] for _ in range(4)]
    assert lrs == pytest.approx([1e-3, 0.75e-3, 0.5e-3, 0.25e-3])


def test_non_finite_loss_is_reported_by_the_window_and_never_touches_weights():
    learner = Learner(OBS_DIM, 2, small_cfg())
    learner.update(fixed_batch())
    before = [p.detach().clone() for p in learner.model.parameters()]
    bad = fixed_batch()
    bad.ret[3] = float("nan")
    learner.update(bad)  # queued, not checked: no host sync per update
    learner.update(fixed_batch())  # later updates are skipped too
    with pytest.raises(FloatingPointError, match=r"non-finite loss at update 1 \(log window of updates 0-2"):
        learner.window_metrics()
    assert all(torch.equal(a, b) for a, b in zip(before, learner.model.parameters(), strict=True))
    with pytest.raises(FloatingPointError, match="non-finite loss at update 1"):
        learner.state_dict()  # no resumable checkpoint from a poisoned run


def test_state_dict_round_trip_resumes_identically():
    cfg = small_cfg(**{"learner.target_update_every": 1, "learner.lr_schedule": "linear"})
    a = Learner(OBS_DIM, 2, cfg, total_updates=10)
    for _ in range(3):
        a.update(fixed_batch())
    a.window_metrics()
    b = Learner(OBS_DIM, 2, cfg, total_updates=10)
    b.load_state_dict(a.state_dict())
    assert b.updates == 3
    batch = fixed_batch(seed=1)
    assert step(a, batch) == step(b, batch)
    for pa, pb in zip(a.target.parameters(), b.target.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_learner_trains_from_replay_batches():
    buf = ReplayBuffer(100, OBS_DIM, 2, gamma=0.9, n_step=3)
    rng = np.random.default_rng(0)
    buf.add_episode(rng.standard_normal((21, OBS_DIM)), rng.integers(0, 8, (20, 2)), rng.random(20), True)
    learner = Learner(OBS_DIM, 2, small_cfg(**{"learner.conservative_weight": 1.0, "learner.td_loss": "huber"}))
    metrics = step(learner, buf.sample(32, rng))
    assert metrics["loss/conservative"] >= 0.0 and np.isfinite(metrics["q/mean"])
