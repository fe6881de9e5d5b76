"""Neural networks from scratch (Chapter 5): activation functions, a two-layer MLP in a few
lines, and ReLU units as a universal approximator.

Shapes: inputs ``x [N, D]``; a layer's weights ``W [D_in, D_out]`` (the slides' and PyTorch
functional convention ``x @ W``; ``torch.nn.Linear`` stores the transpose ``[D_out, D_in]``),
biases ``b [D_out]``; hidden activations ``h [N, H]``; scores ``[N, C]``.
"""
from __future__ import annotations

from typing import Callable

import torch

__all__ = ["ACTIVATIONS", "Activation", "init_mlp", "mlp_forward", "mlp_to_torch", "relu_features",
           "fit_relu_units", "relu_bump"]


class Activation:
    """An activation ``f`` with its derivative ``df`` written by hand, and ``torch.nn``'s twin."""

    def __init__(self, name: str, f: Callable, df: Callable, torch_module: Callable[[], torch.nn.Module]):
        self.name, self.f, self.df, self.torch_module = name, f, df, torch_module

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x)

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"


def _sigmoid(x):
    return 1 / (1 + torch.exp(-x))


ACTIVATIONS = {
    "sigmoid": Activation("sigmoid", _sigmoid, lambda x: _sigmoid(x) * (1 - _sigmoid(x)), torch.nn.Sigmoid),
    "tanh": Activation("tanh", lambda x: (torch.exp(2 * x) - 1) / (torch.exp(2 * x) + 1),
                       lambda x: 1 - torch.tanh(x) ** 2, torch.nn.Tanh),
    "ReLU": Activation("ReLU", lambda x: torch.clamp(x, min=0), lambda x: (x > 0).to(x.dtype), torch.nn.ReLU),
    "leaky ReLU": Activation("leaky ReLU", lambda x: torch.maximum(0.2 * x, x),
                             lambda x: torch.where(x > 0, torch.ones_like(x), torch.full_like(x, 0.2)),
                             lambda: torch.nn.LeakyReLU(0.2)),
    "softplus": Activation("softplus", lambda x: torch.log1p(torch.exp(-x.abs())) + x.clamp(min=0),
                           _sigmoid, torch.nn.Softplus),
    "ELU": Activation("ELU", lambda x: torch.where(x > 0, x, torch.expm1(x.clamp(max=0))),
                      lambda x: torch.where(x > 0, torch.ones_like(x), torch.exp(x.clamp(max=0))),
                      lambda: torch.nn.ELU(alpha=1.0)),
}
"""The six activations of the lecture (leaky ReLU with slope 0.2, ELU with alpha = 1)."""


def init_mlp(sizes: list[int], scale: float = 0.01, generator: torch.Generator | None = None,
             device=None) -> list[torch.Tensor]:
    """Parameters ``[W1, b1, W2, b2, ...]`` of an MLP with layer widths ``sizes`` (input first):
    ``W_k [sizes[k], sizes[k+1]]`` drawn as ``scale * N(0, 1)``, biases zero, all trainable.

    First used in section 5.1, *From a linear classifier to a network*.
    """
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"sizes must list at least an input and an output width, all >= 1; got {sizes}")
    params = []
    for d_in, d_out in zip(sizes[:-1], sizes[1:]):
        params.append((scale * torch.randn(d_in, d_out, generator=generator)).to(device).requires_grad_())
        params.append(torch.zeros(d_out, device=device, requires_grad=True))
    return params


def mlp_forward(params: list[torch.Tensor], x: torch.Tensor,
                activation: Callable[[torch.Tensor], torch.Tensor] = ACTIVATIONS["ReLU"]) -> torch.Tensor:
    """``h = act(x @ W1 + b1)``, ..., scores ``= h @ W_L + b_L`` (no activation on the last layer).
    ``x`` may be images ``[N, ...]``; it is flattened to ``[N, D]``.

    First used in section 5.3, *A neural network in a few lines*.
    """
    if len(params) % 2:
        raise ValueError("params must alternate weights and biases: [W1, b1, W2, b2, ...]")
    h = x.reshape(len(x), -1)
    if h.shape[1] != params[0].shape[0]:
        raise ValueError(f"the input has {h.shape[1]} features but W1 expects {params[0].shape[0]}")
    n_layers = len(params) // 2
    for k in range(n_layers):
        h = h @ params[2 * k] + params[2 * k + 1]
        if k < n_layers - 1:
            h = activation(h)
    return h


def mlp_to_torch(params: list[torch.Tensor], activation: str = "ReLU") -> torch.nn.Sequential:
    """The same network as ``torch.nn.Sequential(Flatten, Linear, act, ..., Linear)``, with the
    parameters copied (``nn.Linear`` stores ``W`` transposed).

    First used in section 5.3, *A neural network in a few lines*.
    """
    layers: list[torch.nn.Module] = [torch.nn.Flatten()]
    n_layers = len(params) // 2
    for k in range(n_layers):
        W, b = params[2 * k], params[2 * k + 1]
        lin = torch.nn.Linear(W.shape[0], W.shape[1]).to(W.device)
        with torch.no_grad():
            lin.weight.copy_(W.T)
            lin.bias.copy_(b)
        layers.append(lin)
        if k < n_layers - 1:
            layers.append(ACTIVATIONS[activation].torch_module())
    return torch.nn.Sequential(*layers)


def relu_features(x: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """Hidden layer of a 1-D two-layer ReLU network with one unit per knot:
    ``h_j = max(0, x - knot_j)``, plus a constant column. ``x [N] -> [N, n_knots + 1]``."""
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D [N], got shape {tuple(x.shape)}")
    return torch.cat([torch.ones(len(x), 1, dtype=x.dtype, device=x.device),
                      torch.clamp(x[:, None] - knots[None, :], min=0)], dim=1)


def fit_relu_units(x: torch.Tensor, y: torch.Tensor, n_units: int, lo: float | None = None,
                   hi: float | None = None):
    """Best least-squares fit ``y ~ p + sum_j u_j max(0, x - k_j)`` with ``n_units`` ReLU units
    whose kinks ``k_j`` are spread evenly over ``[lo, hi)``. Returns ``(predict, coefficients)``;
    the fit is a piecewise-linear interpolant with ``n_units`` kinks.

    First used in section 5.6, *Universal approximation*.
    """
    if n_units < 1:
        raise ValueError(f"n_units must be >= 1, got {n_units}")
    lo = float(x.min()) if lo is None else lo
    hi = float(x.max()) if hi is None else hi
    knots = lo + (hi - lo) * torch.arange(n_units, dtype=x.dtype) / n_units
    coef = torch.linalg.lstsq(relu_features(x, knots), y[:, None]).solution[:, 0]

    def predict(t: torch.Tensor) -> torch.Tensor:
        return relu_features(t, knots) @ coef

    predict.knots = knots
    return predict, coef


def relu_bump(x: torch.Tensor, left: float, right: float, height: float = 1.0, ramp: float = 0.1) -> torch.Tensor:
    """A trapezoid "bump", 0 outside ``[left, right]`` and ``height`` inside, built from four
    ReLU units: ``h/r * (relu(x-l) - relu(x-l-r) - relu(x-right+r) + relu(x-right))``.

    First used in section 5.6, *Universal approximation*.
    """
    if not left + 2 * ramp <= right:
        raise ValueError(f"need left + 2*ramp <= right, got left={left}, right={right}, ramp={ramp}")
    r = torch.relu
    return height / ramp * (r(x - left) - r(x - left - ramp) - r(x - right + ramp) + r(x - right))
