"""Boxes from scratch (Chapter 13): overlap, non-maximum suppression, the R-CNN box coding, and
pooling a region of a feature map (RoI Pool and RoI Align).

Boxes are ``[N, 4]`` tensors in ``(x1, y1, x2, y2)`` pixel coordinates with ``x2 >= x1`` and
``y2 >= y1``, as in ``torchvision.ops``; COCO's ``(x, y, width, height)`` converts with
``xywh_to_xyxy``. Any real dtype is accepted, as torchvision accepts it: half-precision boxes
are widened to float32 and 8- and 16-bit integer boxes to int32 before areas are multiplied
(a 200 x 200 box has an area past float16's largest number, 65,504), and IoU of integer boxes
is a float32 ratio. Each function here is checked against its ``torchvision.ops`` twin in the
package's tests (``box_iou``, ``nms``, ``batched_nms``, ``roi_pool``, ``roi_align``) and
against torchvision's ``BoxCoder`` for the box coding. They are written for reading, with
loops where the definition is a loop; use ``torchvision.ops`` for speed.
"""
from __future__ import annotations

import math

import torch

__all__ = ["check_boxes", "widen", "xywh_to_xyxy", "xyxy_to_xywh", "box_area",
           "box_intersection", "box_iou", "nms",
           "batched_nms", "encode_boxes", "decode_boxes", "roi_pool", "roi_align"]


def check_boxes(boxes: torch.Tensor, what: str = "boxes") -> torch.Tensor:
    """Raise a ValueError naming ``what`` unless ``boxes`` is ``[N, 4]`` with ``x2 >= x1`` and
    ``y2 >= y1`` and finite values; returns ``boxes``."""
    if not isinstance(boxes, torch.Tensor) or boxes.ndim != 2 or boxes.shape[1] != 4:
        shape = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise ValueError(f"{what} must be a tensor [N, 4] of (x1, y1, x2, y2), got {shape}")
    if not torch.isfinite(boxes).all():
        raise ValueError(f"{what} contain NaN or infinite coordinates")
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f"{what}[{i}] = {boxes[i].tolist()} has x2 < x1 or y2 < y1: boxes are "
                         "(x1, y1, x2, y2); convert COCO's (x, y, w, h) with xywh_to_xyxy")
    return boxes


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """COCO's ``(x, y, width, height)`` to ``(x1, y1, x2, y2)``; ``[N, 4] -> [N, 4]``."""
    x, y, w, h = boxes.unbind(-1)
    return torch.stack([x, y, x + w, y + h], dim=-1)


def xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """``(x1, y1, x2, y2)`` to COCO's ``(x, y, width, height)``; ``[N, 4] -> [N, 4]``."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)


def widen(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes in a dtype whose products do not overflow, as torchvision's ``_upcast``: float16
    and bfloat16 to float32, integers narrower than 32 bits to int32; float32, float64, int32
    and int64 unchanged."""
    if boxes.is_floating_point():
        return boxes if boxes.dtype in (torch.float32, torch.float64) else boxes.float()
    if boxes.dtype == torch.bool or boxes.is_complex():
        raise ValueError(f"boxes must hold real numbers, got {boxes.dtype}")
    return boxes if boxes.dtype in (torch.int32, torch.int64) else boxes.int()


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas ``[N]`` of boxes ``[N, 4]``, in the widened dtype (see ``widen``)."""
    boxes = widen(check_boxes(boxes))
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_intersection(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Area of the intersection of every box of ``a [N, 4]`` with every box of ``b [M, 4]``:
    ``[N, M]``, in the widened dtype. The intersection of two boxes is the box from the larger
    top-left corner to the smaller bottom-right corner, empty when those cross."""
    a, b = widen(check_boxes(a)), widen(check_boxes(b))
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])          # [N, M, 2]
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])      # [N, M, 2]
    wh = (bottom_right - top_left).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every box of ``a [N, 4]`` with every box of ``b [M, 4]``:
    ``[N, M]``; union = area a + area b - intersection. Two empty boxes have IoU 0 (not 0/0).
    The result is float64 for float64 boxes and float32 for every other dtype.

    First used in section 13.2, *How many boxes? Sliding windows and region proposals*.
    """
    inter = box_intersection(a, b)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    tiny = torch.finfo(inter.dtype).tiny if inter.is_floating_point() else 1
    return torch.where(union > 0, inter / union.clamp(min=tiny), 0.0)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression: take the highest-scoring box, drop every remaining box
    that overlaps it by IoU > ``iou_threshold``, repeat. Returns the indices kept ``[K]``
    (int64), highest score first, as ``torchvision.ops.nms`` does. The IoU (float32, or float64
    for float64 boxes) is compared with the threshold as a Python float, in double precision,
    as torchvision compares: rounding 0.3 to float32 would move it up, and a pair of boxes at
    IoU exactly 0.3f would survive."""
    check_boxes(boxes)
    if scores.shape != (len(boxes),):
        raise ValueError(f"scores must be [N] = [{len(boxes)}], got {tuple(scores.shape)}")
    order = torch.argsort(scores, descending=True, stable=True)
    iou = box_iou(boxes, boxes).double()
    suppressed = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return torch.tensor(keep, dtype=torch.int64, device=boxes.device)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
    """NMS separately within each class: boxes of different classes never suppress each other.
    Returns the kept indices ``[K]`` sorted by decreasing score, as
    ``torchvision.ops.batched_nms``.

    First used in section 13.5, *Non-maximum suppression*.
    """
    if classes.shape != (len(boxes),):
        raise ValueError(f"classes must be [N] = [{len(boxes)}], got {tuple(classes.shape)}")
    keep = [torch.nonzero(classes == c).flatten()[nms(boxes[classes == c], scores[classes == c],
                                                      iou_threshold)]
            for c in torch.unique(classes)]
    keep = torch.cat(keep) if keep else torch.zeros(0, dtype=torch.int64, device=boxes.device)
    return keep[torch.argsort(scores[keep], descending=True, stable=True)]


