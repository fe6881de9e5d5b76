"""dlcv.detection_eval against pycocotools' COCOeval on random scenes: the same mAP, AP50 and
AP75 to 1e-6, and the pieces (matching, the interpolated AP) by hand."""
import contextlib
import json
import io

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from dlcv import detection_eval as E
from dlcv.boxes import xyxy_to_xywh


def random_scene_set(seed, n_images=25, n_cats=3):
    """Ground truth and noisy detections (jittered copies, misses, false alarms, ties)."""
    g = torch.Generator().manual_seed(seed)
    gt, dets = {}, {}
    for img in range(1, n_images + 1):
        n = int(torch.randint(0, 6, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 80
        wh = 5 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 30
        boxes = torch.cat([xy, xy + wh], 1)
        labels = torch.randint(1, n_cats + 1, (n,), generator=g)
        gt[img] = (boxes, labels)
        keep = torch.rand(n, generator=g) > 0.2                      # some objects are missed
        jitter = torch.randn(n, 4, generator=g, dtype=torch.float64) * 3
        d_boxes = (boxes + jitter)[keep]
        d_labels = labels[keep].clone()
        flip = torch.rand(len(d_labels), generator=g) < 0.1          # some wrong classes
        d_labels[flip] = torch.randint(1, n_cats + 1, (int(flip.sum()),), generator=g)
        m = int(torch.randint(0, 4, (1,), generator=g))             # false alarms
        fxy = torch.rand(m, 2, generator=g, dtype=torch.float64) * 80
        d_boxes = torch.cat([d_boxes, torch.cat([fxy, fxy + 10], 1)])
        d_boxes = torch.minimum(d_boxes, torch.full_like(d_boxes, 1e9))
        d_boxes[:, 2:] = torch.maximum(d_boxes[:, 2:], d_boxes[:, :2])
        d_labels = torch.cat([d_labels, torch.randint(1, n_cats + 1, (m,), generator=g)])
        scores = torch.round(torch.rand(len(d_boxes), generator=g, dtype=torch.float64) * 20) / 20
        dets[img] = (d_boxes, scores, d_labels)                      # rounded scores: ties
    return gt, dets


def cocoeval_stats(gt, dets, n_cats=3):
    images, anns, results = [], [], []
    for img, (boxes, labels) in gt.items():
        images.append({"id": img, "width": 128, "height": 128})
        for b, l in zip(xyxy_to_xywh(boxes).tolist(), labels.tolist()):
            anns.append({"id": len(anns) + 1, "image_id": img, "category_id": l, "bbox": b,
                         "area": b[2] * b[3], "iscrowd": 0})
    for img, (boxes, scores, labels) in dets.items():
        for b, s, l in zip(xyxy_to_xywh(boxes).tolist(), scores.tolist(), labels.tolist()):
            results.append({"image_id": img, "category_id": l, "bbox": b, "score": s})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"info": {}, "images": images, "annotations": anns,
                        "categories": [{"id": c, "name": str(c)} for c in range(1, n_cats + 1)]}
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_matches_cocoeval(seed):
    gt, dets = random_scene_set(seed)
    ours = E.evaluate(gt, dets)
    ref = cocoeval_stats(gt, dets)
    assert abs(ours.map - ref[0]) < 1e-6
    assert abs(ours.at(0.5) - ref[1]) < 1e-6
    assert abs(ours.at(0.75) - ref[2]) < 1e-6


def test_matching_by_hand():
    gt = torch.tensor([[0.0, 0, 10, 10], [20.0, 20, 30, 30]])
    det = torch.tensor([[0.0, 0, 10, 10], [1.0, 1, 10, 10], [20.0, 20, 30, 30], [50.0, 50, 60, 60]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    s, tp = E.match_detections(det, scores, gt, 0.5)
    # order by score: the false alarm (0.95), the exact box (0.9: TP), its duplicate (0.8: FP,
    # its ground truth is taken), the second box (0.7: TP)
    assert s.tolist() == pytest.approx([0.95, 0.9, 0.8, 0.7])
    assert tp.tolist() == [False, True, False, True]


def test_interpolated_ap_by_hand():
    # precision 1/2 at recall 0.5, then 2/3 at recall 1: the envelope is 2/3 everywhere
    assert E.interpolated_ap(np.array([0.0, 0.5, 2 / 3]), np.array([0.0, 0.5, 1.0])) == \
        pytest.approx(2 / 3)
    # recall stops at 0.5: levels above read 0
    ap = E.interpolated_ap(np.array([1.0]), np.array([0.5]))
    assert ap == pytest.approx(51 / 101)


def test_perfect_and_empty_detections():
    gt = {1: (torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([1]))}
    perfect = {1: (torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([0.9]), torch.tensor([1]))}
    assert E.evaluate(gt, perfect).map == pytest.approx(1.0)
    assert E.evaluate(gt, {}).map == 0.0


def test_bad_input_is_named():
    gt = {1: (torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([1]))}
    with pytest.raises(ValueError, match="no ground-truth entry"):
        E.evaluate(gt, {2: (torch.zeros(0, 4), torch.zeros(0), torch.zeros(0))})
    with pytest.raises(ValueError, match=r"detections\[1\].*one value per box"):
        E.evaluate(gt, {1: (torch.zeros(2, 4), torch.zeros(3), torch.zeros(2))})
    with pytest.raises(ValueError, match="x2 < x1"):
        E.evaluate({1: (torch.tensor([[5.0, 0, 1, 1]]), torch.tensor([1]))}, {})


def test_cocoeval_with_no_detections_gives_zero():
    gt = {1: (torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([1]))}
    from pycocotools.coco import COCO
    coco = COCO()
    coco.dataset = {"info": {}, "images": [{"id": 1, "width": 20, "height": 20}],
                    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10],
                                     "area": 100, "iscrowd": 0}],
                    "categories": [{"id": 1, "name": "a"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    empty = {1: (torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64))}
    assert E.cocoeval(coco, empty).stats[0] == 0 and E.evaluate(gt, empty).map == 0
    hit = {1: (torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([0.9]), torch.tensor([1]))}
    assert E.cocoeval(coco, hit).stats[0] == pytest.approx(1.0)


def coco_with_crowds_and_sizes(folder, seed, n_images=30, n_cats=3, size=320):
    """A COCO folder (PNG images and instances JSON) whose objects span COCO's three area
    ranges, with mask areas below their boxes' (as COCO's are) and crowd regions, and noisy
    detections: jittered copies of objects and of crowds (several inside one crowd), false
    alarms of every size, tied scores. Returns (annotation file, detections)."""
    from PIL import Image
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.rand(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    images, anns, dets = [], [], {}
    (folder / "images").mkdir()
    for img in range(1, n_images + 1):
        images.append({"id": img, "file_name": f"{img}.png", "width": size, "height": size})
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).resize((size, size)).save(
            folder / "images" / f"{img}.png")
        boxes, labels = [], []
        for k in range(int(torch.randint(0, 7, (1,), generator=g))):
            side = torch.exp(np.log(6) + rand(2) * np.log(250 / 6))   # 6 to 250 px
            xy = rand(2) * (size - side)
            crowd = bool(rand(1) < 0.12)
            box = torch.cat([xy, xy + side])
            label = int(torch.randint(1, n_cats + 1, (1,), generator=g))
            area = float(side.prod() * (0.4 + 0.6 * rand(1)))
            anns.append({"id": len(anns) + 1, "image_id": img, "category_id": label,
                         "bbox": xyxy_to_xywh(box[None])[0].tolist(), "area": area,
                         "iscrowd": int(crowd)})
            copies = 3 if crowd else int(rand(1) > 0.2)
            for _ in range(copies):
                inner = box + torch.randn(4, generator=g, dtype=torch.float64) * side.repeat(2) * 0.08
                if crowd:                 # a detection of one member of the crowd
                    inner = torch.cat([xy, xy + side * (0.2 + 0.3 * rand(2))]) + \
                        (rand(2) * side * 0.4).repeat(2)
                boxes.append(inner)
                labels.append(label if rand(1) > 0.1 else int(torch.randint(1, n_cats + 1, (1,),
                                                                            generator=g)))
        for _ in range(int(torch.randint(0, 4, (1,), generator=g))):   # false alarms
            side = torch.exp(np.log(6) + rand(2) * np.log(250 / 6))
            xy = rand(2) * (size - side)
            boxes.append(torch.cat([xy, xy + side]))
            labels.append(int(torch.randint(1, n_cats + 1, (1,), generator=g)))
        if img % 7 == 0:
            continue                      # an image without any detection
        b = torch.stack(boxes) if boxes else torch.zeros(0, 4, dtype=torch.float64)
        b[:, 2:] = torch.maximum(b[:, 2:], b[:, :2])
        scores = torch.round(rand(len(b)) * 20) / 20
        dets[img] = (b, scores, torch.tensor(labels, dtype=torch.int64))
    ann = folder / "instances.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories":
                               [{"id": c, "name": str(c)} for c in range(1, n_cats + 1)]}))
    return ann, dets


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_summary_with_crowds_and_area_ranges_matches_cocoeval(tmp_path, seed):
    """read_coco keeps crowd regions apart and the annotations' areas; summarize gives
    COCOeval's twelve numbers from its targets (to 1e-9: the same arithmetic)."""
    from dlcv.scenes import read_coco
    ann, dets = coco_with_crowds_and_sizes(tmp_path, seed)
    scene_set = read_coco(tmp_path / "images", ann)
    raw = json.loads(ann.read_text())
    assert sum(len(t["crowd_boxes"]) for t in scene_set.targets) == \
        sum(a["iscrowd"] for a in raw["annotations"]) > 0
    assert "masks" not in scene_set.targets[0]           # a box-only set: no segmentations
    areas = [a["area"] for a in raw["annotations"] if not a["iscrowd"]]
    assert min(areas) < 32 ** 2 and max(areas) > 96 ** 2
    truth = dict(zip(scene_set.image_ids, scene_set.targets))
    ours = E.summarize(truth, dets)
    ref = E.cocoeval(scene_set.coco, dets).stats
    assert np.allclose(np.nan_to_num(ours.stats, nan=-1.0), ref, atol=1e-9, rtol=0), \
        np.c_[ours.stats, ref]
    # ignoring the crowds (counting them as ordinary objects) changes the answer
    as_objects = {i: (torch.cat([t["boxes"], t["crowd_boxes"]]),
                      torch.cat([t["labels"], t["crowd_labels"]])) for i, t in truth.items()}
    assert abs(E.evaluate(as_objects, dets).map - ref[0]) > 1e-3


def test_images_without_detections_count_their_objects_as_missed(tmp_path):
    from dlcv.scenes import read_coco
    ann, dets = coco_with_crowds_and_sizes(tmp_path, 5)
    scene_set = read_coco(tmp_path / "images", ann)
    truth = dict(zip(scene_set.image_ids, scene_set.targets))
    assert len(dets) < len(truth)
    every = E.cocoeval(scene_set.coco, dets).stats[0]
    only_detected = E.cocoeval(scene_set.coco, dets, image_ids=list(dets)).stats[0]
    assert every < only_detected
    assert E.evaluate(truth, dets).map == pytest.approx(every, abs=1e-9)
    detected = {i: truth[i] for i in dets}
    assert E.evaluate(detected, dets).map == pytest.approx(only_detected, abs=1e-9)
    # read_coco's max_images: COCOeval then scores just the images read
    few = read_coco(tmp_path / "images", ann, max_images=10)
    assert few.coco.getImgIds() == few.image_ids == list(range(1, 11))
    few_dets = {i: d for i, d in dets.items() if i <= 10}
    assert E.cocoeval(few.coco, few_dets).stats[0] == pytest.approx(
        E.evaluate(dict(zip(few.image_ids, few.targets)), few_dets).map, abs=1e-9)


def test_area_range_and_summary_input_errors_are_named():
    gt = {1: (torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([1]))}
    with pytest.raises(ValueError, match="unknown area range 'tiny'"):
        E.evaluate(gt, {}, area_range="tiny")
    with pytest.raises(ValueError, match="has no labels"):
        E.evaluate({1: {"boxes": torch.zeros(0, 4)}}, {})
    with pytest.raises(ValueError, match="area is negative"):
        E.evaluate({1: {"boxes": gt[1][0], "labels": gt[1][1], "area": torch.tensor([-1.0])}}, {})
    s = E.summarize(gt, {})                 # one small object, missed: no medium or large
    assert s.ap == s.ap_small == s.ar100 == 0 and np.isnan(s.ap_medium) and np.isnan(s.ar_large)
