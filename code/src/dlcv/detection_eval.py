"""Average precision and COCO's mAP from scratch (Chapter 13), to the rules of pycocotools'
``COCOeval`` so that the two agree to rounding (the package's tests check 1e-6 on random
detections and on the book's own).

The recipe, for one category at one IoU threshold:

1. In each image, take the detections in decreasing score (at most ``max_dets`` per image)
   and match each to the unmatched ground-truth box of that category it overlaps most, if
   that IoU reaches the threshold: a true positive; otherwise a false positive.
2. Pool the detections of all images, sort by score, and accumulate: after the first k,
   precision = TP / k and recall = TP / (number of ground-truth boxes).
3. Make precision non-increasing from the right (each point takes the best precision at any
   higher recall), read it at the 101 recall levels 0, 0.01, ..., 1 (0 beyond the highest
   recall reached) and average: that is the AP.

COCO's mAP averages the AP over the categories that have ground truth and over the IoU
thresholds 0.50, 0.55, ..., 0.95; "AP50" is the AP at 0.5 alone (Pascal VOC's measure, though
VOC 2007 itself used 11 recall levels).

Two more of COCOeval's rules matter on real COCO data, and both are here:

- **Crowd regions** (``iscrowd``: a box around a crowd of people, say) are never missed and
  never found: a detection inside one is ignored rather than counted false, and its overlap is
  the intersection over the *detection's* area, since one crowd may hold many detections.
- **Area ranges**: "small" objects have an area below 32^2 pixels, "medium" from 32^2 to 96^2,
  "large" above; for one range, ground truth outside it is ignored, and so is a detection
  outside it that matches nothing. The area of a ground-truth object is its annotation's
  ``area`` (for COCO, the mask's pixels, not the box's).

``summarize`` gives COCOeval's twelve summary numbers (AP, AP50, AP75, AP small, medium and
large; AR with at most 1, 10 and 100 detections per image and category, AR small, medium and
large), where AR is the recall reached, averaged over the IoU thresholds and categories.

Inputs are plain dictionaries so that the same code reads COCO's JSON and a model's output.
Ground truth: ``{image_id: (boxes [G, 4], labels [G])}``, or per image a dictionary with
``boxes`` and ``labels``, optional ``area [G]`` (default: the boxes' areas) and optional
``crowd_boxes [C, 4]`` and ``crowd_labels [C]`` (a ``SceneSet``'s targets are such
dictionaries). Detections: ``{image_id: (boxes [D, 4], scores [D], labels [D])}``. Boxes are
(x1, y1, x2, y2).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .boxes import box_area, box_intersection, box_iou, check_boxes

__all__ = ["COCO_IOU_THRESHOLDS", "RECALL_LEVELS", "AREA_RANGES", "match_detections",
           "precision_recall", "interpolated_ap", "APResult", "evaluate", "COCOSummary",
           "summarize", "to_coco_results", "cocoeval"]

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)       # 0.50, 0.55, ..., 0.95
RECALL_LEVELS = np.linspace(0.0, 1.0, 101)             # COCO's 101 recall points
AREA_RANGES = {"all": (0.0, 1e10), "small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2),
               "large": (96.0 ** 2, 1e10)}             # COCOeval's, in square pixels


def _match(iou: np.ndarray, iou_threshold: float, gt_ignore: np.ndarray,
           gt_crowd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval's greedy matching in one image and category. ``iou [D, G]``: detections in
    decreasing score, ground truth with the ignored ones last. Each detection takes the
    still-free ground truth it overlaps most, if by at least the threshold; it prefers a
    counted one to an ignored one, and a crowd region is never used up. Returns whether each
    detection matched ``[D]`` and whether it matched something ignored ``[D]``."""
    D, G = iou.shape
    matched, ignored = np.zeros(D, dtype=bool), np.zeros(D, dtype=bool)
    taken = np.zeros(G, dtype=bool)
    for d in range(D):
        best, best_iou = -1, min(iou_threshold, 1 - 1e-10)   # COCOeval's threshold rule
        for g in range(G):
            if taken[g] and not gt_crowd[g]:
                continue
            if best >= 0 and not gt_ignore[best] and gt_ignore[g]:
                break                      # a counted match is never traded for an ignored one
            if iou[d, g] >= best_iou:
                best, best_iou = g, iou[d, g]
        if best >= 0:
            taken[best], matched[d], ignored[d] = True, True, gt_ignore[best]
    return matched, ignored


