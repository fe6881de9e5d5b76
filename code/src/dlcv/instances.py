"""Mask R-CNN's heads for instances (Chapter 14), on the features of a segmentation network.

Given boxes (the true ones, or a detector's), ``InstanceHeads`` cuts each box's features out of
a ``dlcv.segmentation.SegmentationNet``'s feature map with RoI Align and predicts a ``28 x 28``
mask and a heatmap per keypoint inside the box. ``instance_targets`` turns a COCO-style
instance (mask, keypoints) into those targets, ``train_instance_heads`` trains the heads with
the backbone frozen, ``predict_instances`` pastes masks and keypoints back into the image, and
``keypoint_error`` measures the keypoints in pixels.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from . import runtime
from .training import run_epochs
from .segmentation import SegmentationNet

__all__ = ["ROI_SIZE", "MASK_SIZE", "InstanceHeads", "instance_targets", "train_instance_heads",
           "predict_instances", "keypoint_error"]

ROI_SIZE, MASK_SIZE = 14, 28


class InstanceHeads(nn.Module):
    """Mask R-CNN's mask and keypoint branches, small: RoI Align cuts a ``14 x 14`` window of
    the features out of each box, three 3x3 convolutions and a stride-2 transposed convolution
    bring it to ``28 x 28``, and 1x1 convolutions give one mask logit per pixel (class-agnostic)
    and one heatmap logit per pixel and keypoint.

    First used in section 14.6, *Instance segmentation: Mask R-CNN*.
    """

    def __init__(self, channels: int, num_keypoints: int = 4, width: int = 32):
        super().__init__()
        layers, c = [], channels
        for _ in range(3):
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU()]
            c = width
        self.body = nn.Sequential(*layers, nn.ConvTranspose2d(width, width, 2, stride=2), nn.ReLU())
        self.mask = nn.Conv2d(width, 1, 1)
        self.keypoints = nn.Conv2d(width, num_keypoints, 1)

    def forward(self, features: torch.Tensor, boxes: list[torch.Tensor],
                spatial_scale: float = 1.0):
        """``features [N, C, H * s, W * s]`` at ``spatial_scale`` s of the image's resolution,
        ``boxes`` a ``[K_i, 4]`` per image in image pixels -> mask logits ``[sum K_i, 28, 28]``
        and keypoint logits ``[sum K_i, P, 28, 28]``."""
        import torchvision.ops as tvops

        rois = tvops.roi_align(features, boxes, ROI_SIZE, spatial_scale=spatial_scale,
                               sampling_ratio=2, aligned=True)
        h = self.body(rois)
        return self.mask(h)[:, 0], self.keypoints(h)


def instance_targets(masks: torch.Tensor, keypoints: torch.Tensor, boxes: torch.Tensor):
    """Targets for boxes ``[K, 4]`` paired with instances: each mask ``bool [K, H, W]`` cut to its
    box and resampled to ``28 x 28`` (RoI Align on the mask, then >= 0.5), and each keypoint
    ``[K, P, 3]`` as the index of its heatmap cell in ``0..28 * 28 - 1`` (-1 when it falls
    outside the box)."""
    import torchvision.ops as tvops

    if len(boxes) == 0:
        return masks.new_zeros(0, MASK_SIZE, MASK_SIZE, dtype=torch.float32), \
            torch.zeros(0, keypoints.shape[1], dtype=torch.int64)
    rois = torch.cat([torch.arange(len(boxes), device=boxes.device)[:, None].float(), boxes], 1)
    crops = tvops.roi_align(masks[:, None].float(), rois, MASK_SIZE, 1.0, 2, aligned=True)[:, 0]
    x1, y1, x2, y2 = boxes.unbind(1)
    u = ((keypoints[..., 0] - x1[:, None]) / (x2 - x1).clamp(min=1)[:, None] * MASK_SIZE).floor()
    v = ((keypoints[..., 1] - y1[:, None]) / (y2 - y1).clamp(min=1)[:, None] * MASK_SIZE).floor()
    inside = (u >= 0) & (u < MASK_SIZE) & (v >= 0) & (v < MASK_SIZE) & (keypoints[..., 2] > 0)
    index = torch.where(inside, (v * MASK_SIZE + u).long(), torch.full_like(u, -1).long())
    return (crops >= 0.5).float(), index


def _jitter(boxes: torch.Tensor, gen: torch.Generator, amount: float, size: int) -> torch.Tensor:
    wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    noise = (torch.rand(boxes.shape, generator=gen) * 2 - 1).to(boxes.device) * amount * wh
    out = (boxes + noise).clamp(0, size)
    return torch.cat([out[:, :2], torch.maximum(out[:, 2:], out[:, :2] + 2)], 1)


def train_instance_heads(heads: InstanceHeads, backbone: SegmentationNet, images: torch.Tensor,
                         targets: list[dict], *, epochs: int, batch_size: int = 16,
                         lr: float = 2e-3, jitter: float = 0.1, seed: int = 0) -> list[dict]:
    """Train both branches on the true boxes, each moved and resized by up to ``jitter`` of its
    size (so that the heads also learn from imperfect boxes, as they will get from a detector),
    with the backbone frozen: per-pixel binary cross-entropy for masks, a softmax over the
    ``28 x 28`` cells for each keypoint (Mask R-CNN's loss; its keypoint heatmaps are finer,
    ``56 x 56``). Returns each epoch's mean
    losses.

    First used in section 14.6, *Instance segmentation: Mask R-CNN*.
    """
    device = runtime.device_of(backbone)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(heads.parameters(), lr=lr, weight_decay=1e-4)

    def step(epoch, idx):
        idx = idx.tolist()
        x = images[idx].to(device).float() / 255
        with torch.no_grad():
            feats = backbone.features(x)
        boxes, mask_t, kp_t = [], [], []
        for j in idx:
            t = targets[j]
            b = _jitter(t["boxes"].to(device), gen, jitter, images.shape[-1])
            m, k = instance_targets(t["masks"].to(device), t["keypoints"].to(device), b)
            boxes.append(b)
            mask_t.append(m)
            kp_t.append(k)
        mask_logits, kp_logits = heads(feats, boxes, 1 / backbone.stride)
        mask_t, kp_t = torch.cat(mask_t), torch.cat(kp_t)
        mask_loss = F.binary_cross_entropy_with_logits(mask_logits, mask_t)
        flat = kp_logits.flatten(2)                                   # [R, P, 784]
        valid = kp_t >= 0
        kp_loss = F.cross_entropy(flat[valid], kp_t[valid]) if valid.any() else flat.sum() * 0
        opt.zero_grad()
        (mask_loss + kp_loss).backward()
        opt.step()
        return {"mask": mask_loss, "keypoints": kp_loss}

    return run_epochs(heads, len(images), batch_size=batch_size, epochs=epochs, generator=gen,
                      step=step)


@torch.no_grad()
def predict_instances(heads: InstanceHeads, backbone: SegmentationNet, image: torch.Tensor,
                      boxes: torch.Tensor):
    """For one image ``uint8 [3, H, W]`` and boxes ``[K, 4]``: full-size masks ``bool [K, H, W]``
    (each 28 x 28 mask resized to its box and pasted, > 0.5), a score per mask (its mean
    probability inside the mask), and keypoints ``[K, P, 2]`` (x, y) at the centres of the
    heatmaps' best cells.

    First used in section 14.6, *Instance segmentation: Mask R-CNN*.
    """
    heads.eval()
    device = runtime.device_of(backbone)
    H, W = image.shape[-2:]
    boxes = boxes.to(device).float()
    feats = backbone.features(image[None].to(device).float() / 255)
    mask_logits, kp_logits = heads(feats, [boxes], 1 / backbone.stride)
    probs = torch.sigmoid(mask_logits)
    masks = torch.zeros(len(boxes), H, W, dtype=torch.bool, device=device)
    scores = torch.zeros(len(boxes), device=device)
    for k, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        c1, r1 = max(int(math.floor(x1)), 0), max(int(math.floor(y1)), 0)
        c2, r2 = min(int(math.ceil(x2)), W), min(int(math.ceil(y2)), H)
        if c2 <= c1 or r2 <= r1:
            continue
        pasted = F.interpolate(probs[k][None, None], size=(r2 - r1, c2 - c1), mode="bilinear",
                               align_corners=False)[0, 0]
        masks[k, r1:r2, c1:c2] = pasted > 0.5
        inside = pasted > 0.5
        scores[k] = pasted[inside].mean() if inside.any() else 0.0
    best = kp_logits.flatten(2).argmax(2)                              # [K, P]
    u, v = (best % MASK_SIZE).float() + 0.5, (best // MASK_SIZE).float() + 0.5
    x1, y1, x2, y2 = boxes.unbind(1)
    kx = x1[:, None] + u / MASK_SIZE * (x2 - x1)[:, None]
    ky = y1[:, None] + v / MASK_SIZE * (y2 - y1)[:, None]
    return masks.cpu(), scores.cpu(), torch.stack([kx, ky], -1).cpu()


def keypoint_error(predicted: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Distances in pixels ``[K, P]`` between predicted ``[K, P, 2]`` and true ``[K, P, 3]``
    keypoints (NaN where the true one is not visible).

    First used in section 14.6, *Instance segmentation: Mask R-CNN*.
    """
    d = (predicted - true[..., :2]).norm(dim=-1)
    return torch.where(true[..., 2] > 0, d, torch.full_like(d, float("nan")))