def _centre_size(boxes: torch.Tensor):
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h, w, h


def encode_boxes(targets: torch.Tensor, proposals: torch.Tensor,
                 weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """The R-CNN box transform: how to move and resize each proposal ``[N, 4]`` onto its target
    ``[N, 4]``, as ``[N, 4]`` offsets ``(t_x, t_y, t_w, t_h)``:
    ``t_x = (x - x_p) / w_p``, ``t_y = (y - y_p) / h_p``, ``t_w = log(w / w_p)``,
    ``t_h = log(h / h_p)`` (centres and sizes), each multiplied by its weight (Faster R-CNN's
    second stage uses ``(10, 10, 5, 5)``). Proposals need positive width and height.

    First used in section 13.4, *R-CNN: classify proposals, then correct their boxes*.
    """
    check_boxes(targets, "targets")
    check_boxes(proposals, "proposals")
    if targets.shape != proposals.shape:
        raise ValueError(f"targets {tuple(targets.shape)} and proposals {tuple(proposals.shape)} "
                         "must pair up one to one")
    px, py, pw, ph = _centre_size(proposals)
    if (pw <= 0).any() or (ph <= 0).any():
        raise ValueError("proposals must have positive width and height to encode against")
    x, y, w, h = _centre_size(targets)
    wx, wy, ww, wh = weights
    return torch.stack([wx * (x - px) / pw, wy * (y - py) / ph,
                        ww * torch.log(w / pw), wh * torch.log(h / ph)], dim=1)


def decode_boxes(offsets: torch.Tensor, proposals: torch.Tensor,
                 weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
                 clamp: float = math.log(1000.0 / 16)) -> torch.Tensor:
    """The inverse of ``encode_boxes``: apply offsets ``[N, 4]`` to proposals ``[N, 4]``.
    ``t_w`` and ``t_h`` are clamped at ``clamp`` (torchvision's ``log(1000 / 16)``) so that a
    wild prediction cannot overflow ``exp``.

    First used in section 13.4, *R-CNN: classify proposals, then correct their boxes*.
    """
    check_boxes(proposals, "proposals")
    if offsets.shape != proposals.shape:
        raise ValueError(f"offsets must be [N, 4] = {tuple(proposals.shape)}, got {tuple(offsets.shape)}")
    px, py, pw, ph = _centre_size(proposals)
    wx, wy, ww, wh = weights
    tx, ty = offsets[:, 0] / wx, offsets[:, 1] / wy
    tw, th = (offsets[:, 2] / ww).clamp(max=clamp), (offsets[:, 3] / wh).clamp(max=clamp)
    x, y = px + tx * pw, py + ty * ph
    w, h = pw * torch.exp(tw), ph * torch.exp(th)
    return torch.stack([x - 0.5 * w, y - 0.5 * h, x + 0.5 * w, y + 0.5 * h], dim=1)


def _check_rois(features: torch.Tensor, rois: torch.Tensor) -> None:
    if features.ndim != 4:
        raise ValueError(f"features must be [N, C, H, W], got {tuple(features.shape)}")
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError("rois must be [K, 5]: (batch index, x1, y1, x2, y2) in image "
                         f"coordinates, got {tuple(rois.shape)}")
    idx = rois[:, 0]
    if ((idx < 0) | (idx >= len(features)) | (idx != idx.round())).any():
        raise ValueError(f"rois' first column must be a batch index in 0..{len(features) - 1}")


def roi_pool(features: torch.Tensor, rois: torch.Tensor, output_size: int,
             spatial_scale: float = 1.0) -> torch.Tensor:
    """RoI Pool (Fast R-CNN): snap each region to the feature grid, cut it into
    ``output_size x output_size`` bins whose edges are also snapped to whole cells, and take the
    maximum of each bin. ``features [N, C, H, W]``, ``rois [K, 5]`` rows of
    ``(batch index, x1, y1, x2, y2)`` in image coordinates, ``spatial_scale`` = feature size /
    image size (1/16 for a stride-16 backbone). Returns ``[K, C, output_size, output_size]``;
    an empty bin gives 0. Matches ``torchvision.ops.roi_pool`` (which rounds half away from
    zero, as done here).

    First used in section 13.7, *Fast R-CNN: cropping features instead of images*.
    """
    _check_rois(features, rois)
    K, (N, C, H, W) = len(rois), features.shape
    out = features.new_zeros(K, C, output_size, output_size)
    snap = lambda v: math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)   # C's round()
    for k, (b, x1, y1, x2, y2) in enumerate(rois.tolist()):
        x1, y1, x2, y2 = (snap(v * spatial_scale) for v in (x1, y1, x2, y2))
        w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)      # the region in whole cells
        for i in range(output_size):
            top = min(max(math.floor(i * h / output_size) + y1, 0), H)
            bottom = min(max(math.ceil((i + 1) * h / output_size) + y1, 0), H)
            for j in range(output_size):
                left = min(max(math.floor(j * w / output_size) + x1, 0), W)
                right = min(max(math.ceil((j + 1) * w / output_size) + x1, 0), W)
                if bottom > top and right > left:
                    out[k, :, i, j] = features[int(b), :, top:bottom, left:right].amax(dim=(1, 2))
    return out