def match_detections(det_boxes: torch.Tensor, det_scores: torch.Tensor, gt_boxes: torch.Tensor,
                     iou_threshold: float, max_dets: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching in one image and one category: detections in decreasing score (the
    first ``max_dets``), each to the best still-unmatched ground truth with IoU >=
    ``iou_threshold``. Returns the kept detections' scores ``[D']`` and whether each is a true
    positive ``[D']`` (bool), in that order."""
    order = torch.argsort(det_scores, descending=True, stable=True)[:max_dets]
    scores = det_scores[order].double().cpu().numpy()
    if len(gt_boxes) == 0 or len(order) == 0:
        return scores, np.zeros(len(order), dtype=bool)
    iou = box_iou(det_boxes[order].double(), gt_boxes.double()).cpu().numpy()   # [D', G]
    none = np.zeros(len(gt_boxes), dtype=bool)
    return scores, _match(iou, iou_threshold, none, none)[0]


def precision_recall(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall ``[D]`` after each detection, the pooled detections sorted by
    decreasing score (a stable merge sort, as COCOeval)."""
    if n_gt <= 0:
        raise ValueError("precision and recall need at least one ground-truth box")
    order = np.argsort(-scores, kind="mergesort")
    tps = np.cumsum(tp[order])
    fps = np.cumsum(~tp[order])
    return tps / (tps + fps + np.spacing(1)), tps / n_gt


def interpolated_ap(precision: np.ndarray, recall: np.ndarray,
                    levels: np.ndarray = RECALL_LEVELS) -> float:
    """Step 3 of the recipe: the monotone envelope of precision, read at ``levels`` (0 beyond
    the last recall reached) and averaged."""
    envelope = np.maximum.accumulate(np.asarray(precision, dtype=float)[::-1])[::-1]
    at = np.searchsorted(recall, levels, side="left")
    read = np.where(at < len(envelope), envelope[np.minimum(at, len(envelope) - 1)], 0.0)
    return float(read.mean())


@dataclass
class APResult:
    """``ap[c, t]``: AP of category ``categories[c]`` at ``iou_thresholds[t]``, and
    ``recall[c, t]`` the recall it reaches (NaN where the category has no counted ground
    truth); ``curves[(c, t)]``: its (precision, recall) arrays."""
    categories: list[int]
    iou_thresholds: np.ndarray
    ap: np.ndarray
    curves: dict
    recall: np.ndarray | None = None

    @property
    def map(self) -> float:
        """COCO's mAP: the mean over categories with ground truth and over IoU thresholds."""
        return _mean(self.ap)

    @property
    def mar(self) -> float:
        """COCO's AR: the recall reached, averaged over categories and IoU thresholds."""
        return _mean(self.recall)

    def at(self, iou_threshold: float) -> float:
        """The mean AP over categories at one IoU threshold (for example AP50 at 0.5)."""
        t = int(np.argmin(np.abs(self.iou_thresholds - iou_threshold)))
        if abs(self.iou_thresholds[t] - iou_threshold) > 1e-9:
            raise ValueError(f"{iou_threshold} is not one of the evaluated IoU thresholds")
        return _mean(self.ap[:, t])


def _mean(values: np.ndarray) -> float:
    """The mean of the defined values; COCOeval's -1 (here NaN) where none is defined."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def _check(name, entry, n_fields):
    if not isinstance(entry, (tuple, list)) or len(entry) != n_fields:
        raise ValueError(f"{name} must be a tuple of {n_fields} tensors")
    check_boxes(entry[0], name + " boxes")
    for k, t in enumerate(entry[1:], start=1):
        if not isinstance(t, torch.Tensor) or t.shape != (len(entry[0]),):
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name}: field {k} has shape {shape}; it needs one value "
                             f"per box, [{len(entry[0])}]")


@dataclass
class _Truth:
    """One image's ground truth, the counted objects first and crowd regions after them:
    ``boxes [G, 4]`` float64, ``labels [G]``, ``area [G]``, ``crowd [G]`` (numpy)."""
    boxes: torch.Tensor
    labels: np.ndarray
    area: np.ndarray
    crowd: np.ndarray


def _truth(name: str, entry) -> _Truth:
    """Read one image's ground truth in either form (see the module's docstring)."""
    if isinstance(entry, dict):
        missing = [k for k in ("boxes", "labels") if k not in entry]
        if missing:
            raise ValueError(f"{name} has no {' or '.join(missing)}: a ground-truth dictionary "
                             "needs boxes [G, 4] and labels [G]")
        boxes, labels = entry["boxes"], entry["labels"]
        _check(name, (boxes, labels), 2)
        area = entry.get("area", box_area(boxes))
        _check(name, (boxes, labels, area), 3)
        crowd_boxes = entry.get("crowd_boxes", torch.zeros(0, 4))
        crowd_labels = entry.get("crowd_labels", torch.zeros(0, dtype=torch.int64))
        _check(name + " crowd", (crowd_boxes, crowd_labels), 2)
    else:
        _check(name, entry, 2)
        (boxes, labels), area = entry, box_area(entry[0])
        crowd_boxes, crowd_labels = torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)
    if (area < 0).any():
        raise ValueError(f"{name}: an area is negative")
    n, c = len(boxes), len(crowd_boxes)
    return _Truth(torch.cat([boxes.double().cpu(), crowd_boxes.double().cpu()]),
                  np.concatenate([labels.cpu().numpy(), crowd_labels.cpu().numpy()]).astype(np.int64),
                  np.concatenate([area.double().cpu().numpy(), np.zeros(c)]),
                  np.concatenate([np.zeros(n, dtype=bool), np.ones(c, dtype=bool)]))


def _overlaps(det_boxes: torch.Tensor, gt_boxes: torch.Tensor, crowd: np.ndarray) -> np.ndarray:
    """IoU ``[D, G]``, except that with a crowd region the overlap is the intersection over the
    detection's area (COCO's rule)."""
    iou = box_iou(det_boxes, gt_boxes).numpy()
    if crowd.any():
        inter = box_intersection(det_boxes, gt_boxes[crowd]).numpy()
        area = box_area(det_boxes).numpy()[:, None]
        iou[:, crowd] = np.where(area > 0, inter / np.maximum(area, 1e-300), 0.0)
    return iou


def _area_range(area_range) -> tuple[float, float]:
    if isinstance(area_range, str):
        if area_range not in AREA_RANGES:
            raise ValueError(f"unknown area range {area_range!r}; COCO's are "
                             f"{', '.join(AREA_RANGES)}, or give (low, high) in square pixels")
        return AREA_RANGES[area_range]
    low, high = area_range
    return float(low), float(high)


class _Evaluation:
    """The checked inputs, sorted and overlapped once, from which ``evaluate`` reads the AP for
    any area range and number of detections (``summarize`` reads twelve)."""

    def __init__(self, ground_truth: dict, detections: dict, iou_thresholds, max_dets: int,
                 categories):
        if not isinstance(ground_truth, dict) or not isinstance(detections, dict):
            raise ValueError("ground_truth and detections must be dictionaries keyed by image id")
        truth = {i: _truth(f"ground_truth[{i!r}]", e) for i, e in ground_truth.items()}
        for image_id, entry in detections.items():
            if image_id not in ground_truth:
                raise ValueError(f"detections for image {image_id!r}, which has no ground-truth "
                                 "entry (give it an empty one if it has no objects)")
            _check(f"detections[{image_id!r}]", entry, 3)
        if max_dets < 1:
            raise ValueError(f"max_dets must be at least 1, got {max_dets}")
        if categories is None:
            categories = sorted({int(c) for t in truth.values() for c in t.labels[~t.crowd]})
        self.categories = [int(c) for c in categories]
        self.thresholds = np.asarray(iou_thresholds, dtype=float)
        # per category, per image in order: the first max_dets detections by score, their
        # areas, the image's ground truth of that category and the overlaps
        self.cells = {cat: [] for cat in self.categories}
        for cat in self.categories:
            for image_id in sorted(truth):            # COCOeval's order of images
                t = truth[image_id]
                mine = t.labels == cat
                if image_id in detections:
                    d_b, d_s, d_l = detections[image_id]
                    sel = (d_l == cat).cpu()
                    d_b, d_s = d_b.detach().cpu()[sel].double(), d_s.detach().cpu()[sel].double()
                    order = torch.argsort(d_s, descending=True, stable=True)[:max_dets]
                    d_b, d_s = d_b[order], d_s[order]
                else:
                    d_b, d_s = torch.zeros(0, 4, dtype=torch.float64), torch.zeros(0)
                if not mine.any() and not len(d_b):
                    continue
                g_b, crowd = t.boxes[torch.from_numpy(mine)], t.crowd[mine]
                iou = (_overlaps(d_b, g_b, crowd) if len(d_b) and len(g_b)
                       else np.zeros((len(d_b), len(g_b))))
                self.cells[cat].append((d_s.numpy(), box_area(d_b).numpy(), iou,
                                        t.area[mine], crowd))

    def result(self, area_range, max_dets: int) -> APResult:
        low, high = _area_range(area_range)
        C, T = len(self.categories), len(self.thresholds)
        ap, recall, curves = np.full((C, T), np.nan), np.full((C, T), np.nan), {}
        for ci, cat in enumerate(self.categories):
            scores, matched, ignored, n_counted = [], [], [], 0
            for d_s, d_area, iou, g_area, crowd in self.cells[cat]:
                g_ignore = crowd | (g_area < low) | (g_area > high)
                order = np.argsort(g_ignore, kind="mergesort")       # counted ones first
                n_counted += int((~g_ignore).sum())
                d = min(len(d_s), max_dets)
                out = (d_area[:d] < low) | (d_area[:d] > high)
                m = np.zeros((T, d), dtype=bool)
                ig = np.zeros((T, d), dtype=bool)
                for ti, thr in enumerate(self.thresholds):
                    m[ti], ig[ti] = _match(iou[:d][:, order], thr, g_ignore[order], crowd[order])
                scores.append(d_s[:d])
                matched.append(m)
                ignored.append(ig | (~m & out))       # an unmatched detection out of range
            if n_counted == 0:
                continue
            scores = np.concatenate(scores) if scores else np.zeros(0)
            matched = np.concatenate(matched, 1) if matched else np.zeros((T, 0), dtype=bool)
            ignored = np.concatenate(ignored, 1) if ignored else np.zeros((T, 0), dtype=bool)
            for ti in range(T):
                keep = ~ignored[ti]
                if not keep.any():
                    ap[ci, ti], recall[ci, ti] = 0.0, 0.0
                    continue
                precision, rec = precision_recall(scores[keep], matched[ti][keep], n_counted)
                curves[(ci, ti)] = (precision, rec)
                ap[ci, ti], recall[ci, ti] = interpolated_ap(precision, rec), rec[-1]
        return APResult(self.categories, self.thresholds, ap, curves, recall)


def evaluate(ground_truth: dict, detections: dict, iou_thresholds=COCO_IOU_THRESHOLDS,
             max_dets: int = 100, categories: list[int] | None = None,
             area_range: str | tuple[float, float] = "all") -> APResult:
    """AP (and recall) per category and IoU threshold, by COCOeval's rules, crowd regions and
    area ranges included (``area_range``: ``"all"``, ``"small"``, ``"medium"``, ``"large"`` or
    ``(low, high)`` in square pixels). Inputs as in the module's docstring. An image missing
    from ``detections`` has none; a detection on an image without a ground-truth entry is an
    error (COCOeval would silently ignore it).

    First used in section 13.6, *Evaluating a detector: average precision*.
    """
    return _Evaluation(ground_truth, detections, iou_thresholds, max_dets,
                       categories).result(area_range, max_dets)


@dataclass
class COCOSummary:
    """COCOeval's twelve summary numbers, named; ``stats`` lists them in COCOeval's order (its
    ``.stats``). NaN where COCOeval prints -1 (no counted ground truth in that range)."""
    ap: float
    ap50: float
    ap75: float
    ap_small: float
    ap_medium: float
    ap_large: float
    ar1: float
    ar10: float
    ar100: float
    ar_small: float
    ar_medium: float
    ar_large: float

    @property
    def stats(self) -> np.ndarray:
        return np.array([getattr(self, f) for f in self.__dataclass_fields__])


def summarize(ground_truth: dict, detections: dict,
              categories: list[int] | None = None) -> COCOSummary:
    """COCOeval's twelve summary numbers for box detections (inputs as ``evaluate``): AP over
    the ten IoU thresholds, AP50, AP75 and AP per area range with at most 100 detections per
    image and category, then AR with at most 1, 10 and 100, and AR per area range.

    First used in section 13.6, *Evaluating a detector: average precision*.
    """
    ev = _Evaluation(ground_truth, detections, COCO_IOU_THRESHOLDS, 100, categories)
    full = ev.result("all", 100)
    by_area = {a: ev.result(a, 100) for a in ("small", "medium", "large")}
    return COCOSummary(full.map, full.at(0.5), full.at(0.75),
                       *(by_area[a].map for a in ("small", "medium", "large")),
                       ev.result("all", 1).mar, ev.result("all", 10).mar, full.mar,
                       *(by_area[a].mar for a in ("small", "medium", "large")))


def to_coco_results(detections: dict, masks: dict | None = None) -> list[dict]:
    """Detections ``{image_id: (boxes [D, 4] xyxy, scores [D], labels [D])}`` as COCO's result
    list (``bbox`` as ``[x, y, w, h]``), with RLE ``segmentation`` from ``masks``
    ``{image_id: bool [D, H, W]}`` when given (for mask AP)."""
    from pycocotools import mask as mask_utils

    out = []
    for image_id, (boxes, scores, labels) in detections.items():
        xywh = boxes.detach().cpu().double().clone()
        xywh[:, 2:] -= xywh[:, :2]
        for k, (b, s, c) in enumerate(zip(xywh.tolist(), scores.tolist(), labels.tolist())):
            r = {"image_id": int(image_id), "category_id": int(c), "bbox": b, "score": float(s)}
            if masks is not None:
                m = masks[image_id][k].cpu().numpy().astype(np.uint8)
                rle = mask_utils.encode(np.asfortranarray(m))
                r["segmentation"] = {"size": list(rle["size"]), "counts": rle["counts"].decode()}
            out.append(r)
    return out


def cocoeval(coco, detections: dict, iou_type: str = "bbox", masks: dict | None = None,
             image_ids=None):
    """Run pycocotools' ``COCOeval`` on ``detections`` against the ground truth in ``coco`` (a
    ``pycocotools.coco.COCO``, such as ``SceneSet.coco``), quietly; returns the evaluator
    (``.stats``: the twelve numbers of ``summarize``, -1 where undefined). Every image of
    ``coco`` is evaluated, so an image without detections counts its objects as missed, unless
    ``image_ids`` names the images to evaluate.

    First used in section 13.6, *Evaluating a detector: average precision*.
    """
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    results = to_coco_results(detections, masks)
    known = set(coco.getImgIds())
    unknown = sorted(set(int(i) for i in detections) - known)
    if unknown:
        raise ValueError(f"detections for images {unknown[:5]} that the ground truth does not have")
    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            dt = coco.loadRes(results)
        else:              # loadRes cannot read an empty list: an empty result set by hand
            dt = COCO()
            dt.dataset = {"images": list(coco.dataset["images"]), "annotations": [],
                          "categories": list(coco.dataset["categories"])}
            dt.createIndex()
        ev = COCOeval(coco, dt, iou_type)
        ev.params.imgIds = sorted(known if image_ids is None else (int(i) for i in image_ids))
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev
