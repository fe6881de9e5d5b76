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
  scikit-learn's ``confusion_matrix`` and ``jaccard_score``;
* ``SegmentationNet`` (a small U-Net, with or without skips), ``train_segmenter`` and
  ``predict``.

Mask R-CNN's heads for instances, on the features of a ``SegmentationNet``, are in
``dlcv.instances``.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from . import runtime
from .training import run_epochs

__all__ = ["max_unpool2d", "conv_transpose2d", "transposed_output_size", "overlap_counts",
           "confusion_matrix", "iou_per_class", "mean_iou", "semantic_labels", "SegmentationNet",
           "train_segmenter", "predict", "LABEL_COLOURS", "colour_labels", "label_legend"]


def max_unpool2d(x: torch.Tensor, indices: torch.Tensor, output_size: tuple[int, int]) -> torch.Tensor:
    """Max unpooling: ``x [N, C, h, w]`` placed at the flat positions ``indices [N, C, h, w]``
    that ``F.max_pool2d(..., return_indices=True)`` recorded, in a zero map ``[N, C, H, W]``
    with ``(H, W) = output_size``.

    First used in section 14.3, *Upsampling inside a network*.
    """
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
    inverse of the convolution's ``(size + 2P - D(K - 1) - 1) // S + 1``.

    First used in section 14.8, *Exercises*.
    """
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     stride: int = 1, padding: int = 0, output_padding: int = 0,
                     dilation: int = 1) -> torch.Tensor:
    """Transposed convolution ``x [N, C_in, h, w]``, ``weight [C_in, C_out, K, K]`` (PyTorch's
    layout for this layer) -> ``[N, C_out, H, W]``: each input pixel ``(i, j)`` adds
    ``x[n, c, i, j] * weight[c]`` into the output with its corner at ``(i * stride, j * stride)``
    of a full-size canvas; ``padding`` then trims that many rows and columns from each border
    (and ``output_padding`` adds to the bottom and right). One loop over input positions, as
    the definition reads.

    First used in section 14.3, *Upsampling inside a network*.
    """
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
    a multiple of ``stride``) print a checkerboard into the output.

    First used in section 14.3, *Upsampling inside a network*.
    """
    ones = torch.ones(1, 1, size, size)
    return conv_transpose2d(ones, torch.ones(1, 1, kernel, kernel), stride=stride,
                            padding=padding)[0, 0]


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int | None = None) -> torch.Tensor:
    """``[num_classes, num_classes]`` counts: row = true class, column = predicted class, over
    every pixel of ``pred`` and ``target`` (same shape, int labels); pixels whose target is
    ``ignore_index`` are left out.

    First used in section 14.1, *Every pixel a classification*.
    """
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
    pixels predicted as it - true positives); NaN for a class absent from both.

    First used in section 14.1, *Every pixel a classification*.
    """
    tp = confusion.diag().double()
    union = confusion.sum(0).double() + confusion.sum(1).double() - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def mean_iou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """The mean over classes of the IoU (classes absent from both left out)."""
    return float(torch.nanmean(iou_per_class(confusion_matrix(pred, target, num_classes))))


# ----------------------------------------------------------------------------- networks

# Label maps in colour: black for background (label 0), then the seven Okabe-Ito colours that
# are not black, then light grey: nine labels, none drawn in the background's colour.
LABEL_COLOURS = ["#000000", "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9",
                 "#F0E442", "#BBBBBB"]


def colour_labels(labels: torch.Tensor) -> "np.ndarray":
    """A label map ``int [H, W]`` as an RGB image ``float [H, W, 3]`` in ``LABEL_COLOURS``.

    First used in section 14.5, *Training: with and without skips*.
    """
    import numpy as np
    from matplotlib.colors import to_rgb

    labels = torch.as_tensor(labels)
    if labels.numel() and (labels.min() < 0 or labels.max() >= len(LABEL_COLOURS)):
        raise ValueError(f"labels must be in 0..{len(LABEL_COLOURS) - 1} to be coloured, got "
                         f"{int(labels.min())}..{int(labels.max())}")
    table = np.array([to_rgb(c) for c in LABEL_COLOURS])
    return table[labels.cpu().numpy()]


def label_legend(fig, names: dict[int, str], **kwargs):
    """A legend of coloured squares for label maps drawn with ``colour_labels``: ``names`` maps
    each label to its name (label 0, background, included). ``kwargs`` go to
    ``fig.legend``.

    First used in section 14.5, *Training: with and without skips*.
    """
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=LABEL_COLOURS[k], edgecolor="0.5", label=n)
               for k, n in sorted(names.items())]
    options = dict(loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False,
                   handlelength=1.2, columnspacing=1.0)
    return fig.legend(handles=handles, **{**options, **kwargs})


def semantic_labels(target: dict, height: int, width: int) -> torch.Tensor:
    """A scene's per-pixel labels ``int64 [H, W]``: 0 for background, else the category id of
    the instance visible there (instance masks of ``dlcv.scenes`` do not overlap).

    First used in section 14.1, *Every pixel a classification*.
    """
    out = torch.zeros(height, width, dtype=torch.int64)
    for mask, label in zip(target["masks"], target["labels"]):
        out[mask] = int(label)
    return out


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(), nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU())


class SegmentationNet(nn.Module):
    """An encoder of three stages (each two 3x3 convolutions, then 2x2 max pooling: stride 8 at
    the bottom) and a decoder of three transposed convolutions back to full resolution.
    ``skips=True`` makes it a U-Net (Ronneberger et al. 2015): each decoder stage also sees the
    encoder's features of its resolution, concatenated; ``skips=False`` is a plain
    fully convolutional encoder-decoder. ``forward`` returns class scores ``[N, C, H, W]``;
    ``features`` the last decoder features ``[N, width, H / stride, W / stride]`` (for the
    instance heads).

    ``stride=2`` makes the network work at half the image's resolution, for a quarter of the
    cost: a stride-2 3x3 convolution first (like the stem of a ResNet), and the class scores
    upsampled bilinearly to the image's size at the end (as DeepLab upsamples its stride-8
    scores); the loss and the labels stay at full resolution.

    First used in section 14.5, *Training: with and without skips*.
    """

    def __init__(self, num_classes: int, width: int = 16, skips: bool = True, stride: int = 1):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        w, self.skips, self.stride = width, skips, stride
        self.stem = nn.Identity() if stride == 1 else nn.Sequential(
            nn.Conv2d(3, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.enc = nn.ModuleList([_double_conv(3 if stride == 1 else w, w), _double_conv(w, 2 * w),
                                  _double_conv(2 * w, 4 * w)])
        self.bottom = _double_conv(4 * w, 4 * w)
        self.up = nn.ModuleList([nn.ConvTranspose2d(4 * w, 4 * w, 2, stride=2),
                                 nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2),
                                 nn.ConvTranspose2d(2 * w, w, 2, stride=2)])
        extra = (4 * w, 2 * w, w) if skips else (0, 0, 0)
        self.dec = nn.ModuleList([_double_conv(4 * w + extra[0], 4 * w),
                                  _double_conv(2 * w + extra[1], 2 * w),
                                  _double_conv(w + extra[2], w)])
        self.head = nn.Conv2d(w, num_classes, 1)
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        m = 8 * self.stride
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[-1] % m or images.shape[-2] % m:
            raise ValueError(f"images must be [N, 3, H, W] in [0, 1] with H and W multiples of {m}, "
                             f"got {tuple(images.shape)}")
        x, kept = self.stem((images - self.mean) / 0.25), []
        for stage in self.enc:
            x = stage(x)
            kept.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, stage, skip in zip(self.up, self.dec, reversed(kept)):
            x = up(x)
            x = stage(torch.cat([x, skip], 1) if self.skips else x)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        scores = self.head(self.features(images))
        if self.stride > 1:
            scores = F.interpolate(scores, size=images.shape[-2:], mode="bilinear",
                                   align_corners=False)
        return scores


def train_segmenter(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epochs: int,
                    batch_size: int = 16, lr: float = 3e-3, seed: int = 0,
                    class_weights: torch.Tensor | None = None, crop: int | None = None,
                    on_epoch=None, flip: bool = False) -> list[float]:
    """Per-pixel cross-entropy with AdamW and a one-cycle schedule; ``images uint8 [N, 3, H,
    W]``, ``labels int64 [N, H, W]``. ``flip`` mirrors half the images at random, off by
    default: the book's scenes hold digits, and a mirrored digit is not a digit (a mirrored
    "seven" teaches the network a shape it will never be asked to label). ``class_weights [C]`` weight
    each class's pixels in the loss. ``crop`` trains on a random ``crop x crop`` window of
    each image at each step (a fully convolutional network applies to any size, so it can
    learn from windows and then label whole images; the step costs ``(crop / H)^2`` as much).
    ``on_epoch(epoch)`` is called after each epoch (to record predictions). Returns the mean
    loss of each epoch.

    First used in section 14.5, *Training: with and without skips*.
    """
    H, W = images.shape[-2:]
    if crop is not None and not 0 < crop <= min(H, W):
        raise ValueError(f"crop must be between 1 and the image size {min(H, W)}, got {crop}")
    device = runtime.device_of(model)
    gen = torch.Generator().manual_seed(seed)
    steps = math.ceil(len(images) / batch_size)
    epochs, steps = runtime.limits(epochs, steps)
    model.to(memory_format=torch.channels_last)  # about 20% faster convolutions on a CPU
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps,
                                                pct_start=0.15)

    def step(epoch, idx):
        x, y = images[idx], labels[idx]
        if crop is not None:
            top = torch.randint(0, H - crop + 1, (len(idx),), generator=gen)
            left = torch.randint(0, W - crop + 1, (len(idx),), generator=gen)
            x = torch.stack([im[:, t:t + crop, l:l + crop] for im, t, l in zip(x, top, left)])
            y = torch.stack([lb[t:t + crop, l:l + crop] for lb, t, l in zip(y, top, left)])
        x, y = x.to(device).float() / 255, y.to(device)
        x = x.contiguous(memory_format=torch.channels_last)
        if flip:
            mirror = torch.rand(len(idx), generator=gen) < 0.5
            x[mirror], y[mirror] = x[mirror].flip(-1), y[mirror].flip(-1)
        weight = None if class_weights is None else class_weights.to(device)
        loss = F.cross_entropy(model(x), y, weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        return {"loss": loss}

    log = run_epochs(model, len(images), batch_size=batch_size, epochs=epochs, generator=gen,
                     step=step, on_epoch=on_epoch)
    return [e["loss"] for e in log]


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 50) -> torch.Tensor:
    """Per-pixel labels ``int64 [N, H, W]`` for ``images uint8 [N, 3, H, W]``.

    First used in section 14.5, *Training: with and without skips*.
    """
    model.eval()
    device = runtime.device_of(model)
    return torch.cat([model(images[i:i + batch_size].to(device).float() / 255).argmax(1).cpu()
                      for i in range(0, len(images), batch_size)])
