"""Convolution, pooling and batch normalisation from scratch (Chapter 7).

Shapes follow PyTorch: images ``x [N, C_in, H, W]``, filters ``w [C_out, C_in / groups, K_h, K_w]``,
bias ``b [C_out]``, output ``[N, C_out, H_out, W_out]`` with, per spatial axis,
``H_out = (H + 2P - D (K - 1) - 1) // S + 1`` (stride S, padding P, dilation D); for D = 1 this
is the lecture's ``(W - K + 2P) / S + 1``. Two implementations of the same convolution: direct
loops (the definition, slow) and im2col (every receptive field unrolled into a column, then one
matrix product, which is how libraries long implemented it on GPUs).
"""
from __future__ import annotations

import torch

__all__ = ["output_size", "receptive_field", "conv_params", "conv_macs", "conv2d_loops", "im2col",
           "conv2d_im2col", "max_pool2d", "BatchNorm2d"]


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, (tuple, list)) and len(v) == 2:
        return int(v[0]), int(v[1])
    raise ValueError(f"expected an int or a pair of ints, got {v!r}")


def output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length along one axis: ``(size + 2P - D (K - 1) - 1) // S + 1``.

    First used in section 7.3, *Spatial dimensions*.
    """
    if min(size, kernel, stride, dilation) < 1 or padding < 0:
        raise ValueError(f"need size, kernel, stride, dilation >= 1 and padding >= 0; got size={size}, "
                         f"kernel={kernel}, stride={stride}, padding={padding}, dilation={dilation}")
    span = dilation * (kernel - 1) + 1
    if size + 2 * padding < span:
        raise ValueError(f"a kernel spanning {span} does not fit an input of {size} with padding {padding}")
    return (size + 2 * padding - span) // stride + 1


def receptive_field(layers: list[tuple[int, int]]) -> int:
    """Receptive field of one output of a stack of ``(kernel, stride)`` layers, in input pixels:
    ``r = 1 + sum_l (K_l - 1) * prod_{j<l} S_j``; for L stride-1 layers, ``1 + L (K - 1)``.

    First used in section 7.3, *Spatial dimensions*.
    """
    r, jump = 1, 1
    for kernel, stride in layers:
        if kernel < 1 or stride < 1:
            raise ValueError(f"kernel and stride must be >= 1, got {kernel}, {stride}")
        r += (kernel - 1) * jump
        jump *= stride
    return r


def conv_params(c_in: int, c_out: int, kernel: int, groups: int = 1, bias: bool = True) -> int:
    """Learnable parameters of a convolution: ``C_out * (C_in / G) * K^2 (+ C_out biases)``.

    First used in section 7.3, *Spatial dimensions*.
    """
    if c_in % groups or c_out % groups:
        raise ValueError(f"channels {c_in} -> {c_out} are not divisible by groups={groups}")
    return c_out * (c_in // groups) * kernel * kernel + (c_out if bias else 0)


def conv_macs(c_in: int, c_out: int, kernel: int, h_out: int, w_out: int, groups: int = 1) -> int:
    """Multiply-adds: every output value is an inner product of ``(C_in / G) * K^2`` pairs.

    First used in section 7.3, *Spatial dimensions*.
    """
    return c_out * h_out * w_out * (c_in // groups) * kernel * kernel


def _check(x: torch.Tensor, w: torch.Tensor, groups: int) -> None:
    if x.ndim != 4:
        raise ValueError(f"x must be [N, C, H, W], got shape {tuple(x.shape)}")
    if w.ndim != 4:
        raise ValueError(f"w must be [C_out, C_in/groups, K_h, K_w], got shape {tuple(w.shape)}")
    if x.shape[1] % groups or w.shape[0] % groups:
        raise ValueError(f"channels ({x.shape[1]} in, {w.shape[0]} out) must be divisible by groups={groups}")
    if w.shape[1] * groups != x.shape[1]:
        raise ValueError(f"w expects {w.shape[1] * groups} input channels (with groups={groups}), "
                         f"x has {x.shape[1]}")


def conv2d_loops(x, w, b=None, stride=1, padding=0, dilation=1, groups=1) -> torch.Tensor:
    """The definition, with explicit loops over output positions (slow: for small inputs).
    ``out[n, o, i, j] = b[o] + sum_{c,u,v} w[o, c, u, v] * xpad[n, g*C_g + c, i*S + u*D, j*S + v*D]``.

    First used in section 7.2, *The convolution layer*.
    """
    _check(x, w, groups)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, c_in, h, wid = x.shape
    c_out, c_g, kh, kw = w.shape
    xp = torch.nn.functional.pad(x, (pw, pw, ph, ph))
    ho, wo = output_size(h, kh, sh, ph, dh), output_size(wid, kw, sw, pw, dw)
    out = torch.zeros(n, c_out, ho, wo, dtype=x.dtype, device=x.device)
    per_group = c_out // groups
    for o in range(c_out):
        g = o // per_group
        xs = xp[:, g * c_g:(g + 1) * c_g]                                   # [N, C_g, Hp, Wp]
        for i in range(ho):
            for j in range(wo):
                patch = xs[:, :, i * sh: i * sh + dh * (kh - 1) + 1: dh,
                           j * sw: j * sw + dw * (kw - 1) + 1: dw]          # [N, C_g, K_h, K_w]
                out[:, o, i, j] = (patch * w[o]).sum(dim=(1, 2, 3))
    if b is not None:
        out += b[None, :, None, None]
    return out


def im2col(x: torch.Tensor, kernel, stride=1, padding=0, dilation=1) -> torch.Tensor:
    """Unroll every receptive field into a column: ``[N, C, H, W] -> [N, C*K_h*K_w, H_out*W_out]``
    (the same layout as ``torch.nn.functional.unfold``).

    First used in section 7.9, *Exercises*.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be [N, C, H, W], got shape {tuple(x.shape)}")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = _pair(kernel), _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, wid = x.shape
    ho, wo = output_size(h, kh, sh, ph, dh), output_size(wid, kw, sw, pw, dw)
    xp = torch.nn.functional.pad(x, (pw, pw, ph, ph))
    cols = torch.empty(n, c, kh, kw, ho, wo, dtype=x.dtype, device=x.device)
    for u in range(kh):           # loop over the K_h * K_w kernel offsets, not over output pixels
        for v in range(kw):
            cols[:, :, u, v] = xp[:, :, u * dh: u * dh + sh * (ho - 1) + 1: sh,
                                  v * dw: v * dw + sw * (wo - 1) + 1: sw]
    return cols.reshape(n, c * kh * kw, ho * wo)


