"""Recurrent networks from scratch (Chapter 11): a vanilla RNN and a GRU, one time step at a time.

Both take ``x [B, T, D]`` (batch first) and an optional initial state ``h0 [1, B, H]``, and return
``(outputs [B, T, H], h_T [1, B, H])``, the hidden state after every step and the last one, as
``torch.nn.RNN(..., batch_first=True)`` and ``torch.nn.GRU(..., batch_first=True)`` do. Their
parameters carry PyTorch's names and shapes (``weight_ih_l0 [G*H, D]``, ``weight_hh_l0 [G*H, H]``,
``bias_ih_l0``, ``bias_hh_l0``, with ``G`` = 1 for the RNN and 3 for the GRU), so that
``ours.load_state_dict(theirs.state_dict())`` copies weights in either direction; the tests check
outputs and gradients against PyTorch that way.

The update rules, with ``x_t [B, D]`` and ``h [B, H]``:

* vanilla RNN: ``h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``
* GRU (Cho et al., 2014; PyTorch's variant): a reset gate ``r``, an update gate ``z`` and a
  candidate ``n``,
  ``r = σ(x W_ir^T + b_ir + h W_hr^T + b_hr)``, ``z = σ(x W_iz^T + b_iz + h W_hz^T + b_hz)``,
  ``n = tanh(x W_in^T + b_in + r ⊙ (h W_hn^T + b_hn))``, ``h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}``.
  When ``z`` is near 1 the state is copied unchanged, which is how a GRU carries information
  across many steps without the gradient vanishing through repeated ``tanh``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["RNN", "GRU"]


class _Recurrent(nn.Module):
    """Shared parts: parameters with PyTorch's names, its uniform initialisation, the time loop."""

    gates = 1

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"input_size and hidden_size must be positive, got {input_size}, {hidden_size}")
        self.input_size, self.hidden_size = input_size, hidden_size
        g = self.gates * hidden_size
        self.weight_ih_l0 = nn.Parameter(torch.empty(g, input_size))
        self.weight_hh_l0 = nn.Parameter(torch.empty(g, hidden_size))
        self.bias_ih_l0 = nn.Parameter(torch.empty(g))
        self.bias_hh_l0 = nn.Parameter(torch.empty(g))
        bound = 1 / math.sqrt(hidden_size)                 # PyTorch's default: U(-1/√H, 1/√H)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def step(self, x_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One time step: ``x_t [B, D]``, ``h [B, H]`` -> the new ``h [B, H]``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"expected x of shape [B, T, {self.input_size}] (batch first), got {tuple(x.shape)}")
        batch = x.shape[0]
        if h0 is None:
            h = x.new_zeros(batch, self.hidden_size)
        elif h0.shape != (1, batch, self.hidden_size):
            raise ValueError(f"expected h0 of shape [1, {batch}, {self.hidden_size}], got {tuple(h0.shape)}")
        else:
            h = h0[0]
        outputs = []
        for t in range(x.shape[1]):                        # the sequential loop: step t needs step t - 1
            h = self.step(x[:, t], h)
            outputs.append(h)
        return torch.stack(outputs, dim=1), h[None]


class RNN(_Recurrent):
    """A vanilla (Elman) RNN with tanh, the twin of ``nn.RNN(D, H, batch_first=True)``.

    First used in section 11.1, *Recurrent networks*.
    """

    gates = 1

    def step(self, x_t, h):
        return torch.tanh(x_t @ self.weight_ih_l0.T + self.bias_ih_l0
                          + h @ self.weight_hh_l0.T + self.bias_hh_l0)


class GRU(_Recurrent):
    """A gated recurrent unit, the twin of ``nn.GRU(D, H, batch_first=True)``. The rows of the
    weights hold the reset, update and candidate parts in that order, as PyTorch's do.

    First used in section 11.1, *Recurrent networks*.
    """

    gates = 3

    def step(self, x_t, h):
        gi = x_t @ self.weight_ih_l0.T + self.bias_ih_l0            # [B, 3H]
        gh = h @ self.weight_hh_l0.T + self.bias_hh_l0              # [B, 3H]
        i_r, i_z, i_n = gi.chunk(3, dim=1)
        h_r, h_z, h_n = gh.chunk(3, dim=1)
        r = torch.sigmoid(i_r + h_r)                                 # reset gate
        z = torch.sigmoid(i_z + h_z)                                 # update gate
        n = torch.tanh(i_n + r * h_n)                                # candidate state
        return (1 - z) * n + z * h
