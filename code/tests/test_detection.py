"""dlcv.detection: anchors and matching against torchvision's AnchorGenerator and Matcher, the
loss on a perfect and on a wrong prediction, and detect's output."""
import torch
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from dlcv import detection as D
from dlcv.boxes import encode_boxes


def test_anchors_match_torchvision():
    gen = AnchorGenerator(sizes=((16, 32, 64),), aspect_ratios=((0.5, 1.0, 2.0),))
    images = ImageList(torch.zeros(1, 3, 128, 96), [(128, 96)])
    feature = torch.zeros(1, 8, 16, 12)
    ref = gen(images, [feature])[0]
    ours = D.make_anchors((16, 12), 8, (16, 32, 64), (0.5, 1.0, 2.0))
    assert torch.equal(ours, ref)


def test_matching_matches_torchvision():
    g = torch.Generator().manual_seed(0)
    anchors = D.make_anchors((16, 16), 8)
    for _ in range(5):
        xy = torch.rand(4, 2, generator=g) * 90
        gt = torch.cat([xy, xy + 8 + torch.rand(4, 2, generator=g) * 40], 1)
        ref = Matcher(0.5, 0.4, allow_low_quality_matches=True)(
            __import__("torchvision").ops.box_iou(gt, anchors))
        ours = D.match_anchors(anchors, gt)
        assert torch.equal(ours, ref)          # -1 background and -2 ignore, as torchvision
    assert (D.match_anchors(anchors, torch.zeros(0, 4)) == D.BACKGROUND).all()


def test_loss_is_small_for_the_right_answer_and_large_for_a_wrong_one():
    model = D.SingleStageDetector(num_classes=3, width=16)
    anchors = model.anchors(64, 64)
    target = {"boxes": torch.tensor([[10.0, 12, 40, 50]]), "labels": torch.tensor([2])}
    matches = D.match_anchors(anchors, target["boxes"])
    pos = matches >= 0
    logits = torch.full((1, len(anchors), 3), -8.0)
    logits[0, pos, 1] = 8.0                     # category 2 is index 1
    transforms = torch.zeros(1, len(anchors), 4)
    transforms[0, pos] = encode_boxes(target["boxes"].expand(int(pos.sum()), 4), anchors[pos])
    right = D.detection_loss(logits, transforms, anchors, [target])
    wrong = D.detection_loss(-logits, torch.zeros_like(transforms), anchors, [target])
    assert right["classification"] < 1e-3 and right["box"] < 1e-6
    assert wrong["classification"] > 1.0 and wrong["box"] > 0.01


def test_detect_returns_category_ids_and_respects_nms():
    torch.manual_seed(0)
    model = D.SingleStageDetector(num_classes=4, width=16)
    out = D.detect(model, torch.rand(2, 3, 64, 64), score_threshold=0.0, nms_iou=0.5,
                   max_detections=20)
    assert len(out) == 2
    for boxes, scores, labels in out:
        assert boxes.shape[1] == 4 and len(boxes) == len(scores) == len(labels) <= 20
        assert labels.min() >= 1 and labels.max() <= 4
        assert (boxes[:, 2:] >= boxes[:, :2]).all() and boxes.min() >= 0 and boxes.max() <= 64
        from dlcv.boxes import box_iou
        for c in labels.unique():
            iou = box_iou(boxes[labels == c], boxes[labels == c])
            assert (iou - torch.eye(len(iou))).max() <= 0.5 + 1e-6


def test_training_reduces_the_loss_on_one_scene():
    torch.manual_seed(0)
    model = D.SingleStageDetector(num_classes=2, width=16)
    images = torch.zeros(4, 3, 64, 64, dtype=torch.uint8)
    images[:, :, 10:40, 20:36] = 255
    targets = [{"boxes": torch.tensor([[20.0, 10, 36, 40]]), "labels": torch.tensor([1])}] * 4
    log = D.train_detector(model, images, targets, epochs=60, batch_size=4, lr=3e-3, flip=False,
                           log_every=5)
    assert log[-1]["classification"] < 0.5 * log[0]["classification"]
    boxes, scores, labels = D.detect(model, images[:1].float() / 255)[0]
    from dlcv.boxes import box_iou
    assert labels[0] == 1 and box_iou(boxes[:1], targets[0]["boxes"]).item() > 0.7


def test_two_stages_on_a_toy_scene():
    torch.manual_seed(0)
    images = torch.zeros(4, 3, 64, 64, dtype=torch.uint8)
    images[:, 0, 10:40, 20:36] = 255                       # a red object, category 1
    images[:, 1, 44:60, 4:30] = 255                        # a green one, category 2
    targets = [{"boxes": torch.tensor([[20.0, 10, 36, 40], [4.0, 44, 30, 60]]),
                "labels": torch.tensor([1, 2])}] * 4
    model = D.SingleStageDetector(num_classes=2, width=16)
    D.train_detector(model, images, targets, epochs=40, batch_size=4, lr=3e-3, flip=False)
    x = images.float() / 255
    assert model.features(x).shape == (4, 16, 8, 8)
    proposals = D.propose(model, x, keep=10)
    assert all(len(p) <= 10 and p.shape[1] == 4 for p in proposals)
    from dlcv.boxes import box_iou
    assert (box_iou(targets[0]["boxes"], proposals[0]).max(1).values > 0.5).all()
    head = D.SecondStage(channels=16, num_classes=2, hidden=64)
    log = D.train_second_stage(head, model, images, targets, epochs=30, batch_size=4, lr=3e-3)
    assert log[-1]["classification"] < log[0]["classification"]
    boxes, scores, labels = D.detect_two_stage(head, model, x[:1], score_threshold=0.3)[0]
    for c in (1, 2):
        mine = labels == c
        assert mine.any() and box_iou(boxes[mine][:1], targets[0]["boxes"][c - 1:c]).item() > 0.5