def _bilinear(feature: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """Bilinear interpolation of ``feature [C, H, W]`` at a real-valued point (pixel centres at
    integer coordinates); 0 outside ``[-1, H] x [-1, W]``, edge values just inside it."""
    C, H, W = feature.shape
    if y < -1.0 or y > H or x < -1.0 or x > W:
        return feature.new_zeros(C)
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= H - 1:
        y0 = y1 = H - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= W - 1:
        x0 = x1 = W - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * feature[:, y0, x0] + (1 - ly) * lx * feature[:, y0, x1]
            + ly * (1 - lx) * feature[:, y1, x0] + ly * lx * feature[:, y1, x1])


def roi_align(features: torch.Tensor, rois: torch.Tensor, output_size: int,
              spatial_scale: float = 1.0, sampling_ratio: int = 2,
              aligned: bool = True) -> torch.Tensor:
    """RoI Align (Mask R-CNN): no snapping. Each region, in real-valued feature coordinates, is
    cut into ``output_size x output_size`` equal bins; each bin averages ``sampling_ratio^2``
    bilinearly interpolated points spread evenly inside it (``sampling_ratio <= 0``: as many
    as ``ceil(bin size)``, torchvision's adaptive choice). ``aligned=True`` shifts the box by
    half a cell so that a pixel's centre maps to a cell's centre (torchvision's default is
    ``False``, the original paper's behaviour). Shapes as ``roi_pool``; matches
    ``torchvision.ops.roi_align`` with the same options.

    First used in section 13.7, *Fast R-CNN: cropping features instead of images*.
    """
    _check_rois(features, rois)
    K, C = len(rois), features.shape[1]
    out = features.new_zeros(K, C, output_size, output_size)
    offset = 0.5 if aligned else 0.0
    for k, (b, x1, y1, x2, y2) in enumerate(rois.tolist()):
        x1, y1 = x1 * spatial_scale - offset, y1 * spatial_scale - offset
        x2, y2 = x2 * spatial_scale - offset, y2 * spatial_scale - offset
        w, h = x2 - x1, y2 - y1
        if not aligned:                      # the original forced regions to at least 1 x 1
            w, h = max(w, 1.0), max(h, 1.0)
        bin_w, bin_h = w / output_size, h / output_size
        ny = sampling_ratio if sampling_ratio > 0 else math.ceil(h / output_size)
        nx = sampling_ratio if sampling_ratio > 0 else math.ceil(w / output_size)
        count = max(ny * nx, 1)
        feature = features[int(b)]
        for i in range(output_size):
            for j in range(output_size):
                acc = features.new_zeros(C)
                for iy in range(ny):
                    y = y1 + i * bin_h + (iy + 0.5) * bin_h / ny
                    for ix in range(nx):
                        x = x1 + j * bin_w + (ix + 0.5) * bin_w / nx
                        acc += _bilinear(feature, y, x)
                out[k, :, i, j] = acc / count
    return out
