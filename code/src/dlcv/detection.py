"""A small single-stage object detector (Chapter 13), in the way of RetinaNet, built from the
pieces of ``dlcv.boxes``: anchors on a grid, anchors matched to ground truth by IoU, a class
score and a box transform predicted for every anchor, a focal loss, and non-maximum
suppression at the end.

Shapes: images ``float [N, 3, H, W]`` in [0, 1]; a backbone of stride ``STRIDE`` gives
features ``[N, D, H/8, W/8]``; with ``K`` anchors per cell there are ``A = (H/8)(W/8) K``
anchors, and the head predicts class logits ``[N, A, C]`` (one sigmoid per category, no
background class: an anchor is background when every category says no) and box transforms
``[N, A, 4]`` (``dlcv.boxes.encode_boxes``, one per anchor, shared by the categories). Targets
follow ``dlcv.scenes.SceneSet``: ``{"boxes": [K, 4] (x1, y1, x2, y2), "labels": [K]}`` with
category ids 1..C.

``propose``, ``SecondStage`` and ``detect_two_stage`` turn it into a two-stage detector in the
way of Faster R-CNN: the single-stage detector, its scores taken as objectness, proposes
regions; RoI Align cuts their features out of its backbone; a small head classifies them and
refines their boxes.

``make_anchors`` and ``match_anchors`` are tested against torchvision's ``AnchorGenerator``
and ``Matcher``; ``detect`` uses ``torchvision.ops.batched_nms`` for speed (``dlcv.boxes`` has
the same function written out, and the tests check they agree).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchvision.ops as tvops
from torch import nn

from . import runtime
from .training import run_epochs
from .boxes import box_iou, decode_boxes, encode_boxes

__all__ = ["STRIDE", "make_anchors", "match_anchors", "SingleStageDetector", "detection_loss",
           "detect", "train_detector", "propose", "SecondStage", "second_stage_loss",
           "train_second_stage", "detect_two_stage"]

STRIDE = 8
BACKGROUND, IGNORE = -1, -2


def make_anchors(grid: tuple[int, int], stride: int, sizes=(16, 32, 64),
                 ratios=(0.5, 1.0, 2.0)) -> torch.Tensor:
    """Anchor boxes ``[H * W * K, 4]`` for a feature grid ``(H, W)``, ``K = len(sizes) *
    len(ratios)`` per cell: a box of area ``size^2`` and height/width ``ratio``, rounded to whole
    pixels, centred at ``(j * stride, i * stride)`` for cell ``(i, j)``; cells in row-major
    order, anchors within a cell ratio-major. This is torchvision's ``AnchorGenerator``
    exactly (whose centres sit on the cells' top-left corners, not their middles).

    First used in section 13.8, *Faster R-CNN: anchors and the region proposal network*.
    """
    if min(grid) < 1 or stride < 1:
        raise ValueError(f"grid {grid} and stride {stride} must be positive")
    ratios_t, sizes_t = torch.tensor(ratios, dtype=torch.float32), torch.tensor(sizes, dtype=torch.float32)
    h_ratios = torch.sqrt(ratios_t)
    ws = (1 / h_ratios[:, None] * sizes_t[None, :]).reshape(-1)      # [K]
    hs = (h_ratios[:, None] * sizes_t[None, :]).reshape(-1)
    base = (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()      # [K, 4], centred at 0
    ys, xs = torch.meshgrid(torch.arange(grid[0]) * stride, torch.arange(grid[1]) * stride,
                            indexing="ij")
    shifts = torch.stack([xs, ys, xs, ys], dim=-1).reshape(-1, 1, 4).float()   # [H*W, 1, 4]
    return (shifts + base[None]).reshape(-1, 4)


def match_anchors(anchors: torch.Tensor, gt_boxes: torch.Tensor, high: float = 0.5,
                  low: float = 0.4) -> torch.Tensor:
    """For every anchor ``[A, 4]``, the index of the ground-truth box ``[G, 4]`` it must predict:
    its best-overlapping box if that IoU >= ``high``; ``BACKGROUND`` (-1) below ``low``;
    ``IGNORE`` (-2) in between (neither taught as object nor as background). So that no object
    goes without an anchor, each box also claims the anchors that overlap it best (ties
    included), as torchvision's ``Matcher(allow_low_quality_matches=True)``. Returns ``[A]``
    int64.

    First used in section 13.9, *A single-stage detector*.
    """
    if len(gt_boxes) == 0:
        return torch.full((len(anchors),), BACKGROUND, dtype=torch.int64, device=anchors.device)
    iou = box_iou(gt_boxes, anchors)                         # [G, A]
    best_iou, best_gt = iou.max(dim=0)                       # per anchor
    matches = best_gt.clone()
    matches[best_iou < high] = IGNORE
    matches[best_iou < low] = BACKGROUND
    best_for_gt = iou.max(dim=1, keepdim=True).values        # per box
    claimed = torch.nonzero(iou == best_for_gt)[:, 1]
    matches[claimed] = best_gt[claimed]
    return matches


def _block(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class SingleStageDetector(nn.Module):
    """Backbone (five 3x3 convolutions, three of stride 2: stride 8) and a head shared by all
    cells: one 3x3 convolution, then ``K * C`` class logits and ``K * 4`` box transforms per
    cell. The class bias starts at ``-log((1 - 0.01) / 0.01)`` so that every anchor first says
    "background" with probability 0.99 (RetinaNet's prior; without it the many background
    anchors swamp the first steps).

    First used in section 13.7, *Fast R-CNN: cropping features instead of images*.
    """

    def __init__(self, num_classes: int, width: int = 64, sizes=(16, 32, 64),
                 ratios=(0.5, 1.0, 2.0)):
        super().__init__()
        self.num_classes, self.sizes, self.ratios = num_classes, tuple(sizes), tuple(ratios)
        self.k = len(sizes) * len(ratios)
        w = width
        self.backbone = nn.Sequential(*_block(3, w // 4, 2), *_block(w // 4, w // 2, 2),
                                      *_block(w // 2, w // 2, 1), *_block(w // 2, w, 2),
                                      *_block(w, w, 1))
        self.head = nn.Sequential(nn.Conv2d(w, w, 3, 1, 1), nn.ReLU())
        self.cls = nn.Conv2d(w, self.k * num_classes, 3, 1, 1)
        self.box = nn.Conv2d(w, self.k * 4, 3, 1, 1)
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.constant_(self.cls.bias, -math.log((1 - 0.01) / 0.01))
        nn.init.normal_(self.box.weight, std=0.01)
        nn.init.zeros_(self.box.bias)
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))

    def anchors(self, height: int, width: int) -> torch.Tensor:
        """The anchors ``[A, 4]`` for images of this size, on the model's device."""
        grid = (math.ceil(height / STRIDE), math.ceil(width / STRIDE))
        return make_anchors(grid, STRIDE, self.sizes, self.ratios).to(runtime.device_of(self))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's features ``[N, D, H/8, W/8]`` of ``images [N, 3, H, W]`` in [0, 1]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W] floats in [0, 1], got {tuple(images.shape)}")
        return self.backbone((images - self.mean) / 0.25)

    def forward(self, images: torch.Tensor):
        """``images [N, 3, H, W]`` in [0, 1] -> ``(features [N, D, H/8, W/8], logits [N, A, C],
        transforms [N, A, 4])``."""
        features = self.features(images)
        h = self.head(features)
        n = len(images)
        logits = self.cls(h).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes)
        transforms = self.box(h).permute(0, 2, 3, 1).reshape(n, -1, 4)
        return features, logits, transforms


