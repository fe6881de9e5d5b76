"""Looking inside a trained network (Chapter 10): PCA of features, receptive-field boxes and
maximally activating patches, network dissection's IoU, occlusion and gradient saliency, class
activation maps, gradient-ascent visualisation and adversarial examples.

Each is written out from its definition; ``code/tests/test_understanding.py`` checks them against
scikit-learn (PCA) and Captum (occlusion, saliency, Grad-CAM, FGSM, PGD). Shapes: images
``x [N, C, H, W]``, class indices ``target [N]``, feature maps ``[N, K, h, w]``. ``model(x)`` returns
class scores ``[N, classes]`` (logits).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["pca", "receptive_box", "top_activations", "dissection_iou", "occlusion", "occlusion_to_pixels",
           "gradient_saliency", "class_activation_maps", "fgsm", "pgd", "gradient_ascent"]


def _check_images(x: torch.Tensor, what: str = "x") -> None:
    if x.ndim != 4:
        raise ValueError(f"{what} must be images [N, C, H, W], got shape {tuple(x.shape)}")


def _check_target(target: torch.Tensor, n: int) -> torch.Tensor:
    target = torch.as_tensor(target)
    if target.ndim == 0:
        target = target.repeat(n)
    if target.shape != (n,):
        raise ValueError(f"target must be one class index per image, shape [{n}], got {tuple(target.shape)}")
    return target


@torch.no_grad()
def pca(x: torch.Tensor, k: int):
    """Principal component analysis of ``x [N, D]`` by the SVD of the centred data.

    Returns ``(projection [N, k], components [k, D], explained_variance [k])``; the components are
    the top right-singular vectors, each signed so that its largest-magnitude entry is positive.

    First used in section 10.1, *What has been learned: the last layers*.
    """
    if x.ndim != 2:
        raise ValueError(f"x must be [N, D], got shape {tuple(x.shape)}")
    if not 1 <= k <= min(x.shape):
        raise ValueError(f"k must be between 1 and min(N, D) = {min(x.shape)}, got {k}")
    centred = x - x.mean(0)
    _, s, vt = torch.linalg.svd(centred, full_matrices=False)
    components = vt[:k]
    signs = torch.sign(components.gather(1, components.abs().argmax(1, keepdim=True)))
    components = components * signs
    return centred @ components.T, components, s[:k] ** 2 / (len(x) - 1)


def receptive_box(i: int, j: int, layers: Sequence[tuple[int, int, int]]):
    """The input pixels that position ``(i, j)`` of a feature map can see.

    ``layers`` lists ``(kernel, stride, padding)`` for each convolution or pooling from the input
    up to that map. Returns ``(top, left, size)`` in input coordinates (possibly reaching into the
    padding, i.e. below 0 or beyond the image). Works backwards: a window of positions
    ``[a, b]`` at a layer's output covers ``[a s - p, b s - p + k - 1]`` at its input.

    First used in section 10.2, *What has been learned: intermediate units*.
    """
    top, bottom, left, right = i, i, j, j
    for kernel, stride, padding in reversed(layers):
        top, bottom = top * stride - padding, bottom * stride - padding + kernel - 1
        left, right = left * stride - padding, right * stride - padding + kernel - 1
    return top, left, bottom - top + 1


@torch.no_grad()
def top_activations(acts: torch.Tensor, channel: int, k: int, one_per_image: bool = True):
    """The ``k`` largest values of one channel of ``acts [N, C, h, w]``, as a list of
    ``(image, i, j, value)``; with ``one_per_image`` at most one position per image (the way the
    maximally activating patches are shown).

    First used in section 10.2, *What has been learned: intermediate units*.
    """
    if acts.ndim != 4:
        raise ValueError(f"acts must be [N, C, h, w], got shape {tuple(acts.shape)}")
    if not 0 <= channel < acts.shape[1]:
        raise ValueError(f"channel must be in 0..{acts.shape[1] - 1}, got {channel}")
    a = acts[:, channel]
    n, h, w = a.shape
    if one_per_image:
        best, where = a.reshape(n, -1).max(1)
        order = best.argsort(descending=True)[:k]
        return [(int(m), int(where[m]) // w, int(where[m]) % w, float(best[m])) for m in order]
    values, flat = a.flatten().topk(min(k, a.numel()))
    return [(int(f) // (h * w), int(f) % (h * w) // w, int(f) % w, float(v)) for v, f in zip(values, flat)]


@torch.no_grad()
def dissection_iou(unit_maps: torch.Tensor, concept_masks: torch.Tensor, quantile: float = 0.995) -> float:
    """Network dissection's score of one unit for one concept (Bau et al., 2017).

    ``unit_maps [N, H, W]`` are the unit's activation maps upsampled to the image size;
    ``concept_masks [N, H, W]`` (bool) mark where the concept is. The unit "fires" where its
    activation exceeds its top ``1 - quantile`` level over the whole dataset; the score is the
    intersection over union of those regions with the concept's, summed over all images.

    First used in section 10.2, *What has been learned: intermediate units*.
    """
    if unit_maps.shape != concept_masks.shape or unit_maps.ndim != 3:
        raise ValueError(f"unit_maps and concept_masks must both be [N, H, W], got "
                         f"{tuple(unit_maps.shape)} and {tuple(concept_masks.shape)}")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    # NumPy's quantile: the same linear interpolation as torch.quantile, without its 2^24-element limit
    threshold = float(np.quantile(unit_maps.detach().cpu().double().numpy(), quantile))
    fires, concept = unit_maps > threshold, concept_masks.bool()
    union = (fires | concept).sum()
    return float((fires & concept).sum() / union) if union else 0.0


@torch.no_grad()
def occlusion(model: Callable, x: torch.Tensor, target, patch: int, stride: int, fill: float = 0.0,
              batch_size: int = 64) -> torch.Tensor:
    """Occlusion sensitivity (Zeiler & Fergus, 2014): slide a ``patch × patch`` square of value
    ``fill`` over each image of ``x [N, C, H, W]`` with step ``stride`` and record how much the
    target class's score ``model(x)[:, target]`` drops. Returns ``[N, rows, cols]``, one value per
    patch position (positive where hiding the patch lowers the score). Pass a model that returns
    probabilities to measure probability drops.

    First used in section 10.3, *Why this output: which pixels matter*.
    """
    _check_images(x)
    n, _, h, w = x.shape
    if not 1 <= patch <= min(h, w) or stride < 1:
        raise ValueError(f"need 1 <= patch <= {min(h, w)} and stride >= 1, got patch={patch}, stride={stride}")
    target = _check_target(target, n)
    tops, lefts = range(0, h - patch + 1, stride), range(0, w - patch + 1, stride)
    positions = [(t, l) for t in tops for l in lefts]
    out = torch.empty(n, len(tops), len(lefts), dtype=x.dtype)
    for m in range(n):
        base = model(x[m:m + 1])[0, target[m]]
        drops = []
        for start in range(0, len(positions), batch_size):
            chunk = positions[start:start + batch_size]
            batch = x[m].repeat(len(chunk), 1, 1, 1)
            for b, (t, l) in enumerate(chunk):
                batch[b, :, t:t + patch, l:l + patch] = fill
            drops.append(base - model(batch)[:, target[m]])
        out[m] = torch.cat(drops).reshape(len(tops), len(lefts)).cpu()
    return out


def occlusion_to_pixels(grid: torch.Tensor, size: tuple[int, int], patch: int, stride: int) -> torch.Tensor:
    """Spread an occlusion ``grid [N, rows, cols]`` back onto the pixels ``[N, H, W]``: each pixel
    gets the mean drop of the patch positions that covered it (0 where none did), as Captum's
    ``Occlusion`` reports it.

    First used in section 10.3, *Why this output: which pixels matter*.
    """
    n, rows, cols = grid.shape
    total, count = torch.zeros(n, *size, dtype=grid.dtype), torch.zeros(size, dtype=grid.dtype)
    for r in range(rows):
        for c in range(cols):
            total[:, r * stride:r * stride + patch, c * stride:c * stride + patch] += grid[:, r, c, None, None]
            count[r * stride:r * stride + patch, c * stride:c * stride + patch] += 1
    return total / count.clamp(min=1)


def gradient_saliency(model: Callable, x: torch.Tensor, target) -> torch.Tensor:
    """Gradient saliency (Simonyan et al., 2014): ``|d score_target / d x|``, maximised over the
    colour channels. ``x [N, C, H, W]`` → ``[N, H, W]``. One backward pass; ``x`` is not changed.

    First used in section 10.3, *Why this output: which pixels matter*.
    """
    _check_images(x)
    target = _check_target(target, len(x))
    x = x.detach().clone().requires_grad_(True)
    scores = model(x).gather(1, target.to(x.device)[:, None]).sum()
    (grad,) = torch.autograd.grad(scores, x)
    return grad.abs().amax(dim=1)


def class_activation_maps(features: torch.Tensor, weight: torch.Tensor, classes) -> torch.Tensor:
    """Class activation maps (Zhou et al., 2016) for a network that ends in global average pooling
    and one linear layer: ``M_c[h, w] = sum_k weight[c, k] features[k, h, w]``.

    ``features [N, K, h, w]``, the linear layer's ``weight [classes, K]``, ``classes [N]`` → ``[N, h, w]``.
    Because pooling is an average, ``M_c.mean() + bias[c]`` is exactly the class score.

    First used in section 10.3, *Why this output: which pixels matter*.
    """
    if features.ndim != 4 or weight.ndim != 2 or weight.shape[1] != features.shape[1]:
        raise ValueError(f"need features [N, K, h, w] and weight [classes, K] with the same K, got "
                         f"{tuple(features.shape)} and {tuple(weight.shape)}")
    classes = _check_target(classes, len(features)).to(features.device)
    return torch.einsum("nk,nkhw->nhw", weight[classes], features)


def _loss_gradient(model: Callable, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), target.to(x.device))
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: Callable, x: torch.Tensor, target, eps: float, targeted: bool = False,
         bounds: tuple[float, float] = (-float("inf"), float("inf"))) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al., 2015): one step of size ``eps`` along the sign
    of the loss gradient, up the cross-entropy of ``target`` (the true class) or, with ``targeted``,
    down the cross-entropy of the class the attacker wants. Clamped to ``bounds``.

    First used in section 10.7, *Exercises*.
    """
    _check_images(x)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    target = _check_target(target, len(x))
    direction = -1.0 if targeted else 1.0
    return (x + direction * eps * _loss_gradient(model, x, target).sign()).clamp(*bounds).detach()


