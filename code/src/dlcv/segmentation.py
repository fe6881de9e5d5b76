"""Dense prediction from scratch (Chapter 14): upsampling inside a network, and the measure of a
segmentation.

Shapes follow PyTorch: feature maps ``[N, C, H, W]``; a segmentation is a label per pixel
``int64 [N, H, W]`` with values ``0..num_classes - 1``.

* ``max_unpool2d`` puts each value back where its window's maximum came from (zeros
  elsewhere), tested against ``nn.MaxUnpool2d``;
* ``conv_transpose2d`` is the transposed convolution written as what it computes: every input
  value scales the kernel and adds it into the output at ``stride`` spacing; tested against
  ``nn.functional.conv_transpose2d`` with stride, padding, output padding and dilation;
* ``overlap_counts`` counts how many kernel placements cover each output pixel, which is where
  the checkerboard artefacts of transposed convolutions come from;
* ``confusion_matrix`` and ``iou_per_class`` measure a segmentation (mean IoU), tested against
  scikit-learn's ``confusion_matrix`` and ``jaccard_score``.
"""
from __future__ import annotations

import torch

__all__ = ["max_unpool2d", "conv_transpose2d", "transposed_output_size", "overlap_counts",
           "confusion_matrix", "iou_per_class", "mean_iou"]


def max_unpool2d(x: torch.Tensor, indices: torch.Tensor, output_size: tuple[int, int]) -> torch.Tensor:
    """Max unpooling: ``x [N, C, h, w]`` placed at the flat positions ``indices [N, C, h, w]``
    that ``F.max_pool2d(..., return_indices=True)`` recorded, in a zero map ``[N, C, H, W]``
    with ``(H, W) = output_size``."""
    if x.shape != indices.shape:
        raise ValueError(f"x {tuple(x.shape)} and indices {tuple(indices.shape)} must match")
    N, C = x.shape[:2]
    H, W = output_size
    if indices.numel() and (indices.min() < 0 or indices.max() >= H * W):
        raise ValueError(f"indices point outside an output of {H} x {W}")
    out = x.new_zeros(N, C, H * W)
    out.scatter_(2, indices.flatten(2), x.flatten(2))
    return out.view(N, C, H, W)


def transposed_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                           output_padding: int = 0, dilation: int = 1) -> int:
    """Output length of a transposed convolution along one axis:
    ``(size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1``, the
    inverse of the convolution's ``(size + 2P - D(K - 1) - 1) // S + 1``."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     stride: int = 1, padding: int = 0, output_padding: int = 0,
                     dilation: int = 1) -> torch.Tensor:
    """Transposed convolution ``x [N, C_in, h, w]``, ``weight [C_in, C_out, K, K]`` (PyTorch's
    layout for this layer) -> ``[N, C_out, H, W]``: each input pixel ``(i, j)`` adds
    ``x[n, c, i, j] * weight[c]`` into the output with its corner at ``(i * stride, j * stride)``
    of a full-size canvas; ``padding`` then trims that many rows and columns from each border
    (and ``output_padding`` adds to the bottom and right). One loop over input positions, as
    the definition reads."""
    if x.ndim != 4 or weight.ndim != 4 or weight.shape[0] != x.shape[1]:
        raise ValueError(f"need x [N, C_in, h, w] and weight [C_in, C_out, K, K]; got "
                         f"{tuple(x.shape)} and {tuple(weight.shape)}")
    N, C_in, h, w = x.shape
    C_out, K = weight.shape[1], weight.shape[2]
    span = dilation * (K - 1) + 1
    full_h, full_w = (h - 1) * stride + span + output_padding, (w - 1) * stride + span + output_padding
    canvas = x.new_zeros(N, C_out, full_h, full_w)
    kernel = weight.new_zeros(C_in, C_out, span, span)
    kernel[:, :, ::dilation, ::dilation] = weight                 # a dilated kernel has gaps
    for i in range(h):
        for j in range(w):
            # [N, C_in] x [C_in, C_out, span, span] -> [N, C_out, span, span]
            stamp = torch.einsum("nc,cokl->nokl", x[:, :, i, j], kernel)
            canvas[:, :, i * stride:i * stride + span, j * stride:j * stride + span] += stamp
    H = transposed_output_size(h, K, stride, padding, output_padding, dilation)
    W = transposed_output_size(w, K, stride, padding, output_padding, dilation)
    out = canvas[:, :, padding:padding + H, padding:padding + W]
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def overlap_counts(size: int, kernel: int, stride: int, padding: int = 0) -> torch.Tensor:
    """How many kernel placements of a stride-``stride`` transposed convolution cover each
    output pixel, for a ``size x size`` input: ``[H, W]``. Uneven counts (when ``kernel`` is not
    a multiple of ``stride``) print a checkerboard into the output."""
    ones = torch.ones(1, 1, size, size)
    return conv_transpose2d(ones, torch.ones(1, 1, kernel, kernel), stride=stride,
                            padding=padding)[0, 0]


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int | None = None) -> torch.Tensor:
    """``[num_classes, num_classes]`` counts: row = true class, column = predicted class, over
    every pixel of ``pred`` and ``target`` (same shape, int labels); pixels whose target is
    ``ignore_index`` are left out."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must match")
    p, t = pred.flatten().long(), target.flatten().long()
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    for name, v in (("pred", p), ("target", t)):
        if v.numel() and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"{name} has labels outside 0..{num_classes - 1}")
    return torch.bincount(t * num_classes + p, minlength=num_classes ** 2).view(num_classes,
                                                                                num_classes)


def iou_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """IoU of each class from a confusion matrix: true positives / (pixels of the class +
    pixels predicted as it - true positives); NaN for a class absent from both."""
    tp = confusion.diag().double()
    union = confusion.sum(0).double() + confusion.sum(1).double() - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def mean_iou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """The mean over classes of the IoU (classes absent from both left out)."""
    return float(torch.nanmean(iou_per_class(confusion_matrix(pred, target, num_classes))))