def detection_loss(logits: torch.Tensor, transforms: torch.Tensor, anchors: torch.Tensor,
                   targets: list[dict]) -> dict[str, torch.Tensor]:
    """The two losses of a single-stage detector, each averaged over the positive anchors:
    ``classification``, the sigmoid focal loss (Lin et al. 2017; torchvision's, alpha 0.25,
    gamma 2) over every anchor that is not ignored, and ``box``, the smooth-L1 distance between
    the predicted and the true transform of every positive anchor."""
    cls_losses, box_losses, n_pos = [], [], 0
    for lg, tr, t in zip(logits, transforms, targets):
        matches = match_anchors(anchors, t["boxes"])
        positive = matches >= 0
        valid = matches != IGNORE
        onehot = torch.zeros_like(lg)
        onehot[positive, t["labels"][matches[positive]] - 1] = 1.0
        cls_losses.append(tvops.sigmoid_focal_loss(lg[valid], onehot[valid], reduction="sum"))
        if positive.any():
            target = encode_boxes(t["boxes"][matches[positive]], anchors[positive])
            box_losses.append(F.smooth_l1_loss(tr[positive], target, beta=1 / 9, reduction="sum"))
        n_pos += int(positive.sum())
    n_pos = max(n_pos, 1)
    box = torch.stack(box_losses).sum() if box_losses else transforms.sum() * 0.0
    return {"classification": torch.stack(cls_losses).sum() / n_pos, "box": box / n_pos}