def pgd(model: Callable, x: torch.Tensor, target, eps: float, step: float, steps: int, targeted: bool = False,
        bounds: tuple[float, float] = (-float("inf"), float("inf"))) -> torch.Tensor:
    """Projected gradient descent (Madry et al., 2018) in the L-infinity ball of radius ``eps``:
    ``steps`` FGSM steps of size ``step``, each followed by projection back into the ball around
    ``x`` and into ``bounds``. Starts at ``x`` (no random start).

    First used in section 10.5, *Adversarial examples*.
    """
    _check_images(x)
    if eps < 0 or step <= 0 or steps < 1:
        raise ValueError(f"need eps >= 0, step > 0 and steps >= 1, got {eps}, {step}, {steps}")
    target = _check_target(target, len(x))
    adv = x.detach().clone()
    for _ in range(steps):
        adv = fgsm(model, adv, target, step, targeted=targeted)
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(*bounds)
    return adv


def gradient_ascent(score: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, steps: int, lr: float,
                    l2: float = 0.0, blur_every: int = 0, jitter: int = 0,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, list[float]]:
    """Synthesise an input that maximises ``score(x) - l2 * ||x||^2`` by gradient ascent from
    ``x0 [N, C, H, W]`` (Simonyan et al., 2014; Yosinski et al., 2015).

    ``score(x)`` returns one number per image ``[N]``. Each step is normalised by the gradient's
    mean absolute value, so ``lr`` is roughly the change per pixel. Two image priors keep the
    result from turning into high-frequency noise: a random ``jitter`` (a circular shift of up to
    that many pixels before each step) and a light Gaussian blur every ``blur_every`` steps.
    Returns the image and the score after each step.

    First used in section 10.4, *Gradient ascent: what does a class look like?*.
    """
    _check_images(x0, "x0")
    if steps < 1 or lr <= 0:
        raise ValueError(f"need steps >= 1 and lr > 0, got {steps}, {lr}")
    x = x0.detach().clone()
    history = []
    for t in range(steps):
        dy, dx = (torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist() if jitter else (0, 0))
        shifted = torch.roll(x, (dy, dx), dims=(2, 3)).requires_grad_(True)
        objective = score(shifted).sum() - l2 * shifted.pow(2).sum()
        (grad,) = torch.autograd.grad(objective, shifted)
        grad = torch.roll(grad, (-dy, -dx), dims=(2, 3))
        x = x + lr * grad / grad.abs().mean().clamp(min=1e-12)
        if blur_every and (t + 1) % blur_every == 0:
            x = _blur(x)
        with torch.no_grad():
            history.append(float(score(x).mean()))
    return x.detach(), history


def _blur(x: torch.Tensor, sigma: float = 0.5) -> torch.Tensor:
    """A 3x3 Gaussian blur per channel (reflect padding)."""
    k1 = torch.exp(-torch.tensor([-1.0, 0.0, 1.0]) ** 2 / (2 * sigma**2))
    k1 = k1 / k1.sum()
    kernel = (k1[:, None] * k1[None, :]).to(x)[None, None].repeat(x.shape[1], 1, 1, 1)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), kernel, groups=x.shape[1])
