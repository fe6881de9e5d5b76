"""Optimisers from scratch (Chapter 4), with the same interface and update rules as ``torch.optim``.

Each optimiser holds a list of tensors (``requires_grad=True``) and, like its ``torch.optim``
twin, reads ``p.grad`` in ``step()`` and is reset by ``zero_grad()``. The update rules follow
PyTorch's documented algorithms exactly (where ``eps`` goes, how weight decay enters), so the
tests can compare the two step for step:

==========  ==========================================================================
SGD         ``v = momentum * v + g`` (``v = g`` at the first step); ``w -= lr * v``
AdaGrad     ``s += g^2``; ``w -= lr * g / (sqrt(s) + eps)``
RMSProp     ``s = alpha * s + (1 - alpha) g^2``; ``w -= lr * g / (sqrt(s) + eps)``
Adam        ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g^2``; bias-corrected
            ``m / (1 - b1^t)`` and ``v / (1 - b2^t)``; ``w -= lr * m_hat / (sqrt(v_hat) + eps)``
AdamW       Adam on the data gradient, and separately ``w -= lr * weight_decay * w``
==========  ==========================================================================

``weight_decay`` in SGD, AdaGrad, RMSProp and Adam is an L2 penalty: it adds
``weight_decay * w`` to the gradient *before* the update rule (the gradient of
``weight_decay / 2 * ||w||^2``). AdamW decouples it, as Loshchilov and Hutter proposed.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch

__all__ = ["Optimizer", "SGD", "AdaGrad", "RMSProp", "Adam", "AdamW", "OPTIMIZERS", "TORCH_TWINS",
           "gradient_descent_1d", "Surface", "SURFACES", "trajectory"]


class Optimizer:
    """Base class: keeps the parameters and a per-parameter state dict."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, weight_decay: float = 0.0):
        self.params = [p for p in params]
        if not self.params:
            raise ValueError("the optimiser got no parameters")
        for p in self.params:
            if not isinstance(p, torch.Tensor) or not p.requires_grad:
                raise TypeError("parameters must be tensors with requires_grad=True")
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.lr, self.weight_decay = lr, weight_decay
        self.state: list[dict] = [{} for _ in self.params]
        self.t = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _grad(self, p: torch.Tensor) -> torch.Tensor:
        g = p.grad
        return g + self.weight_decay * p if self.weight_decay else g

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient (like torch.optim, a parameter
        whose ``.grad`` is None is skipped; if none has one, ``backward()`` was forgotten)."""
        if all(p.grad is None for p in self.params):
            raise RuntimeError("no parameter has a .grad: call loss.backward() before step()")
        self.t += 1
        for p, state in zip(self.params, self.state):
            if p.grad is not None:
                self.update(p, self._grad(p), state)

    def update(self, p: torch.Tensor, g: torch.Tensor, state: dict) -> None:  # pragma: no cover
        raise NotImplementedError


class SGD(Optimizer):
    """Gradient descent with optional (heavy-ball) momentum.

    First used in section 4.4, *Momentum, AdaGrad, RMSProp and Adam*.
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum

    def update(self, p, g, state):
        if self.momentum:
            v = state.get("velocity")
            v = g.clone() if v is None else self.momentum * v + g
            state["velocity"] = v
            g = v
        p -= self.lr * g