def _forward(model: SingleStageDetector, images: torch.Tensor):
    """One forward pass in evaluation mode: features ``[N, D, h, w]``, category probabilities
    ``[N, A, C]``, box transforms ``[N, A, 4]`` and the anchors ``[A, 4]``."""
    model.eval()
    features, logits, transforms = model(images)
    return features, torch.sigmoid(logits), transforms, model.anchors(*images.shape[-2:])


@torch.no_grad()
def detect(model: SingleStageDetector, images: torch.Tensor, score_threshold: float = 0.05,
           nms_iou: float = 0.5, max_detections: int = 100, candidates: int = 1000):
    """Detections per image: ``[(boxes [D, 4], scores [D], labels [D])]`` with labels as
    category ids 1..C. Every (anchor, category) pair scoring above ``score_threshold`` is a
    candidate (the best ``candidates`` of them), its anchor moved by the predicted transform and
    clipped to the image; NMS then runs per category at ``nms_iou`` and the best
    ``max_detections`` are kept.

    First used in section 13.9, *A single-stage detector*.
    """
    _, probs, transforms, anchors = _forward(model, images)
    H, W = images.shape[-2:]
    out = []
    for pr, tr in zip(probs, transforms):
        scores = pr.flatten()                                       # [A * C]
        keep = torch.nonzero(scores > score_threshold).flatten()
        keep = keep[torch.argsort(scores[keep], descending=True)[:candidates]]
        a, c = keep // model.num_classes, keep % model.num_classes
        boxes = tvops.clip_boxes_to_image(decode_boxes(tr[a], anchors[a]), (H, W))
        s = scores[keep]
        kept = tvops.batched_nms(boxes, s, c, nms_iou)[:max_detections]
        out.append((boxes[kept], s[kept], c[kept] + 1))
    return out


