"""Linear classifiers from scratch: scores, softmax, cross-entropy and its gradient (Chapter 3).

Shapes: inputs ``x [N, D]`` (one flattened image per row), weights ``W [C, D]`` (one row,
a *template*, per class), bias ``b [C]``, scores ``s = x W^T + b`` of shape ``[N, C]``,
integer labels ``y [N]`` in ``0..C-1``. Everything is plain tensor arithmetic; the tests
check it against ``torch.nn.functional`` and ``torch.autograd``.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from . import runtime

__all__ = ["train_linear", "soft_threshold", "linear_scores", "softmax", "log_softmax", "cross_entropy", "squared_loss", "one_hot",
           "kl_divergence", "softmax_cross_entropy_grad", "numerical_gradient", "SoftmaxClassifier"]


def _check_xwb(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None) -> None:
    if x.ndim != 2:
        raise ValueError(f"x must be [N, D] (flatten images first), got shape {tuple(x.shape)}")
    if W.ndim != 2 or W.shape[1] != x.shape[1]:
        raise ValueError(f"W must be [C, D] with D = {x.shape[1]} to match x, got {tuple(W.shape)}")
    if b is not None and tuple(b.shape) != (W.shape[0],):
        raise ValueError(f"b must be [C] = [{W.shape[0]}], got {tuple(b.shape)}")


def _check_labels(y: torch.Tensor, n: int, c: int) -> None:
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"labels y must be [N] = [{n}], got shape {tuple(y.shape)}")
    if y.dtype in (torch.float16, torch.float32, torch.float64, torch.bfloat16):
        raise TypeError(f"labels y must be integers, got {y.dtype}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= c):
        raise ValueError(f"labels must lie in 0..{c - 1}, got {int(y.min())}..{int(y.max())}")


def linear_scores(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Class scores ``f(x, W) = W x + b`` for every row of ``x``: ``[N, D] -> [N, C]``.

    First used in section 3.1, *From memorising to a parametric model*.
    """
    _check_xwb(x, W, b)
    s = x @ W.T
    return s + b if b is not None else s


def log_softmax(scores: torch.Tensor) -> torch.Tensor:
    """``log p`` along the last axis, stable for large scores (subtracts the row maximum).

    First used in section 3.3, *Loss functions*.
    """
    shifted = scores - scores.max(dim=-1, keepdim=True).values
    return shifted - shifted.exp().sum(dim=-1, keepdim=True).log()


def softmax(scores: torch.Tensor) -> torch.Tensor:
    """Probabilities ``exp(s_k) / sum_j exp(s_j)`` along the last axis.

    First used in section 3.3, *Loss functions*.
    """
    return log_softmax(scores).exp()


