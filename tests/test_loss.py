"""Per-dimension targets, TD loss and conservative term against hand-computed numbers."""

from __future__ import annotations

import pytest
import torch

from dqt.core.learning.loss import conservative_loss, per_dim_targets, qt_loss, taken_q, td_loss


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


# One sample, N = 3 dims, K = 3 bins, one target head.
# Position 0 is dim 1's own Q: never a target inside the step (filled with 9s to prove it).
SEQ_1HEAD = t([[[[9.0, 9.0, 9.0], [0.1, 0.5, 0.2], [0.3, -1.0, 0.7]]]])  # [1, 1, 3, 3]
BOOT_1HEAD = t([[[1.0, 2.0, 0.5]]])  # [1, 1, 3]: next state's dim-1 Q


def test_targets_inner_dims_and_last_dim():
    y = per_dim_targets(SEQ_1HEAD, BOOT_1HEAD, ret=t([1.5]), discount=t([0.9]))
    # i=1 -> max of dim-2 Q = 0.5; i=2 -> max of dim-3 Q = 0.7 (no reward, no discount);
    # i=N -> R + d * max dim-1 Q(s') = 1.5 + 0.9 * 2.0 = 3.3
    assert torch.allclose(y, t([[0.5, 0.7, 3.3]]))


def test_terminal_discount_masks_bootstrap():
    y = per_dim_targets(SEQ_1HEAD, BOOT_1HEAD, ret=t([1.5]), discount=t([0.0]))
    assert torch.allclose(y, t([[0.5, 0.7, 1.5]]))


def test_two_heads_take_min_before_max():
    head1 = t([[[[0.0, 0.0, 0.0], [0.4, 0.3, 0.0], [0.3, -1.0, 0.9]]]])
    seq = torch.cat([SEQ_1HEAD, head1])  # [2, 1, 3, 3]
    boot = torch.cat([BOOT_1HEAD, t([[[3.0, 1.0, 0.5]]])])  # [2, 1, 3]
    y = per_dim_targets(seq, boot, ret=t([1.5]), discount=t([0.9]))
    # dim 2: min over heads [0.1, 0.3, 0.0] -> max 0.3 (max-then-min would give 0.4)
    # dim 3: min [0.3, -1.0, 0.7] -> 0.7; boot: min [1.0, 1.0, 0.5] -> 1.0 -> 1.5 + 0.9 = 2.4
    assert torch.allclose(y, t([[0.3, 0.7, 2.4]]))


def test_mc_lower_bound_on_and_off():
    off = per_dim_targets(SEQ_1HEAD, BOOT_1HEAD, t([1.5]), t([0.9]), mc_return=None)
    on = per_dim_targets(SEQ_1HEAD, BOOT_1HEAD, t([1.5]), t([0.9]), mc_return=t([0.6]))
    assert torch.allclose(off, t([[0.5, 0.7, 3.3]]))
    assert torch.allclose(on, t([[0.6, 0.7, 3.3]]))  # only dims below G_t are raised


def test_single_action_dim_needs_no_sequence():
    y = per_dim_targets(None, BOOT_1HEAD, ret=t([1.0]), discount=t([0.5]), mc_return=t([0.0]))
    assert torch.allclose(y, t([[2.0]]))


def test_targets_carry_no_gradient():
    seq = SEQ_1HEAD.clone().requires_grad_(True)
    boot = BOOT_1HEAD.clone().requires_grad_(True)
    y = per_dim_targets(seq, boot, t([1.5]), t([0.9]))
    assert not y.requires_grad


def test_td_loss_mse_and_huber():
    q_taken = t([[[1.0, 3.0]]])  # [H=1, B=1, N=2]
    y = t([[0.5, 0.0]])  # errors 0.5 and 3.0
    # mse: mean(0.5*0.25, 0.5*9) = 2.3125; huber: mean(0.5*0.25, 3 - 0.5) = 1.3125
    assert td_loss(q_taken, y, "mse").item() == pytest.approx(2.3125)
    assert td_loss(q_taken, y, "huber").item() == pytest.approx(1.3125)
    with pytest.raises(ValueError):
        td_loss(q_taken, y, "l1")


def test_td_loss_averages_online_heads():
    q_taken = t([[[1.0]], [[3.0]]])  # two heads, one sample, one dim
    # 0.5 * (1^2 + 3^2) / 2 = 2.5, both heads regress to the same target
    assert td_loss(q_taken, t([[0.0]]), "mse").item() == pytest.approx(2.5)


def test_taken_q_gathers_bins_per_dim_and_head():
    q = torch.arange(2 * 1 * 2 * 4, dtype=torch.float32).view(2, 1, 2, 4)
    out = taken_q(q, torch.tensor([[3, 1]]))
    assert out.tolist() == [[[3.0, 5.0]], [[11.0, 13.0]]]


def test_conservative_term_hand_value():
    q = t([[[[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 2.0, 0.0]]]])  # [1, 1, 2, 4]
    bins = torch.tensor([[1, 2]])
    # dim 1: untaken 1, 3, 4 -> (1 + 9 + 16) / (2 * 3) = 26/6; dim 2: untaken all 0 -> 0
    expected = (26.0 / 6.0 + 0.0) / 2
    assert conservative_loss(q, taken_q(q, bins)).item() == pytest.approx(expected)


def test_conservative_weight_zero_contributes_nothing_but_is_reported():
    q = t([[[[1.0, 2.0, 3.0, 4.0]]]]).requires_grad_(True)
    bins = torch.tensor([[1]])
    parts = qt_loss(q, bins, t([[0.0]]), "mse", conservative_weight=0.0)
    assert parts.total.item() == pytest.approx(0.5 * 4.0)  # td only: 0.5 * (2 - 0)^2
    assert parts.conservative.item() == pytest.approx(26.0 / 6.0)  # still a meaningful metric
    parts.total.backward()
    assert q.grad.tolist() == [[[[0.0, 2.0, 0.0, 0.0]]]]  # untaken bins get no gradient


def test_conservative_weight_pushes_untaken_bins_to_zero():
    q = t([[[[1.0, 2.0, 3.0, 4.0]]]]).requires_grad_(True)
    parts = qt_loss(q, torch.tensor([[1]]), t([[0.0]]), "mse", conservative_weight=0.5)
    assert parts.total.item() == pytest.approx(2.0 + 0.5 * 26.0 / 6.0)
    parts.total.backward()
    # d/dQk of 0.5 * Qk^2 / (2 * 3) = Qk / 6 for untaken k; taken bin: TD gradient 2
    assert torch.allclose(q.grad, t([[[[1 / 6, 2.0, 3 / 6, 4 / 6]]]]))