def train_detector(model: SingleStageDetector, images: torch.Tensor, targets: list[dict], *,
                   epochs: int, batch_size: int = 32, lr: float = 2e-3, seed: int = 0,
                   flip: bool = True, log_every: int = 10) -> list[dict]:
    """Train with AdamW and a cosine schedule; ``images uint8 [N, 3, H, W]`` (converted per
    batch), random horizontal flips when ``flip``. Returns the mean of each loss every
    ``log_every`` steps, for plotting. Cut short as ``dlcv.runtime.limits`` says.

    First used in section 13.9, *A single-stage detector*.
    """
    device = runtime.device_of(model)
    gen = torch.Generator().manual_seed(seed)
    epochs, steps_per_epoch = runtime.limits(epochs, math.ceil(len(images) / batch_size))
    total = epochs * steps_per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.1)
    anchors = model.anchors(*images.shape[-2:])
    W = images.shape[-1]
    log, running, done = [], {}, 0

    def step(epoch, idx):
        nonlocal done
        x = images[idx].to(device).float() / 255
        tg = [{"boxes": targets[j]["boxes"].to(device), "labels": targets[j]["labels"].to(device)}
              for j in idx.tolist()]
        if flip:
            mirrored = torch.rand(len(idx), generator=gen) < 0.5
            for k in torch.nonzero(mirrored).flatten().tolist():
                x[k] = x[k].flip(-1)
                b = tg[k]["boxes"]
                tg[k] = {"boxes": torch.stack([W - b[:, 2], b[:, 1], W - b[:, 0], b[:, 3]], 1),
                         "labels": tg[k]["labels"]}
        _, logits, transforms = model(x)
        losses = detection_loss(logits, transforms, anchors, tg)
        loss = losses["classification"] + losses["box"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        done += 1
        for k, v in losses.items():
            running[k] = running.get(k, 0.0) + v.item()
        if done % log_every == 0 or done == total:      # the curve, every log_every steps
            n = (done - 1) % log_every + 1
            log.append({"step": done, **{k: v / n for k, v in running.items()}})
            running.clear()
        return {}                                       # no per-epoch means: the curve is it

    run_epochs(model, len(images), batch_size=batch_size, epochs=epochs, generator=gen, step=step)
    return log


# ----------------------------------------------------------------------------- two stages
SECOND_STAGE_WEIGHTS = (10.0, 10.0, 5.0, 5.0)   # Faster R-CNN's scaling of the box transform


@torch.no_grad()
def propose(model: SingleStageDetector, images: torch.Tensor, top: int = 300,
            nms_iou: float = 0.7, keep: int = 50) -> list[torch.Tensor]:
    """Region proposals from a single-stage detector used as a region proposal network: every
    anchor's objectness is its best category score; the ``top`` anchors, moved by their
    transforms and clipped, go through class-agnostic NMS at ``nms_iou``, and the best ``keep``
    remain. Returns ``[P, 4]`` boxes per image.

    First used in section 13.10, *Two stages: proposals, RoI Align, a second look*.
    """
    _, probs, transforms, anchors = _forward(model, images)
    return _proposals(probs, transforms, anchors, images.shape[-2:], top, nms_iou, keep)


def _proposals(probs, transforms, anchors, size, top=300, nms_iou=0.7, keep=50):
    """``propose`` from a forward pass already made (``_forward``'s outputs)."""
    H, W = size
    out = []
    for pr, tr in zip(probs, transforms):
        objectness = pr.max(dim=1).values
        best = torch.argsort(objectness, descending=True)[:top]
        boxes = tvops.clip_boxes_to_image(decode_boxes(tr[best], anchors[best]), (H, W))
        large = tvops.remove_small_boxes(boxes, 1.0)           # at least a pixel wide and high
        boxes, scores = boxes[large], objectness[best][large]
        out.append(boxes[tvops.nms(boxes, scores, nms_iou)[:keep]])
    return out


class SecondStage(nn.Module):
    """Fast R-CNN's head on top of a detector's backbone: each proposal's features are cut out
    with RoI Align (``7 x 7``, stride 8), flattened through two fully connected layers, and
    classified into ``C + 1`` classes (0 is background) with one box refinement per proposal.

    First used in section 13.10, *Two stages: proposals, RoI Align, a second look*.
    """

    def __init__(self, channels: int, num_classes: int, hidden: int = 256, size: int = 7):
        super().__init__()
        self.size, self.num_classes = size, num_classes
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, hidden),
                                 nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.cls = nn.Linear(hidden, num_classes + 1)
        self.box = nn.Linear(hidden, 4)
        nn.init.normal_(self.box.weight, std=0.001)
        nn.init.zeros_(self.box.bias)

    def forward(self, features: torch.Tensor, proposals: list[torch.Tensor]):
        """``features [N, D, h, w]`` and ``proposals`` (a ``[P_i, 4]`` per image) ->
        ``(logits [sum P_i, C + 1], transforms [sum P_i, 4])``."""
        rois = tvops.roi_align(features, proposals, self.size, spatial_scale=1 / STRIDE,
                               sampling_ratio=2, aligned=True)
        h = self.mlp(rois)
        return self.cls(h), self.box(h)


