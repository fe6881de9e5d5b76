"""Attention from scratch (Chapter 11), with the lecture's names and shapes.

The general attention layer takes query vectors ``Q [N_Q, D_Q]`` and input vectors
``X [N_X, D_X]``; with key and value matrices ``W_K [D_X, D_Q]`` and ``W_V [D_X, D_V]`` it computes

* keys ``K = X W_K`` ``[N_X, D_Q]`` and values ``V = X W_V`` ``[N_X, D_V]``,
* similarities ``E = Q K^T / sqrt(D_Q)`` ``[N_Q, N_X]``,
* attention weights ``A = softmax(E, dim=1)`` ``[N_Q, N_X]`` (each row sums to 1),
* outputs ``Y = A V`` ``[N_Q, D_V]``: output i is a weighted average of the values.

Self-attention computes the queries from the same inputs, ``Q = X W_Q``. Every function also
accepts leading batch axes (``Q [..., N_Q, D_Q]``), as ``F.scaled_dot_product_attention`` does.
Weight matrices here multiply from the right (``X W``, the slides' convention); ``nn.Linear``
stores the transpose.

``AdditiveAttention`` is Bahdanau et al.'s (2015) scoring for an RNN decoder: ``e_j = v^T tanh(W s
+ U h_j)`` between a decoder state ``s`` and every encoder state ``h_j``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["attention", "causal_mask", "AttentionLayer", "SelfAttention", "AdditiveAttention",
           "sinusoidal_positions"]


def attention(q, k, v, mask=None, scale=True):
    """Scaled dot-product attention: ``q [..., N_Q, D_Q]``, ``k [..., N_X, D_Q]``,
    ``v [..., N_X, D_V]``; ``mask [N_Q, N_X]`` (bool, True = may attend) is optional.
    Returns ``(Y [..., N_Q, D_V], A [..., N_Q, N_X])``. ``scale=False`` leaves out the
    division by ``sqrt(D_Q)`` (to show what it is for).

    First used in section 11.3, *The attention layer*.
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"queries and keys need the same D_Q, got {q.shape[-1]}, {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"keys and values need the same N_X, got {k.shape[-2]}, {v.shape[-2]}")
    e = q @ k.transpose(-2, -1)                                   # [..., N_Q, N_X]
    if scale:
        e = e / math.sqrt(q.shape[-1])
    if mask is not None:
        if mask.shape != e.shape[-2:]:
            raise ValueError(f"mask must be [N_Q, N_X] = {list(e.shape[-2:])}, "
                             f"got {list(mask.shape)}")
        if not mask.any(-1).all():
            raise ValueError("every query must be allowed to attend to some input")
        e = e.masked_fill(~mask, float("-inf"))
    a = e.softmax(dim=-1)                                         # each row sums to 1
    return a @ v, a


def causal_mask(n: int, device=None) -> torch.Tensor:
    """``[n, n]`` bool, True on and below the diagonal: position i may look at positions <= i.

    First used in section 11.3, *The attention layer*.
    """
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


class AttentionLayer(nn.Module):
    """The lecture's attention layer: queries come from outside, keys and values from ``X``.

    First used in section 11.6, *Exercises*.
    """

    def __init__(self, d_x: int, d_q: int, d_v: int):
        super().__init__()
        self.W_K = nn.Parameter(torch.randn(d_x, d_q) / math.sqrt(d_x))   # [D_X, D_Q]
        self.W_V = nn.Parameter(torch.randn(d_x, d_v) / math.sqrt(d_x))   # [D_X, D_V]

    def forward(self, q: torch.Tensor, x: torch.Tensor, mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        return attention(q, x @ self.W_K, x @ self.W_V, mask)


class SelfAttention(AttentionLayer):
    """Self-attention: one query per input, ``Q = X W_Q``. ``causal=True`` masks the future.

    First used in section 11.3, *The attention layer*.
    """

    def __init__(self, d_x: int, d_q: int, d_v: int, causal: bool = False):
        super().__init__(d_x, d_q, d_v)
        self.W_Q = nn.Parameter(torch.randn(d_x, d_q) / math.sqrt(d_x))   # [D_X, D_Q]
        self.causal = causal

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = causal_mask(x.shape[-2], x.device) if self.causal else None
        return super().forward(x @ self.W_Q, x, mask)


class AdditiveAttention(nn.Module):
    """Bahdanau attention: scores ``e_j = v^T tanh(W s + U h_j)`` for a decoder state ``s [B, S]``
    against encoder states ``h [B, T, H]``; returns the context ``c = sum_j a_j h_j [B, H]`` and
    the weights ``a [B, T]``. ``U h`` does not depend on the decoder step, so it can be computed
    once per sequence and passed in as ``uh [B, T, A]``."""

    def __init__(self, state_size: int, enc_size: int, attn_size: int):
        super().__init__()
        self.W = nn.Linear(state_size, attn_size, bias=False)
        self.U = nn.Linear(enc_size, attn_size)
        self.v = nn.Linear(attn_size, 1, bias=False)

    def forward(self, s: torch.Tensor, h: torch.Tensor, uh: torch.Tensor | None = None):
        uh = self.U(h) if uh is None else uh                          # [B, T, A]
        e = self.v(torch.tanh(self.W(s)[:, None] + uh))[..., 0]       # [B, T]
        a = e.softmax(dim=1)
        return (a[..., None] * h).sum(1), a


def sinusoidal_positions(n: int, d: int) -> torch.Tensor:
    """The transformer's fixed positional encodings (Vaswani et al., 2017), ``[n, d]``:
    ``PE[p, 2i] = sin(p / 10000^(2i/d))`` and ``PE[p, 2i+1] = cos(p / 10000^(2i/d))``.

    First used in section 11.3, *The attention layer*.
    """
    if d % 2:
        raise ValueError(f"the encoding dimension must be even, got {d}")
    pos = torch.arange(n, dtype=torch.float32)[:, None]            # [n, 1]
    freq = 10000 ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)   # [d/2]
    pe = torch.empty(n, d)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe
