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


DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64,
          torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]


def integer_boxes(n, size, generator):
    xy = torch.randint(0, size, (n, 2), generator=generator)
    wh = torch.randint(0, size // 2 + 1, (n, 2), generator=generator)
    return torch.cat([xy, xy + wh], dim=1)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_area_and_iou_match_torchvision_at_every_dtype(dtype):
    """torchvision widens half and narrow integer boxes before multiplying; so must we.
    Coordinates are whole numbers, exact in every dtype (int8 holds up to 127). Two empty boxes
    have IoU 0 here and 0/0 = NaN in torchvision. For uint8 the reference is torchvision on the
    same boxes as int32: torchvision subtracts uint8 corners before widening them, so a
    disjoint pair wraps around (5 - 10 = 251) and gets a negative IoU."""
    g = torch.Generator().manual_seed(5)
    size = 60 if dtype in (torch.int8, torch.uint8) else 400
    a, b = integer_boxes(40, size, g).to(dtype), integer_boxes(30, size, g).to(dtype)
    assert torch.equal(B.box_area(a), tvops.box_area(a))
    got = B.box_iou(a, b)
    ref = tvops.box_iou(a.int(), b.int()) if dtype == torch.uint8 else tvops.box_iou(a, b)
    assert got.dtype == ref.dtype
    assert torch.allclose(got, ref.nan_to_num(0.0), atol=1e-6, rtol=0)


def test_large_half_and_narrow_integer_boxes_do_not_overflow():
    two = torch.tensor([[0, 0, 200, 200], [1, 1, 201, 201]])
    half = B.box_iou(two.half(), two.half())                   # areas 40,000 + 40,000 > 65,504
    assert half[0, 1].item() == pytest.approx(tvops.box_iou(two, two)[0, 1].item(), abs=1e-6)
    assert half[0, 1] > 0.98
    assert B.box_area(torch.tensor([[0, 0, 100, 100]], dtype=torch.int8)).item() == 10_000
    keep = B.nms(two.half(), torch.tensor([0.9, 0.8]), 0.5)
    assert keep.tolist() == [0]
    empty = torch.tensor([[3, 3, 3, 9]], dtype=torch.int16)
    assert B.box_iou(empty, empty).item() == 0 and tvops.box_iou(empty, empty).isnan().item()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.6, 0.7])
def test_nms_at_every_dtype_matches_torchvision(dtype, threshold):
    """torchvision's CPU kernel takes float32 and float64 only; half and integer boxes are
    compared with its answer on the same boxes in float32, which is what ours computes. Integer
    coordinates make many IoUs land exactly on a threshold such as 0.3, where float32's
    rounding of the threshold would change the answer."""
    g = torch.Generator().manual_seed(6)
    size = 60 if dtype in (torch.int8, torch.uint8) else 100
    bx = integer_boxes(200, size, g).to(dtype)
    scores = torch.rand(200, generator=g)
    tv_boxes = bx.double() if dtype == torch.float64 else bx.float()
    ref = tvops.nms(tv_boxes, scores.to(tv_boxes.dtype), threshold)
    assert torch.equal(B.nms(bx, scores, threshold), ref)
    classes = torch.randint(0, 3, (200,), generator=g)
    assert torch.equal(B.batched_nms(bx, scores, classes, threshold),
                       tvops.batched_nms(tv_boxes, scores.to(tv_boxes.dtype), classes, threshold))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.5, 0.6, 0.7, 0.9])
def test_nms_compares_with_the_threshold_in_double(dtype, threshold):
    """Boxes whose IoU is the threshold's fraction (3/10 for 0.3): in float64 it equals the
    threshold, in float32 it is the threshold rounded, up for 0.1, 0.3 and 0.6, down for 0.7
    and 0.9, exact for 0.5. The verdict must follow torchvision's in each dtype."""
    import fractions
    iou = fractions.Fraction(threshold).limit_denominator(10)
    pair = torch.tensor([[0, 0, iou.denominator, 1], [0, 0, iou.numerator, 1]], dtype=dtype)
    scores = torch.tensor([0.9, 0.8], dtype=dtype)
    assert torch.equal(B.nms(pair, scores, threshold), tvops.nms(pair, scores, threshold))


def test_boxes_of_no_number_type_are_refused():
    with pytest.raises(ValueError, match="real numbers"):
        B.box_area(torch.ones(2, 4, dtype=torch.bool))
