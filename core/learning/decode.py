"""Greedy and epsilon-greedy action selection over a `QTransformer`.

Greedy (Q-Transformer sec. 4.1): dim by dim, pick the bin maximising the value of the
Q heads combined by min (the pessimistic value the targets use) or mean (the peers'
acting), and feed it back as the next token. `GreedyDecoder` does this with a key/value cache and the weights
pre-extracted into plain tensors, so each action dim costs one new token through
bare `torch` ops (no `nn.Module` dispatch, no autograd). `brute_force_greedy` is the
slow reference it must agree with bin for bin.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dqt.core.learning.model import QTransformer


class GreedyDecoder:
    """Greedy autoregressive decode with a key/value cache: each action dim costs one new token, earlier tokens are never recomputed.

    The decoder snapshots the model's weights (and a few tables derived from them) on
    first use; after the weights change, call `refresh` (agents do once per episode).
    It cannot notice changes itself: foreach optimizers (Adam's default) and writes
    into shared memory update parameters without bumping their version counters.
    Dropout is always off
    (eval semantics) whatever ``model.training`` says. Designed for a single CPU thread
    at batch 1..~64; it works on any device the model lives on.

    Args:
        model: the network to decode; it is read, never modified.
        heads: how the Q heads are combined before the argmax, "min" or "mean".
    """

    def __init__(self, model: QTransformer, heads: str = "min") -> None:
        self.model = model
        self.heads = check_heads(heads)
        self._fresh = False

    @torch.no_grad()
    def refresh(self) -> None:
        """Re-read the model's current weights (about a millisecond for the default model)."""
        m = self.model
        D, nh, N, K = m.embed_dim, m.num_heads, m.action_dims, m.num_bins
        hd = D // nh
        self.D, self.nh, self.hd, self.N, self.H = D, nh, hd, N, m.num_q_heads
        # attention scale folded into the query projection (SDPA's 1/sqrt(head_dim))
        qscale = torch.ones(3 * D, dtype=m.pos_emb.dtype, device=m.pos_emb.device)
        qscale[:D] = 1.0 / math.sqrt(hd)
        self.state_w = m.state_proj.weight.t().clone()
        self.state_b = m.state_proj.bias + m.pos_emb[0]  # position 0 folded into the state token
        self.layers = []
        for blk in m.blocks:
            self.layers.append((
                blk.ln1.weight.clone(), blk.ln1.bias.clone(), blk.ln1.eps,
                blk.qkv.weight.t() * qscale, blk.qkv.bias * qscale,
                blk.proj.weight.t().clone(), blk.proj.bias.clone(),
                blk.ln2.weight.clone(), blk.ln2.bias.clone(), blk.ln2.eps,
                blk.fc.weight.t().clone(), blk.fc.bias.clone(),
                blk.fc_proj.weight.t().clone(), blk.fc_proj.bias.clone(),
            ))
        # Action tokens: bin embedding + position folded into one table; since everything
        # before layer 0's attention is per token, its LN and q/k/v are tabulated too.
        if N > 1:
            tok = (m.action_emb.weight[: (N - 1) * K].view(N - 1, K, D) + m.pos_emb[1:, None]).reshape(-1, D)
            ln_w, ln_b, eps, w_qkv, b_qkv = self.layers[0][:5]
            self.tok_x = tok
            self.tok_qkv = torch.addmm(b_qkv, F.layer_norm(tok, (D,), ln_w, ln_b, eps), w_qkv)
            self.offsets = [i * K for i in range(N - 1)]
        self.lnf = (m.ln_f.weight.clone(), m.ln_f.bias.clone(), m.ln_f.eps)
        self.head_w = m.head_fc.weight.t().clone()
        self.head_b = m.head_fc.bias.clone()
        self.out_w = m.head_out_w.clone()
        self.out_b = m.head_out_b.clone()
        self._fresh = True

    # ---- decode ------------------------------------------------------------------------
    def __call__(self, obs: Tensor | np.ndarray) -> Tensor:
        """Greedy bins for a batch of observations: [B, obs_dim] -> int64 [B, N] (a 1-D obs gives [N])."""
        if not self._fresh:
            self.refresh()
        with torch.inference_mode():
            x = torch.as_tensor(obs, dtype=self.state_w.dtype, device=self.state_w.device)
            if x.dim() == 1:
                return self._decode(x.unsqueeze(0))[0]
            return self._decode(x)

    def _decode(self, obs: Tensor) -> Tensor:
        B, D, nh, hd, N, H = obs.shape[0], self.D, self.nh, self.hd, self.N, self.H
        out = torch.empty(B, N, dtype=torch.int64, device=obs.device)
        # caches: keys stored transposed so scores are one matmul q @ K^T
        k_cache = [obs.new_empty(B, nh, hd, N) for _ in self.layers]
        v_cache = [obs.new_empty(B, nh, N, hd) for _ in self.layers]
        x = torch.addmm(self.state_b, obs, self.state_w)  # state token (QT-TDM IV.A)
        qkv0 = None
        for t in range(N):
            for li, (l1w, l1b, e1, wqkv, bqkv, wp, bp, l2w, l2b, e2, wfc, bfc, wfp, bfp) in enumerate(self.layers):
                if li == 0 and qkv0 is not None:
                    qkv = qkv0  # tabulated in refresh()
                else:
                    qkv = torch.addmm(bqkv, F.layer_norm(x, (D,), l1w, l1b, e1), wqkv)
                v = qkv[:, 2 * D :]
                if N > 1:  # later tokens attend to this one
                    k_cache[li][:, :, :, t] = qkv[:, D : 2 * D].view(B, nh, hd)
                    v_cache[li][:, :, t] = v.view(B, nh, hd)
                if t == 0:
                    y = v  # softmax over a single token is 1
                else:
                    s = torch.matmul(qkv[:, :D].view(B, nh, 1, hd), k_cache[li][:, :, :, : t + 1])
                    y = torch.matmul(torch.softmax(s, -1), v_cache[li][:, :, : t + 1]).view(B, D)
                x = torch.addmm(bp, y, wp).add_(x)
                h = F.gelu(torch.addmm(bfc, F.layer_norm(x, (D,), l2w, l2b, e2), wfc), approximate="tanh")
                x = torch.addmm(bfp, h, wfp).add_(x)
            h = torch.addmm(self.head_b, F.layer_norm(x, (D,), *self.lnf[:2], self.lnf[2]), self.head_w).relu_()
            q = torch.baddbmm(self.out_b, h.view(B, H, D).transpose(0, 1), self.out_w)  # [H, B, K]
            a = combine_heads(q, self.heads).argmax(-1)
            out[:, t] = a
            if t + 1 < N:
                idx = a + self.offsets[t]
                x = self.tok_x.index_select(0, idx)
                qkv0 = self.tok_qkv.index_select(0, idx)
        return out


def check_heads(heads: str) -> str:
    if heads not in ("min", "mean"):
        raise ValueError(f"heads must be 'min' or 'mean', got '{heads}'")
    return heads


def combine_heads(q: Tensor, heads: str) -> Tensor:
    """Q [H, B, K] -> [B, K]: the pessimistic min over heads, or their mean."""
    if q.shape[0] == 1:
        return q[0]
    return q.amin(0) if heads == "min" else q.mean(0)


@torch.no_grad()
def brute_force_greedy(model: QTransformer, obs: Tensor, heads: str = "min") -> Tensor:
    """Reference: for each dim i, run the FULL forward on the bins chosen so far and take argmax at position i.

    Uses eval semantics (dropout off) and restores ``model.training`` afterwards.
    Returns int64 [B, N].
    """
    was_training = model.training
    model.eval()
    try:
        obs = torch.as_tensor(obs, dtype=torch.float32)
        bins = torch.zeros(obs.shape[0], model.action_dims, dtype=torch.int64, device=obs.device)
        for i in range(model.action_dims):
            q = model(obs, bins)[:, :, i]  # [H, B, K]; later bins are masked by causality
            bins[:, i] = combine_heads(q, check_heads(heads)).argmax(-1)
        return bins
    finally:
        model.train(was_training)