def _second_stage_targets(proposals, targets, fg_iou: float = 0.5):
    labels, boxes = [], []
    for p, t in zip(proposals, targets):
        if len(t["boxes"]) == 0:
            labels.append(torch.zeros(len(p), dtype=torch.int64, device=p.device))
            boxes.append(torch.zeros(len(p), 4, device=p.device))
            continue
        iou, best = box_iou(p, t["boxes"]).max(dim=1)
        lab = t["labels"][best].clone()
        lab[iou < fg_iou] = 0
        labels.append(lab)
        boxes.append(t["boxes"][best])
    return torch.cat(labels), torch.cat(boxes)


def second_stage_loss(logits, transforms, proposals, targets) -> dict[str, torch.Tensor]:
    """Faster R-CNN's losses 3 and 4: cross-entropy over ``C + 1`` classes for every proposal
    (IoU >= 0.5 with a box: that box's category, else background) and smooth L1 between the
    predicted and the true refinement of the proposals that are objects."""
    labels, matched = _second_stage_targets(proposals, targets)
    p = torch.cat(proposals)
    fg = labels > 0
    cls = F.cross_entropy(logits, labels)
    if fg.any():
        target = encode_boxes(matched[fg], p[fg], SECOND_STAGE_WEIGHTS)
        box = F.smooth_l1_loss(transforms[fg], target, beta=1 / 9, reduction="sum") / len(labels)
    else:
        box = transforms.sum() * 0.0
    return {"classification": cls, "box": box}


def train_second_stage(head: SecondStage, detector: SingleStageDetector, images: torch.Tensor,
                       targets: list[dict], *, epochs: int, batch_size: int = 8,
                       lr: float = 1e-3, seed: int = 0) -> list[dict]:
    """Train the head on the detector's proposals, with the detector frozen (the ground-truth
    boxes join the proposals, as in Faster R-CNN, so that every object has a good one).
    Returns the mean losses of every epoch.

    First used in section 13.10, *Two stages: proposals, RoI Align, a second look*.
    """
    device = runtime.device_of(detector)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)

    def step(epoch, idx):
        x = images[idx].to(device).float() / 255
        tg = [{"boxes": targets[j]["boxes"].to(device), "labels": targets[j]["labels"].to(device)}
              for j in idx.tolist()]
        with torch.no_grad():        # one pass of the frozen detector gives both
            features, *outputs = _forward(detector, x)
            proposals = _proposals(*outputs, x.shape[-2:])
        proposals = [torch.cat([p, t["boxes"]]) for p, t in zip(proposals, tg)]
        logits, transforms = head(features, proposals)
        losses = second_stage_loss(logits, transforms, proposals, tg)
        opt.zero_grad()
        (losses["classification"] + losses["box"]).backward()
        opt.step()
        return losses

    return run_epochs(head, len(images), batch_size=batch_size, epochs=epochs, generator=gen,
                      step=step)


@torch.no_grad()
def detect_two_stage(head: SecondStage, detector: SingleStageDetector, images: torch.Tensor,
                     score_threshold: float = 0.05, nms_iou: float = 0.5,
                     max_detections: int = 100):
    """Proposals from the detector, then the head's class probabilities and refined boxes,
    per-category NMS. Same output as ``detect``.

    First used in section 13.10, *Two stages: proposals, RoI Align, a second look*.
    """
    head.eval()
    features, *outputs = _forward(detector, images)
    proposals = _proposals(*outputs, images.shape[-2:])
    logits, transforms = head(features, proposals)
    probs = F.softmax(logits, dim=1)[:, 1:]                  # [sum P, C], background dropped
    H, W = images.shape[-2:]
    out, start = [], 0
    for p in proposals:
        pr, tr = probs[start:start + len(p)], transforms[start:start + len(p)]
        start += len(p)
        boxes = tvops.clip_boxes_to_image(decode_boxes(tr, p, SECOND_STAGE_WEIGHTS), (H, W))
        keep = torch.nonzero(pr > score_threshold)            # (proposal, category) pairs
        b, s, c = boxes[keep[:, 0]], pr[keep[:, 0], keep[:, 1]], keep[:, 1]
        kept = tvops.batched_nms(b, s, c, nms_iou)[:max_detections]
        out.append((b[kept], s[kept], c[kept] + 1))
    return out