def conv2d_im2col(x, w, b=None, stride=1, padding=0, dilation=1, groups=1) -> torch.Tensor:
    """Convolution as one batched matrix product per group: ``W [C_out/G, C_g K^2] @ cols``.

    First used in section 7.2, *The convolution layer*.
    """
    _check(x, w, groups)
    n, c_in, h, wid = x.shape
    c_out, c_g, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    ho, wo = output_size(h, kh, sh, ph, dh), output_size(wid, kw, sw, pw, dw)
    cols = im2col(x, (kh, kw), stride, padding, dilation)                   # [N, C_in K^2, L]
    cols = cols.reshape(n, groups, c_g * kh * kw, ho * wo)                  # [N, G, C_g K^2, L]
    wg = w.reshape(groups, c_out // groups, c_g * kh * kw)                  # [G, C_out/G, C_g K^2]
    out = torch.einsum("gok,ngkl->ngol", wg, cols).reshape(n, c_out, ho, wo)
    if b is not None:
        out = out + b[None, :, None, None]
    return out


def max_pool2d(x: torch.Tensor, kernel: int = 2, stride: int | None = None, padding: int = 0) -> torch.Tensor:
    """Max over each ``kernel x kernel`` window (stride defaults to the kernel), channel by
    channel: no parameters. Padding counts as minus infinity, as in PyTorch.

    First used in section 7.5, *Pooling*.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be [N, C, H, W], got shape {tuple(x.shape)}")
    stride = stride or kernel
    n, c, h, wid = x.shape
    xp = torch.nn.functional.pad(x, (padding,) * 4, value=float("-inf"))
    cols = im2col(xp.reshape(n * c, 1, h + 2 * padding, wid + 2 * padding), kernel, stride)
    ho, wo = output_size(h, kernel, stride, padding), output_size(wid, kernel, stride, padding)
    return cols.max(dim=1).values.reshape(n, c, ho, wo)


class BatchNorm2d(torch.nn.Module):
    """Batch normalisation over ``[N, C, H, W]``, written out: per channel, normalise with the
    batch's mean and (biased) variance in training, with running averages in evaluation, then
    scale by ``gamma`` and shift by ``beta``. Running variance is updated with the unbiased
    batch variance, with ``momentum`` (0.1) as the weight of the new batch, as in PyTorch.

    First used in section 7.7, *Batch normalisation*.
    """

    def __init__(self, num_channels: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.gamma = torch.nn.Parameter(torch.ones(num_channels))
        self.beta = torch.nn.Parameter(torch.zeros(num_channels))
        self.register_buffer("running_mean", torch.zeros(num_channels))
        self.register_buffer("running_var", torch.ones(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != len(self.gamma):
            raise ValueError(f"x must be [N, {len(self.gamma)}, H, W], got shape {tuple(x.shape)}")
        if self.training:
            mean = x.mean(dim=(0, 2, 3))                                      # [C]
            var = x.var(dim=(0, 2, 3), unbiased=False)                        # [C]
            count = x.numel() // x.shape[1]
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * count / max(count - 1, 1))
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps)
        return self.gamma[None, :, None, None] * x_hat + self.beta[None, :, None, None]