class AdaGrad(Optimizer):
    """Per-coordinate step sizes that shrink with the sum of all squared gradients so far.

    First used in section 4.4, *Momentum, AdaGrad, RMSProp and Adam*.
    """

    def __init__(self, params, lr: float = 0.01, eps: float = 1e-10, weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        self.eps = eps

    def update(self, p, g, state):
        s = state.setdefault("sum_sq", torch.zeros_like(p))
        s += g * g
        p -= self.lr * g / (s.sqrt() + self.eps)


class RMSProp(Optimizer):
    """AdaGrad with a leaky (exponentially decaying) sum of squared gradients.

    First used in section 4.4, *Momentum, AdaGrad, RMSProp and Adam*.
    """

    def __init__(self, params, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        if not 0 <= alpha < 1:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        self.alpha, self.eps = alpha, eps

    def update(self, p, g, state):
        s = state.setdefault("mean_sq", torch.zeros_like(p))
        s.mul_(self.alpha).add_((1 - self.alpha) * g * g)
        p -= self.lr * g / (s.sqrt() + self.eps)


class Adam(Optimizer):
    """Momentum (first moment) plus RMSProp (second moment), both bias-corrected.

    First used in section 4.4, *Momentum, AdaGrad, RMSProp and Adam*.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        self.betas, self.eps = betas, eps

    def update(self, p, g, state):
        b1, b2 = self.betas
        m = state.setdefault("m", torch.zeros_like(p))
        v = state.setdefault("v", torch.zeros_like(p))
        m.mul_(b1).add_((1 - b1) * g)
        v.mul_(b2).add_((1 - b2) * g * g)
        m_hat = m / (1 - b1 ** self.t)
        v_hat = v / (1 - b2 ** self.t)
        p -= self.lr * m_hat / (v_hat.sqrt() + self.eps)


class AdamW(Adam):
    """Adam with decoupled weight decay: the decay shrinks ``w`` directly, outside Adam's
    per-coordinate scaling.

    First used in section 4.4, *Momentum, AdaGrad, RMSProp and Adam*.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay=0.0)
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.decoupled = weight_decay

    def update(self, p, g, state):
        p.mul_(1 - self.lr * self.decoupled)
        super().update(p, g, state)


OPTIMIZERS = {"SGD": SGD, "SGD+Momentum": lambda params, lr, **kw: SGD(params, lr, momentum=0.9, **kw),
              "AdaGrad": AdaGrad, "RMSProp": RMSProp, "Adam": Adam}
"""The five optimisers of the chapter's comparison table, by name."""

TORCH_TWINS = {SGD: torch.optim.SGD, AdaGrad: torch.optim.Adagrad, RMSProp: torch.optim.RMSprop,
               Adam: torch.optim.Adam, AdamW: torch.optim.AdamW}
"""Each from-scratch optimiser and the ``torch.optim`` class it must match step for step."""


def gradient_descent_1d(grad: Callable[[float], float], x0: float, lr: float, steps: int) -> list[float]:
    """``x <- x - lr * grad(x)``, ``steps`` times from ``x0``; returns ``[x0, x1, ..., x_steps]``.

    First used in section 4.2, *Follow the slope*.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    xs = [float(x0)]
    for _ in range(steps):
        xs.append(xs[-1] - lr * grad(xs[-1]))
    return xs


class Surface:
    """A 2-D loss surface ``f(w) -> scalar`` for ``w [2]``, with a view box for plotting."""

    def __init__(self, name: str, f: Callable[[torch.Tensor], torch.Tensor], start, box, minimum):
        self.name, self.f, self.start, self.box, self.minimum = name, f, tuple(start), tuple(box), tuple(minimum)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return self.f(w)

    def grid(self, n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``X, Y, Z`` arrays ``[n, n]`` for a contour plot over the box."""
        x0, x1, y0, y1 = self.box
        X, Y = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
        W = torch.tensor(np.stack([X, Y]), dtype=torch.float64)
        return X, Y, self.f(W).numpy()


def _valley(w):
    # An ill-conditioned quadratic bowl: 20 times steeper across the valley than along it.
    return 0.05 * w[0] ** 2 + 1.0 * w[1] ** 2


def _rosenbrock(w):
    # Rosenbrock's banana: a long, curved, flat-bottomed valley with its minimum at (1, 1).
    return (1 - w[0]) ** 2 + 10 * (w[1] - w[0] ** 2) ** 2


SURFACES = {
    "valley": Surface("valley", _valley, start=(-9.0, 2.0), box=(-10, 10, -3, 3), minimum=(0, 0)),
    "banana": Surface("banana", _rosenbrock, start=(-1.5, 2.0), box=(-2, 2, -1, 3), minimum=(1, 1)),
}


def trajectory(optimizer: str | Callable, surface: Surface, lr: float, steps: int, start=None,
               **hyper) -> np.ndarray:
    """Positions ``[steps + 1, 2]`` of an optimiser (a name in ``OPTIMIZERS`` or a class) run on
    ``surface`` from ``start`` (default: the surface's start); gradients come from autograd.

    First used in section 4.4, *Momentum, AdaGrad, RMSProp and Adam*.
    """
    make = OPTIMIZERS[optimizer] if isinstance(optimizer, str) else optimizer
    w = torch.tensor(start or surface.start, dtype=torch.float64, requires_grad=True)
    opt = make([w], lr=lr, **hyper)
    path = [w.detach().clone().numpy()]
    for _ in range(steps):
        opt.zero_grad()
        surface(w).backward()
        opt.step()
        if not torch.isfinite(w).all():
            break
        path.append(w.detach().clone().numpy())
    return np.array(path)
