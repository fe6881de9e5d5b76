"""dlcv.segmentation against PyTorch and scikit-learn: max unpooling (and the slide's 4 x 4
example), transposed convolution with every option (and the slide's 3 x 3 stride-2 case),
the checkerboard of overlaps, and the confusion matrix and IoU."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import jaccard_score
from torch import nn

from dlcv import segmentation as S


def test_max_unpool_matches_torch_and_the_slide():
    x = torch.tensor([[1.0, 2, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]])[None, None]
    pooled, idx = F.max_pool2d(x, 2, return_indices=True)
    assert pooled[0, 0].tolist() == [[5, 6], [7, 8]]
    rest = torch.tensor([[1.0, 2], [3, 4]])[None, None]   # what "the rest of the net" returns
    ours = S.max_unpool2d(rest, idx, (4, 4))
    assert ours[0, 0].tolist() == [[0, 0, 2, 0], [0, 1, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]]
    assert torch.equal(ours, nn.MaxUnpool2d(2)(rest, idx))
    g = torch.Generator().manual_seed(0)
    big = torch.randn(2, 3, 8, 10, generator=g)
    p, i = F.max_pool2d(big, 2, return_indices=True)
    assert torch.equal(S.max_unpool2d(p, i, (8, 10)), F.max_unpool2d(p, i, 2, output_size=(8, 10)))
    with pytest.raises(ValueError, match="outside"):
        S.max_unpool2d(p, i + 1000, (8, 10))


@pytest.mark.parametrize("kw", [dict(), dict(stride=2), dict(stride=2, padding=1),
                                dict(stride=2, padding=1, output_padding=1),
                                dict(stride=3, padding=2, dilation=2), dict(dilation=3)])
def test_conv_transpose_matches_torch(kw):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64)
    w = torch.randn(3, 4, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    ref = F.conv_transpose2d(x, w, b, **kw)
    ours = S.conv_transpose2d(x, w, b, **kw)
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, atol=1e-12)
    assert ref.shape[-2] == S.transposed_output_size(5, 3, kw.get("stride", 1), kw.get("padding", 0),
                                                     kw.get("output_padding", 0), kw.get("dilation", 1))


def test_the_slides_transposed_convolution():
    # 3 x 3 kernel, stride 2, 2 x 2 input: 5 x 5, and trimming one row and column gives 4 x 4
    assert S.transposed_output_size(2, 3, stride=2) == 5
    x, w = torch.ones(1, 1, 2, 2), torch.ones(1, 1, 3, 3)
    full = S.conv_transpose2d(x, w, stride=2)
    assert full.shape[-2:] == (5, 5) and full[0, 0, 2, 2] == 4      # the centre gets all four
    assert S.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1).shape[-2:] == (4, 4)


def test_overlap_counts_show_the_checkerboard():
    even = S.overlap_counts(6, 4, 2, padding=1)    # kernel a multiple of the stride
    odd = S.overlap_counts(6, 3, 2, padding=1)
    assert even[2:-2, 2:-2].unique().tolist() == [4.0]
    assert sorted(odd[2:-2, 2:-2].unique().tolist()) == [1.0, 2.0, 4.0]


def test_confusion_and_iou_match_sklearn():
    g = torch.Generator().manual_seed(2)
    target = torch.randint(0, 5, (3, 16, 16), generator=g)
    pred = torch.where(torch.rand(3, 16, 16, generator=g) < 0.7, target,
                       torch.randint(0, 5, (3, 16, 16), generator=g))
    cm = S.confusion_matrix(pred, target, 5)
    assert np.array_equal(cm.numpy(), sk_confusion(target.flatten(), pred.flatten(), labels=range(5)))
    ref = jaccard_score(target.flatten(), pred.flatten(), average=None, labels=range(5))
    assert np.allclose(S.iou_per_class(cm).numpy(), ref)
    assert S.mean_iou(pred, target, 5) == pytest.approx(ref.mean())
    absent = S.iou_per_class(S.confusion_matrix(torch.zeros(4), torch.zeros(4), 3))
    assert absent[0] == 1 and torch.isnan(absent[1:]).all()
    with pytest.raises(ValueError, match="outside"):
        S.confusion_matrix(torch.tensor([5]), torch.tensor([0]), 3)
    ign = S.confusion_matrix(torch.tensor([1, 2]), torch.tensor([255, 2]), 3, ignore_index=255)
    assert ign.sum() == 1
