"""dlcv.boxes against torchvision.ops: IoU, NMS, batched NMS, the box coding (torchvision's
BoxCoder), RoI Pool and RoI Align with their options; and clear errors for malformed boxes."""
import pytest
import torch
import torchvision.ops as tvops
from torchvision.models.detection._utils import BoxCoder

from dlcv import boxes as B


def random_boxes(n, size=100.0, generator=None, dtype=torch.float64):
    xy = torch.rand(n, 2, generator=generator, dtype=dtype) * size
    wh = torch.rand(n, 2, generator=generator, dtype=dtype) * size / 2
    return torch.cat([xy, xy + wh], dim=1)


def test_iou_matches_torchvision_including_edge_cases():
    g = torch.Generator().manual_seed(0)
    a, b = random_boxes(30, generator=g), random_boxes(20, generator=g)
    b[0] = a[0]                                   # identical: IoU 1
    b[1] = torch.tensor([200.0, 200, 210, 210])   # disjoint: IoU 0
    b[2] = torch.tensor([5.0, 5, 5, 9])           # zero width
    got, ref = B.box_iou(a, b), tvops.box_iou(a, b)
    assert torch.allclose(got, ref, atol=1e-12)
    assert got[0, 0] == 1 and (got[:, 1] == 0).all()


def test_iou_by_hand():
    a = torch.tensor([[0.0, 0, 2, 2]])
    b = torch.tensor([[1.0, 1, 3, 3]])            # overlap 1, union 4 + 4 - 1 = 7
    assert B.box_iou(a, b).item() == pytest.approx(1 / 7)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_matches_torchvision(threshold):
    g = torch.Generator().manual_seed(1)
    bx = random_boxes(200, size=60, generator=g, dtype=torch.float32)
    scores = torch.rand(200, generator=g)
    assert torch.equal(B.nms(bx, scores, threshold), tvops.nms(bx, scores, threshold))


def test_batched_nms_matches_torchvision_and_keeps_classes_apart():
    g = torch.Generator().manual_seed(2)
    bx = random_boxes(150, size=50, generator=g, dtype=torch.float32)
    scores, classes = torch.rand(150, generator=g), torch.randint(0, 4, (150,), generator=g)
    assert torch.equal(B.batched_nms(bx, scores, classes, 0.5),
                       tvops.batched_nms(bx, scores, classes, 0.5))
    same = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10]])
    assert len(B.batched_nms(same, torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), 0.5)) == 2
    assert len(B.nms(same, torch.tensor([0.9, 0.8]), 0.5)) == 1


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_box_coding_matches_boxcoder_and_inverts(weights):
    g = torch.Generator().manual_seed(3)
    proposals = random_boxes(40, generator=g) + torch.tensor([0, 0, 1.0, 1.0], dtype=torch.float64)
    targets = random_boxes(40, generator=g)
    coder = BoxCoder(weights)
    t = B.encode_boxes(targets, proposals, weights)
    assert torch.allclose(t, coder.encode_single(targets, proposals), atol=1e-9)
    assert torch.allclose(B.decode_boxes(t, proposals, weights), targets, atol=1e-9)
    assert torch.allclose(B.decode_boxes(t, proposals, weights),
                          coder.decode_single(t, proposals), atol=1e-9)


def test_decode_clamps_wild_sizes():
    p = torch.tensor([[0.0, 0, 10, 10]])
    out = B.decode_boxes(torch.tensor([[0.0, 0, 100, 100]]), p)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("scale,size", [(1.0, 2), (0.5, 3), (0.25, 7)])
def test_roi_pool_matches_torchvision(scale, size):
    g = torch.Generator().manual_seed(4)
    feats = torch.randn(2, 3, 16, 20, generator=g)
    bx = random_boxes(12, size=60, generator=g, dtype=torch.float32)
    rois = torch.cat([torch.randint(0, 2, (12, 1), generator=g).float(), bx], dim=1)
    rois[0, 1:] = torch.tensor([-10.0, -10, 5, 5])          # partly outside the map
    got = B.roi_pool(feats, rois, size, spatial_scale=scale)
    ref = tvops.roi_pool(feats, rois, size, spatial_scale=scale)
    assert torch.allclose(got, ref, atol=1e-6)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [2, 1, 0, -1])
def test_roi_align_matches_torchvision(aligned, sampling_ratio):
    g = torch.Generator().manual_seed(5)
    feats = torch.randn(2, 3, 12, 14, generator=g, dtype=torch.float64)
    bx = random_boxes(10, size=50, generator=g)
    rois = torch.cat([torch.randint(0, 2, (10, 1), generator=g).double(), bx], dim=1)
    rois[0, 1:] = torch.tensor([-8.0, 40, 3, 60])           # partly outside the map
    rois[1, 1:] = torch.tensor([10.0, 10, 10.5, 10.2])      # smaller than a cell
    kw = dict(spatial_scale=0.25, sampling_ratio=sampling_ratio, aligned=aligned)
    got = B.roi_align(feats, rois, 4, **kw)
    ref = tvops.roi_align(feats, rois, 4, **kw)
    assert torch.allclose(got, ref, atol=1e-10)


def test_malformed_boxes_get_clear_errors():
    with pytest.raises(ValueError, match=r"boxes\[1\].*x2 < x1"):
        B.box_iou(torch.tensor([[0.0, 0, 1, 1], [5.0, 0, 2, 1]]), torch.zeros(0, 4))
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        B.box_area(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="NaN"):
        B.box_area(torch.tensor([[0.0, 0, float("nan"), 1]]))
    with pytest.raises(ValueError, match="scores"):
        B.nms(torch.zeros(3, 4), torch.zeros(2), 0.5)
    with pytest.raises(ValueError, match="batch index"):
        B.roi_align(torch.zeros(1, 1, 4, 4), torch.tensor([[1.0, 0, 0, 2, 2]]), 2)
    with pytest.raises(ValueError, match=r"\[K, 5\]"):
        B.roi_pool(torch.zeros(1, 1, 4, 4), torch.zeros(2, 4), 2)
    with pytest.raises(ValueError, match="positive width"):
        B.encode_boxes(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([[0.0, 0, 0, 1]]))


def test_conversions_roundtrip():
    xywh = torch.tensor([[3.0, 4, 5, 6]])
    assert torch.equal(B.xywh_to_xyxy(xywh), torch.tensor([[3.0, 4, 8, 10]]))
    assert torch.equal(B.xyxy_to_xywh(B.xywh_to_xyxy(xywh)), xywh)
