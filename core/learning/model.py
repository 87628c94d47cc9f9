"""The Q-Transformer network (Q-Transformer sec. 4.1; QT-TDM sec. IV.A, Table III).

Token layout for one time step with N action dims and K bins:

    position 0      : the state, one token from a learned linear layer (QT-TDM IV.A)
    position i >= 1 : the bin chosen for action dim i (1-based), from a per-dim
                      embedding table; the bin of the last dim is never a token
                      because nothing comes after it (QT-TDM: "QT takes N tokens")

A causal GPT-like transformer (minGPT, as QT-TDM) then gives, at position i-1, the K
Q-values of action dim i conditioned on the state and the bins of dims 1..i-1.

Axes in comments: H Q heads, B batch, T tokens (= N), D embed_dim, K bins.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dqt.core.config import ModelConfig


class Block(nn.Module):
    """Pre-LayerNorm transformer block (minGPT): x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.ln1 = nn.LayerNorm(embed_dim)
        # one fused q/k/v projection: a single GEMM is cheaper than nn.MultiheadAttention's path
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.ln2 = nn.LayerNorm(embed_dim)
        self.fc = nn.Linear(embed_dim, 4 * embed_dim)
        self.fc_proj = nn.Linear(4 * embed_dim, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        p = self.dropout if self.training else 0.0
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # attention dropout
        y = self.proj(y.transpose(1, 2).reshape(B, T, D))
        x = x + F.dropout(y, p, self.training)  # residual dropout
        # minGPT's GELU is the tanh approximation
        y = self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))
        return x + F.dropout(y, p, self.training)


class QTransformer(nn.Module):
    """Autoregressive per-dimension Q-function Q(s, a^{1:i-1}, a^i) over K bins per dim.

    Args:
        obs_dim: size of the flat observation vector (MetaWorld: 39).
        action_dims: N, the number of action dimensions (MetaWorld: 4).
        cfg: width, depth, heads, bins, dropout and number of Q heads (QT-TDM Table III).
    """

    def __init__(self, obs_dim: int, action_dims: int, cfg: ModelConfig) -> None:
        super().__init__()
        if action_dims < 1:
            raise ValueError(f"action_dims must be >= 1, got {action_dims}")
        self.obs_dim = obs_dim
        self.action_dims = action_dims
        self.num_bins = cfg.num_bins
        self.num_q_heads = cfg.num_q_heads
        self.embed_dim = cfg.embed_dim
        self.num_heads = cfg.num_heads
        self.dropout = cfg.dropout
        D, K, H, N = cfg.embed_dim, cfg.num_bins, cfg.num_q_heads, action_dims

        self.state_proj = nn.Linear(obs_dim, D)
        # one table holding the N-1 per-dim tables back to back; dim i uses rows [i*K, (i+1)*K)
        self.action_emb = nn.Embedding(max(N - 1, 1) * K, D)
        self.register_buffer("bin_offsets", torch.arange(N - 1) * K, persistent=False)
        self.pos_emb = nn.Parameter(torch.zeros(N, D))
        self.blocks = nn.ModuleList(Block(D, cfg.num_heads, cfg.dropout) for _ in range(cfg.num_layers))
        self.ln_f = nn.LayerNorm(D)
        # H Q heads, each a 2-layer MLP D -> D (ReLU) -> K (QT-TDM IV.A), shared over positions.
        # First layers fused into one GEMM; second layers batched over heads with baddbmm.
        # Output is linear: MetaWorld rewards are dense and unbounded, so no sigmoid.
        self.head_fc = nn.Linear(D, H * D)
        self.head_out_w = nn.Parameter(torch.empty(H, D, K))
        self.head_out_b = nn.Parameter(torch.zeros(H, 1, K))
        self._init_weights(cfg.num_layers, cfg.zero_init_q_out)

    def _init_weights(self, num_layers: int, zero_q_out: bool) -> None:
        # minGPT/GPT-2 init: N(0, 0.02), zero biases, residual projections scaled by depth
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        for block in self.blocks:
            for lin in (block.proj, block.fc_proj):
                nn.init.normal_(lin.weight, 0.0, 0.02 / math.sqrt(2 * num_layers))
        nn.init.normal_(self.pos_emb, 0.0, 0.02)
        if zero_q_out:
            # the peers' codes: every bin starts at Q = 0, the minimum return, so an untried bin
            # never looks better than a tried one; the heads still differ through head_fc
            nn.init.zeros_(self.head_out_w)
        else:
            # each head gets its own draw, so the heads differ from the start (min over heads)
            nn.init.normal_(self.head_out_w, 0.0, 0.02)

    def _tokens(self, obs: Tensor, bins: Tensor | None) -> Tensor:
        """[B, T, D] embedded (and embedding-dropped-out) tokens."""
        x = self.state_proj(obs).unsqueeze(1)  # [B, 1, D]
        if bins is not None and self.action_dims > 1:
            a = self.action_emb(bins[:, : self.action_dims - 1] + self.bin_offsets)  # [B, N-1, D]
            x = torch.cat((x, a), dim=1)
        x = x + self.pos_emb[: x.shape[1]]
        return F.dropout(x, self.dropout, self.training)  # embedding dropout

    def _q_heads(self, x: Tensor) -> Tensor:
        """Final LayerNorm'd features [B, T, D] -> Q [H, B, T, K]."""
        B, T, D = x.shape
        h = F.relu(self.head_fc(x)).view(B * T, self.num_q_heads, D).transpose(0, 1)  # [H, B*T, D]
        return torch.baddbmm(self.head_out_b, h, self.head_out_w).view(self.num_q_heads, B, T, self.num_bins)

    def _trunk(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def forward(self, obs: Tensor, bins: Tensor) -> Tensor:
        """obs [B, obs_dim] float32, bins [B, N] int64 -> Q [H, B, N, K].

        Position i holds Q(s, a^{1:i-1}, .) for action dim i (teacher forcing on the
        given bins); bins[:, N-1] is never read.
        """
        return self._q_heads(self._trunk(self._tokens(obs, bins)))

    def first_dim(self, obs: Tensor) -> Tensor:
        """Q(s, .) of action dim 1 only: [H, B, K], from the state token alone.

        Causality makes this equal to ``forward(obs, bins)[:, :, 0]``; it is the cheap
        bootstrap max_a1 Q(s_{t+n}, a1) of the last-dim target (QT eq. 1, i = N).
        """
        return self._q_heads(self._trunk(self._tokens(obs, None)))[:, :, 0]