def cross_entropy(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood ``-log p_{y_i}`` of the labels under ``softmax(scores)``.

    First used in section 3.3, *Loss functions*.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be [N, C], got shape {tuple(scores.shape)}")
    _check_labels(y, scores.shape[0], scores.shape[1])
    return -log_softmax(scores)[torch.arange(len(y), device=scores.device), y].mean()


def squared_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of ``1/2 (f(x) - y)^2``: the regression loss of the slides.

    First used in section 3.3, *Loss functions*.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have one shape")
    return 0.5 * ((pred - target) ** 2).mean()


def one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[N]`` integer labels to ``[N, C]`` rows with a single 1: the "correct probabilities".

    First used in section 3.3, *Loss functions*.
    """
    _check_labels(y, len(y), num_classes)
    out = torch.zeros(len(y), num_classes, dtype=torch.get_default_dtype(), device=y.device)
    out[torch.arange(len(y), device=y.device), y] = 1
    return out


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``D_KL(P || Q) = sum_y P(y) log(P(y) / Q(y))`` along the last axis (0 log 0 = 0).

    First used in section 3.3, *Loss functions*.
    """
    if p.shape != q.shape:
        raise ValueError(f"p {tuple(p.shape)} and q {tuple(q.shape)} must have one shape")
    terms = torch.where(p > 0, p * (p.clamp_min(1e-300).log() - q.log()), torch.zeros_like(p))
    return terms.sum(dim=-1)


def softmax_cross_entropy_grad(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor, y: torch.Tensor):
    """Loss and its gradient, derived by hand (Chapter 3):

    ``dL/ds = (softmax(s) - onehot(y)) / N`` ``[N, C]``; ``dL/dW = (dL/ds)^T x`` ``[C, D]``;
    ``dL/db = sum over rows of dL/ds`` ``[C]``. Returns ``(loss, dW, db)``.

    First used in section 3.4, *The gradient, derived and checked*.
    """
    s = linear_scores(x, W, b)
    loss = cross_entropy(s, y)
    ds = (softmax(s) - one_hot(y, W.shape[0]).to(s.dtype)) / len(y)
    return loss, ds.T @ x, ds.sum(dim=0)


def numerical_gradient(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                       h: float = 1e-5) -> torch.Tensor:
    """Central differences ``(f(x + h e_i) - f(x - h e_i)) / 2h`` for every entry of ``x``.

    Slow (two evaluations of ``f`` per entry) and only as exact as float64 allows, which is
    why it checks an analytic gradient and never replaces one.

    First used in section 3.4, *The gradient, derived and checked*.
    """
    if x.dtype != torch.float64:
        raise TypeError(f"use float64 for numerical gradients (got {x.dtype}): float32 is too coarse")
    grad = torch.zeros_like(x)
    flat, g = x.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + h
        up = float(f(x))
        flat[i] = old - h
        down = float(f(x))
        flat[i] = old
        g[i] = (up - down) / (2 * h)
    return grad


class SoftmaxClassifier:
    """A linear softmax classifier trained by minibatch gradient descent on the hand-derived
    gradient (no autograd). ``W [C, D]`` starts at small random values, ``b [C]`` at 0.

    First used in section 3.5, *Training on real images*.
    """

    def __init__(self, num_features: int, num_classes: int, weight_scale: float = 1e-3,
                 generator: torch.Generator | None = None, device=None, dtype=torch.float32):
        self.W = weight_scale * torch.randn(num_classes, num_features, generator=generator, dtype=dtype).to(device)
        self.b = torch.zeros(num_classes, dtype=dtype, device=device)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return linear_scores(x, self.W, self.b)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(x).argmax(dim=1)

    def fit(self, x: torch.Tensor, y: torch.Tensor, lr: float = 0.1, epochs: int = 10,
            batch_size: int | None = None, l2: float = 0.0,
            generator: torch.Generator | None = None) -> list[float]:
        """Minibatch gradient descent on ``cross_entropy + l2 * ||W||^2``; returns the mean
        loss of each epoch. ``batch_size=None`` is full-batch gradient descent. Cut short as
        ``dlcv.runtime.limits`` says (the smoke scale)."""
        if lr <= 0 or epochs < 1:
            raise ValueError(f"need lr > 0 and epochs >= 1, got lr={lr}, epochs={epochs}")
        _check_labels(y, len(x), self.W.shape[0])
        if runtime.is_cut():  # a check that the code runs: one or two short epochs
            epochs, steps = runtime.limits(epochs, math.ceil(len(y) / (batch_size or len(y))))
            keep = steps * (batch_size or len(y))
            x, y = x[:keep], y[:keep]
        n, bs = len(y), batch_size or len(y)
        losses = []
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator).to(x.device) if batch_size else torch.arange(n, device=x.device)
            total = torch.zeros((), dtype=self.W.dtype, device=x.device)
            for i in range(0, n, bs):
                idx = order[i:i + bs]
                loss, dW, db = softmax_cross_entropy_grad(x[idx], self.W, self.b, y[idx])
                if l2:
                    loss = loss + l2 * (self.W ** 2).sum()
                    dW = dW + 2 * l2 * self.W
                self.W -= lr * dW
                self.b -= lr * db
                total += loss * len(idx)
            losses.append(float(total) / n)
        return losses


def soft_threshold(w: torch.Tensor, t: float) -> torch.Tensor:
    """The proximal step of ``t * ||w||_1``: shrink every entry towards 0 by ``t``, and set
    entries smaller than ``t`` in magnitude to exactly 0. This is how L1 makes weights sparse."""
    if t < 0:
        raise ValueError(f"threshold must be >= 0, got {t}")
    return torch.sign(w) * (w.abs() - t).clamp_min(0)


_TORCH_OPTIMIZERS = {
    "sgd": lambda p, lr, wd: torch.optim.SGD(p, lr=lr, weight_decay=wd),
    "momentum": lambda p, lr, wd: torch.optim.SGD(p, lr=lr, momentum=0.9, weight_decay=wd),
    "adam": lambda p, lr, wd: torch.optim.Adam(p, lr=lr, weight_decay=wd),
    "adamw": lambda p, lr, wd: torch.optim.AdamW(p, lr=lr, weight_decay=wd),
}


def train_linear(x: torch.Tensor, y: torch.Tensor, *, lr: float, steps: int, optimizer: str = "sgd",
                 batch_size: int | None = None, l2: float = 0.0, l1: float = 0.0, weight_decay: float = 0.0,
                 seed: int = 0, x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
                 record_every: int = 10, num_classes: int | None = None):
    """Train ``torch.nn.Linear`` with softmax cross-entropy for a fixed number of ``steps``.

    ``l2`` adds ``l2 * ||W||^2`` to the loss (a penalty on the weights, not the bias);
    ``l1`` applies the proximal step ``soft_threshold(W, lr * l1)`` after each SGD step (exact
    zeros; SGD only); ``weight_decay`` is handed to the ``torch.optim`` optimiser named by
    ``optimizer`` (``"sgd"``, ``"momentum"``, ``"adam"``, ``"adamw"``), where it means L2 for
    SGD and Adam and decoupled decay for AdamW. ``batch_size=None`` is full-batch.
    Returns ``(model, history)``; history holds ``step``, ``train_loss`` (the data loss on the
    whole training set), and ``val_loss``/``val_acc`` when validation data are given, every
    ``record_every`` steps and after the last. When training is cut (the smoke scale,
    ``dlcv.runtime.limit_steps``) it stops after ``runtime.SMOKE_STEPS`` steps.

    First used in section 4.1, *Optimisation is search on a landscape*.
    """
    if optimizer not in _TORCH_OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose from {sorted(_TORCH_OPTIMIZERS)}")
    if l1 and optimizer != "sgd":
        raise ValueError("the L1 proximal step is only correct for plain SGD (optimizer='sgd')")
    if x.ndim != 2:
        raise ValueError(f"x must be [N, D], got shape {tuple(x.shape)}")
    c = num_classes or int(y.max()) + 1
    _check_labels(y, len(x), c)
    steps = runtime.limit_steps(steps)       # a few steps when training is cut (smoke)
    gen = torch.Generator().manual_seed(seed)
    model = torch.nn.Linear(x.shape[1], c).to(x.device)
    with torch.no_grad():
        model.weight.copy_(1e-3 * torch.randn(c, x.shape[1], generator=gen))
        model.bias.zero_()
    opt = _TORCH_OPTIMIZERS[optimizer]([{"params": [model.weight], "weight_decay": weight_decay},
                                        {"params": [model.bias], "weight_decay": 0.0}], lr, weight_decay)
    history: dict[str, list] = {"step": [], "train_loss": [], "val_loss": [], "val_acc": []}
    n = len(y)

    def record(step):
        with torch.no_grad():
            history["step"].append(step)
            history["train_loss"].append(float(torch.nn.functional.cross_entropy(model(x), y)))
            if x_val is not None:
                s = model(x_val)
                history["val_loss"].append(float(torch.nn.functional.cross_entropy(s, y_val)))
                history["val_acc"].append(float((s.argmax(1) == y_val).float().mean()))

    record(0)
    for step in range(1, steps + 1):
        if batch_size:
            idx = torch.randint(0, n, (batch_size,), generator=gen).to(x.device)
            xb, yb = x[idx], y[idx]
        else:
            xb, yb = x, y
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        if l2:
            loss = loss + l2 * (model.weight ** 2).sum()
        loss.backward()
        opt.step()
        if l1:
            with torch.no_grad():
                model.weight.copy_(soft_threshold(model.weight, lr * l1))
        if step % record_every == 0 or step == steps:
            record(step)
    return model, history
