"""Q-Transformer loss: per-dimension Bellman targets, TD error, conservative term.

Pure tensor functions so that each piece is testable with hand-made Q tensors.
Axis names: H = Q heads, B = batch, N = action dims, K = bins per dim.

* Targets (QT eq. 1 = DQT eq. 9): inside a time step, dim i's target is the max over
  the next dim's bins with no reward and no discount; the last dim gets the n-step
  reward plus the discounted max over dim 1 of the next state. Q-values from the
  target network are the MIN over its heads before that max (clipped double Q, QT-TDM).
  Optionally max(target, MC return-to-go) (QT 4.3, Algorithm 1).
* TD loss (QT eq. 2 term (i)): 0.5 (q - y)^2, or smooth-L1 with beta 1 (= 0.5 x^2 near 0).
* Conservative term (QT eq. 2 term (ii), Algorithm 1's normalisation):
  1 / (2 (K - 1)) * sum over untaken bins of Q^2 -- pushes them to the minimum return 0.
All three are averaged over heads, batch and dims.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dqt.core.config import TD_LOSSES


def per_dim_targets(
    q_target_seq: torch.Tensor | None,
    q_target_next_first: torch.Tensor,
    ret: torch.Tensor,
    discount: torch.Tensor,
    mc_return: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bellman targets y [B, N] for every action dim of the taken action (no gradient).

    Args:
        q_target_seq: [Ht, B, N, K] target-network Q of (s_t, a_t^{1:i-1}, .) for each
            dim i (only dims 2..N are read); may be None when N = 1.
        q_target_next_first: [Ht, B, K] target-network Q of (s_{t+n'}, .) for dim 1.
        ret: [B] n-step discounted reward R_t.
        discount: [B] d_t = gamma^{n'}, or 0 where s_{t+n'} is terminal.
        mc_return: [B] Monte-Carlo return-to-go G_t, or None to skip the lower bound.
    """
    with torch.no_grad():
        # min over heads, then max over bins (QT-TDM's clipped double Q)
        boot = q_target_next_first.amin(dim=0).amax(dim=-1)  # [B]
        last = ret + discount * boot  # i = N: reward enters only here (QT eq. 1, line 2)
        if q_target_seq is not None and q_target_seq.shape[2] > 1:
            # i < N: max over the bins of dim i+1, same time step, gamma = 1 (QT eq. 1, line 1)
            inner = q_target_seq[:, :, 1:, :].amin(dim=0).amax(dim=-1)  # [B, N-1]
            y = torch.cat([inner, last.unsqueeze(-1)], dim=-1)
        else:
            y = last.unsqueeze(-1)
        if mc_return is not None:
            # MC return-to-go is a lower bound on Q* for every dim of step t (QT 4.3)
            y = torch.maximum(y, mc_return.unsqueeze(-1))
    return y


def taken_q(q: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Q of the taken bins: q [H, B, N, K], bins [B, N] int64 -> [H, B, N]."""
    idx = bins.unsqueeze(0).unsqueeze(-1).expand(q.shape[0], -1, -1, 1)
    return q.gather(-1, idx).squeeze(-1)


def td_loss(q_taken: torch.Tensor, targets: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Mean TD penalty over heads, batch and dims: q_taken [H, B, N], targets [B, N].

    'mse' is QT eq. 2's 1/2 (q - y)^2; 'huber' is smooth-L1 with beta 1 (QT-TDM), which
    equals 1/2 x^2 for |x| <= 1 and |x| - 1/2 beyond.
    """
    y = targets.unsqueeze(0).expand_as(q_taken)
    if kind == "mse":
        return 0.5 * F.mse_loss(q_taken, y)
    if kind == "huber":
        return F.smooth_l1_loss(q_taken, y, beta=1.0)
    raise ValueError(f"td loss must be one of {TD_LOSSES}, got '{kind}'")


def conservative_loss(q: torch.Tensor, q_taken: torch.Tensor) -> torch.Tensor:
    """QT eq. 2 term (ii), Algorithm 1: mean of sum_{k != a} Q(k)^2 / (2 (K - 1)).

    q [H, B, N, K] all bins; q_taken [H, B, N] the taken bin's values. The sum over
    untaken bins is the sum over all bins minus the taken one (no [.., K] mask needed).
    """
    k = q.shape[-1]
    untaken = q.square().sum(dim=-1) - q_taken.square()
    return untaken.mean() / (2.0 * (k - 1))


@dataclass
class LossParts:
    """total = td + eta * conservative; `conservative` is always the term's value
    (computed without gradient when eta = 0, so it adds exactly nothing to the loss
    but still reports how far untaken bins sit from 0)."""

    total: torch.Tensor
    td: torch.Tensor
    conservative: torch.Tensor
    q_taken: torch.Tensor


def qt_loss(
    q: torch.Tensor,
    bins: torch.Tensor,
    targets: torch.Tensor,
    td_kind: str = "mse",
    conservative_weight: float = 0.0,
) -> LossParts:
    """The Q-Transformer objective (QT eq. 2 / DQT eq. 8) for online Q [H, B, N, K]."""
    q_taken = taken_q(q, bins)
    td = td_loss(q_taken, targets.detach(), td_kind)
    if conservative_weight > 0.0:
        cons = conservative_loss(q, q_taken)
        total = td + conservative_weight * cons
    else:
        # eta = 0: the term must contribute exactly nothing, so keep it off the graph.
        with torch.no_grad():
            cons = conservative_loss(q, q_taken)
        total = td
    return LossParts(total=total, td=td, conservative=cons, q_taken=q_taken)
