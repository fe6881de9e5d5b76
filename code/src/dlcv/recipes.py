"""The training recipes of Chapter 9, each written out: initialisation, dropout, mixup,
learning-rate schedules, search and ensembles.

Shapes: activations ``x [N, D]`` or images ``[N, C, H, W]``; labels ``y [N]``; soft targets
``[N, C]``. Everything takes an explicit ``torch.Generator`` where it draws random numbers, so a
chapter's run repeats exactly on the CPU.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

__all__ = ["shift_and_flip", "INITS", "activation_stats", "dead_units", "dropout", "mixup", "step_lr", "cosine_lr",
           "grid_points", "random_points", "ensemble_predict"]

INITS: dict[str, Callable[[int], float]] = {
    "small random (0.01)": lambda d_in: 0.01,
    "Xavier (1/√D_in)": lambda d_in: 1 / math.sqrt(d_in),
    "Kaiming (√(2/D_in))": lambda d_in: math.sqrt(2 / d_in),
}
"""Standard deviation of the weights as a function of the layer's fan-in ``D_in``."""


@torch.no_grad()
def activation_stats(x: torch.Tensor, depth: int, width: int, std: Callable[[int], float],
                     activation: Callable[[torch.Tensor], torch.Tensor] = torch.tanh,
                     generator: torch.Generator | None = None,
                     weights: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Push ``x [N, D]`` through ``depth`` fully connected layers of ``width`` units with weights
    drawn as ``N(0, std(D_in)^2)`` and no biases; return each layer's activations ``[N, width]``
    (the lecture's experiment on how initialisation shapes the signal).

    ``weights`` (optional) are ``depth`` standard-normal matrices ``[D_in, width]`` to scale
    instead of drawing new ones, so several initialisations can be compared on the same draw
    (and a 4,096-wide stack is drawn once, not once per comparison).

    First used in section 9.3, *Weight initialisation*.
    """
    if x.ndim != 2:
        raise ValueError(f"x must be [N, D], got shape {tuple(x.shape)}")
    if weights is not None and len(weights) != depth:
        raise ValueError(f"weights must hold one matrix per layer ({depth}), got {len(weights)}")
    hs, h = [], x
    for layer in range(depth):
        d_in = h.shape[1]
        if weights is None:
            W = torch.randn(d_in, width, generator=generator, dtype=h.dtype)
        else:
            W = weights[layer]
            if W.shape != (d_in, width):
                raise ValueError(f"weights[{layer}] must be [{d_in}, {width}], got {tuple(W.shape)}")
        h = activation((h @ W.to(device=h.device, dtype=h.dtype)) * std(d_in))   # scale the product, not W
        hs.append(h)
    return hs


@torch.no_grad()
def dead_units(activations: torch.Tensor) -> float:
    """Fraction of ReLU units (columns of ``[N, H]``) that output 0 for every one of the N inputs.

    First used in section 9.1, *Activation functions and dead ReLUs*.
    """
    if activations.ndim != 2:
        raise ValueError(f"activations must be [N, H], got shape {tuple(activations.shape)}")
    return (activations.max(dim=0).values <= 0).float().mean().item()


def dropout(x: torch.Tensor, p: float, training: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Inverted dropout: in training, zero each entry with probability ``p`` and scale the rest
    by ``1 / (1 - p)`` so that the expected value is unchanged; in evaluation, the identity.

    First used in section 9.4, *Regularisation*.
    """
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    keep = torch.rand(x.shape, generator=generator, device="cpu").to(x.device) >= p
    return x * keep / (1 - p)


def mixup(x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float = 0.2,
          generator: torch.Generator | None = None):
    """Blend each example with a random partner: ``x' = lam x_i + (1 - lam) x_j`` and soft
    targets ``lam onehot(y_i) + (1 - lam) onehot(y_j)``, one ``lam ~ Beta(alpha, alpha)`` per
    example (Zhang et al., 2018). Returns ``(x' [N, ...], targets [N, C])``.

    First used in section 9.4, *Regularisation*.
    """
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"y must be [N] = [{len(x)}] integer labels, got shape {tuple(y.shape)}")
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    n = len(x)
    # lam ~ Beta(alpha, alpha) from NumPy's generator, seeded from ours so runs repeat
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    lam = torch.tensor(np.random.default_rng(seed).beta(alpha, alpha, n), dtype=x.dtype, device=x.device)
    partner = torch.randperm(n, generator=generator).to(x.device)
    shape = (n,) + (1,) * (x.ndim - 1)
    x_mix = lam.view(shape) * x + (1 - lam.view(shape)) * x[partner]
    onehot = torch.nn.functional.one_hot(y, num_classes).to(x.dtype)
    targets = lam[:, None] * onehot + (1 - lam[:, None]) * onehot[partner]
    return x_mix, targets


def step_lr(epoch: int, base_lr: float, milestones: Sequence[int], gamma: float = 0.1) -> float:
    """Step schedule: multiply the rate by ``gamma`` at each milestone epoch passed.

    First used in section 9.5, *During training*.
    """
    return base_lr * gamma ** sum(epoch >= m for m in milestones)


def cosine_lr(step: int, total: int, base_lr: float, min_lr: float = 0.0) -> float:
    """Cosine schedule: ``min + (base - min) (1 + cos(pi t / T)) / 2``, from ``base`` to ``min``.

    First used in section 9.5, *During training*.
    """
    if total < 1:
        raise ValueError(f"total must be >= 1, got {total}")
    return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * min(step, total) / total)) / 2


def grid_points(n_per_axis: int, bounds: Sequence[tuple[float, float]]) -> torch.Tensor:
    """A regular grid of ``n_per_axis ** d`` points in the box ``bounds`` (one pair per axis).

    First used in section 9.5, *During training*.
    """
    axes = [torch.linspace(lo, hi, n_per_axis) for lo, hi in bounds]
    return torch.cartesian_prod(*axes).reshape(-1, len(bounds))


def random_points(n: int, bounds: Sequence[tuple[float, float]], generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` points drawn uniformly in the box ``bounds``.

    First used in section 9.5, *During training*.
    """
    lo = torch.tensor([b[0] for b in bounds])
    hi = torch.tensor([b[1] for b in bounds])
    return lo + (hi - lo) * torch.rand(n, len(bounds), generator=generator)


@torch.no_grad()
def ensemble_predict(models: Sequence[torch.nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Average of the members' softmax probabilities, ``[N, C]``.

    First used in section 9.4, *Regularisation*.
    """
    if not models:
        raise ValueError("an ensemble needs at least one model")
    probs = []
    for m in models:
        m.eval()
        probs.append(torch.softmax(m(x), dim=1))
    return torch.stack(probs).mean(dim=0)


def shift_and_flip(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None,
                   pad: int = 2, flip: bool = True):
    """Per-image augmentation for a batch ``x [N, C, H, W]``: a random crop of the image padded
    by ``pad`` pixels (a shift of up to ``pad`` in each direction) and, with ``flip``, a random
    horizontal flip. Labels pass through. Signature fits ``fit(..., augment=...)``.

    First used in section 9.4, *Regularisation*.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be [N, C, H, W], got shape {tuple(x.shape)}")
    n, _, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).tolist()
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).tolist()
    out = torch.stack([xp[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    if flip:
        mirror = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        out = torch.where(mirror[:, None, None, None], out.flip(-1), out)
    return out, y
