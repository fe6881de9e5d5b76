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

Inputs are plain dictionaries so that the same code reads COCO's JSON and a model's output:
ground truth ``{image_id: (boxes [G, 4] xyxy, labels [G])}`` and detections
``{image_id: (boxes [D, 4] xyxy, scores [D], labels [D])}``.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch

from .boxes import box_iou, check_boxes

__all__ = ["COCO_IOU_THRESHOLDS", "RECALL_LEVELS", "match_detections", "precision_recall",
           "interpolated_ap", "APResult", "evaluate", "to_coco_results", "cocoeval"]

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)       # 0.50, 0.55, ..., 0.95
RECALL_LEVELS = np.linspace(0.0, 1.0, 101)             # COCO's 101 recall points


def match_detections(det_boxes: torch.Tensor, det_scores: torch.Tensor, gt_boxes: torch.Tensor,
                     iou_threshold: float, max_dets: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching in one image and one category: detections in decreasing score (the
    first ``max_dets``), each to the best still-unmatched ground truth with IoU >=
    ``iou_threshold``. Returns the kept detections' scores ``[D']`` and whether each is a true
    positive ``[D']`` (bool), in that order."""
    order = torch.argsort(det_scores, descending=True, stable=True)[:max_dets]
    scores = det_scores[order].double().cpu().numpy()
    tp = np.zeros(len(order), dtype=bool)
    if len(gt_boxes) == 0 or len(order) == 0:
        return scores, tp
    iou = box_iou(det_boxes[order].double(), gt_boxes.double()).cpu().numpy()   # [D', G]
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for d in range(len(order)):
        best, best_iou = -1, min(iou_threshold, 1 - 1e-10)   # COCOeval's threshold rule
        for g in range(len(gt_boxes)):
            if not taken[g] and iou[d, g] >= best_iou:
                best, best_iou = g, iou[d, g]
        if best >= 0:
            taken[best], tp[d] = True, True
    return scores, tp


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
    """``ap[c, t]``: AP of category ``categories[c]`` at ``iou_thresholds[t]`` (NaN where the
    category has no ground truth); ``curves[(c, t)]``: its (precision, recall) arrays."""
    categories: list[int]
    iou_thresholds: np.ndarray
    ap: np.ndarray
    curves: dict

    @property
    def map(self) -> float:
        """COCO's mAP: the mean over categories with ground truth and over IoU thresholds."""
        return float(np.nanmean(self.ap))

    def at(self, iou_threshold: float) -> float:
        """The mean AP over categories at one IoU threshold (for example AP50 at 0.5)."""
        t = int(np.argmin(np.abs(self.iou_thresholds - iou_threshold)))
        if abs(self.iou_thresholds[t] - iou_threshold) > 1e-9:
            raise ValueError(f"{iou_threshold} is not one of the evaluated IoU thresholds")
        return float(np.nanmean(self.ap[:, t]))


def _check(name, entry, n_fields):
    if not isinstance(entry, (tuple, list)) or len(entry) != n_fields:
        raise ValueError(f"{name} must be a tuple of {n_fields} tensors")
    check_boxes(entry[0], name + " boxes")
    for k, t in enumerate(entry[1:], start=1):
        if t.shape != (len(entry[0]),):
            raise ValueError(f"{name}: field {k} has shape {tuple(t.shape)}; it needs one value "
                             f"per box, [{len(entry[0])}]")


def evaluate(ground_truth: dict, detections: dict, iou_thresholds=COCO_IOU_THRESHOLDS,
             max_dets: int = 100, categories: list[int] | None = None) -> APResult:
    """AP per category and IoU threshold, COCOeval's rules (area range "all", no crowd
    annotations). ``ground_truth`` ``{image_id: (boxes [G, 4], labels [G])}``, ``detections``
    ``{image_id: (boxes [D, 4], scores [D], labels [D])}``; boxes in (x1, y1, x2, y2). An image
    missing from ``detections`` has none; a detection on an image without ground truth entry
    is an error (it would be silently ignored by COCOeval)."""
    for image_id, entry in ground_truth.items():
        _check(f"ground_truth[{image_id!r}]", entry, 2)
    for image_id, entry in detections.items():
        if image_id not in ground_truth:
            raise ValueError(f"detections for image {image_id!r}, which has no ground-truth entry "
                             "(give it an empty one if it has no objects)")
        _check(f"detections[{image_id!r}]", entry, 3)
    if categories is None:
        labels = [int(c) for _, l in ground_truth.values() for c in l.tolist()]
        categories = sorted(set(labels))
    thresholds = np.asarray(iou_thresholds, dtype=float)
    ap = np.full((len(categories), len(thresholds)), np.nan)
    curves = {}
    for ci, cat in enumerate(categories):
        n_gt = sum(int((l == cat).sum()) for _, l in ground_truth.values())
        if n_gt == 0:
            continue
        for ti, thr in enumerate(thresholds):
            all_scores, all_tp = [], []
            for image_id in sorted(ground_truth):            # COCOeval's order of images
                gt_b, gt_l = ground_truth[image_id]
                if image_id not in detections:
                    continue
                d_b, d_s, d_l = detections[image_id]
                mine = d_l == cat
                s, tp = match_detections(d_b[mine], d_s[mine], gt_b[gt_l == cat], thr, max_dets)
                all_scores.append(s)
                all_tp.append(tp)
            scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
            tp = np.concatenate(all_tp) if all_tp else np.zeros(0, dtype=bool)
            if len(scores) == 0:
                ap[ci, ti] = 0.0
                continue
            precision, recall = precision_recall(scores, tp, n_gt)
            curves[(ci, ti)] = (precision, recall)
            ap[ci, ti] = interpolated_ap(precision, recall)
    return APResult(list(categories), thresholds, ap, curves)


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


def cocoeval(coco, detections: dict, iou_type: str = "bbox", masks: dict | None = None):
    """Run pycocotools' ``COCOeval`` on ``detections`` against the ground truth in ``coco`` (a
    ``pycocotools.coco.COCO``, such as ``SceneSet.coco``), quietly; returns the evaluator
    (``.stats[0]`` is COCO's mAP, ``[1]`` AP50, ``[2]`` AP75). Only the images in
    ``detections`` are evaluated. With no detection at all (pycocotools cannot load an empty
    result list) every AP is 0, and a stand-in with ``stats`` all zero is returned."""
    import contextlib
    import io

    from pycocotools.cocoeval import COCOeval

    results = to_coco_results(detections, masks)
    if not results:        # pycocotools cannot load an empty result list; every AP is then 0
        return SimpleNamespace(stats=np.zeros(12))
    with contextlib.redirect_stdout(io.StringIO()):
        dt = coco.loadRes(results)
        ev = COCOeval(coco, dt, iou_type)
        ev.params.imgIds = sorted(int(i) for i in detections)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev
