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

from dlcv import instances as I
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


def toy_scenes(n=8, size=32):
    """Squares of two categories on a dark background, with masks, boxes and extreme points."""
    g = torch.Generator().manual_seed(3)
    images = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    targets = []
    for i in range(n):
        x, y = (int(v) for v in torch.randint(2, size - 14, (2,), generator=g))
        label = 1 + i % 2
        images[i, label - 1, y:y + 12, x:x + 12] = 255
        mask = torch.zeros(1, size, size, dtype=torch.bool)
        mask[0, y:y + 12, x:x + 12] = True
        kps = torch.tensor([[[x + 6.5, y + 0.5, 2], [x + 6.5, y + 11.5, 2], [x + 0.5, y + 6.5, 2],
                             [x + 11.5, y + 6.5, 2]]])
        targets.append({"boxes": torch.tensor([[x, y, x + 12, y + 12]], dtype=torch.float32),
                        "labels": torch.tensor([label]), "masks": mask, "keypoints": kps})
    return images, targets


def test_segmentation_net_shapes_and_errors():
    for skips in (True, False):
        net = S.SegmentationNet(num_classes=5, width=8, skips=skips)
        assert net(torch.rand(2, 3, 32, 24)).shape == (2, 5, 32, 24)
        assert net.features(torch.rand(1, 3, 16, 16)).shape == (1, 8, 16, 16)
    with pytest.raises(ValueError, match="multiples of 8"):
        S.SegmentationNet(3, width=8)(torch.rand(1, 3, 30, 32))
    # stride 2: half-resolution features, full-resolution scores
    half = S.SegmentationNet(num_classes=5, width=8, stride=2)
    assert half.features(torch.rand(1, 3, 32, 48)).shape == (1, 8, 16, 24)
    assert half(torch.rand(2, 3, 32, 48)).shape == (2, 5, 32, 48)
    with pytest.raises(ValueError, match="multiples of 16"):
        half(torch.rand(1, 3, 24, 32))
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        S.SegmentationNet(3, stride=4)


def test_half_resolution_network_trains_and_feeds_the_heads():
    images, targets = toy_scenes()
    labels = torch.stack([S.semantic_labels(t, 32, 32) for t in targets])
    torch.manual_seed(0)
    net = S.SegmentationNet(num_classes=3, width=8, stride=2)
    losses = S.train_segmenter(net, images, labels, epochs=15, batch_size=4, lr=1e-2)
    assert losses[-1] < 0.5 * losses[0]
    assert S.mean_iou(S.predict(net, images), labels, 3) > 0.5
    # the heads cut their RoIs from the half-resolution map at spatial scale 1/2: the box
    # (0, 0, 16, 16) in image pixels is the map's top-left quarter, not the whole map
    heads = I.InstanceHeads(channels=8)
    zeros, lower = torch.zeros(1, 8, 16, 16), torch.zeros(1, 8, 16, 16)
    lower[..., 9:, :] = 1.0                       # differs below the top-left quarter's reach
    box = [torch.tensor([[0.0, 0.0, 16.0, 16.0]])]
    assert torch.equal(heads(zeros, box, 0.5)[0], heads(lower, box, 0.5)[0])
    assert not torch.equal(heads(zeros, box, 1.0)[0], heads(lower, box, 1.0)[0])
    log = I.train_instance_heads(heads, net, images, targets, epochs=10, batch_size=4, jitter=0.0)
    assert log[-1]["mask"] < log[0]["mask"] and log[-1]["keypoints"] < log[0]["keypoints"]
    masks, _, kps = I.predict_instances(heads, net, images[0], targets[0]["boxes"])
    assert masks.shape == (1, 32, 32)
    assert I.keypoint_error(kps, targets[0]["keypoints"]).nanmean() < 6


def test_semantic_labels_and_training_reduce_the_loss():
    images, targets = toy_scenes()
    labels = torch.stack([S.semantic_labels(t, 32, 32) for t in targets])
    assert labels.unique().tolist() == [0, 1, 2]
    assert (labels[0] == targets[0]["labels"][0]).sum() == 144
    torch.manual_seed(0)
    net = S.SegmentationNet(num_classes=3, width=8)
    seen = []
    losses = S.train_segmenter(net, images, labels, epochs=15, batch_size=4, lr=1e-2,
                               on_epoch=seen.append)
    assert seen == list(range(15)) and losses[-1] < 0.5 * losses[0]
    assert S.mean_iou(S.predict(net, images), labels, 3) > 0.5


def test_instance_targets_and_heads():
    images, targets = toy_scenes()
    t = targets[0]
    crops, kp_index = I.instance_targets(t["masks"], t["keypoints"], t["boxes"])
    assert crops.shape == (1, I.MASK_SIZE, I.MASK_SIZE) and crops.mean() > 0.95  # box = mask
    u, v = kp_index[0] % I.MASK_SIZE, kp_index[0] // I.MASK_SIZE
    cell = lambda offset: int(offset / 12 * I.MASK_SIZE)    # a pixel centre's cell in the grid
    assert v[0] == cell(0.5) and v[1] == cell(11.5) and u[2] == cell(0.5) and u[3] == cell(11.5)
    assert u[0] == v[2] == cell(6.5)
    far = t["keypoints"].clone()
    far[0, 0, :2] = -50
    assert I.instance_targets(t["masks"], far, t["boxes"])[1][0, 0] == -1
    torch.manual_seed(0)
    net = S.SegmentationNet(num_classes=3, width=8)
    heads = I.InstanceHeads(channels=8)
    log = I.train_instance_heads(heads, net, images, targets, epochs=10, batch_size=4, jitter=0.0)
    assert log[-1]["mask"] < log[0]["mask"] and log[-1]["keypoints"] < log[0]["keypoints"]
    masks, scores, kps = I.predict_instances(heads, net, images[0], t["boxes"])
    assert masks.shape == (1, 32, 32) and scores.shape == (1,)
    x1, y1, x2, y2 = t["boxes"][0].tolist()
    assert (kps[..., 0] >= x1).all() and (kps[..., 0] <= x2).all()
    err = I.keypoint_error(kps, torch.cat([t["keypoints"][:, :3], torch.zeros(1, 1, 3)], 1)[:, :4])
    assert torch.isnan(err[0, 3]) and not torch.isnan(err[0, :3]).any()


def test_class_weights_change_what_the_loss_counts():
    images, targets = toy_scenes(n=4)
    labels = torch.stack([S.semantic_labels(t, 32, 32) for t in targets])
    runs = []
    for weights in (None, torch.tensor([1.0, 1.0, 1.0]), torch.tensor([0.0, 1.0, 1.0])):
        torch.manual_seed(0)
        net = S.SegmentationNet(num_classes=3, width=8)
        runs.append(S.train_segmenter(net, images, labels, epochs=1, batch_size=4,
                                      class_weights=weights)[0])
    assert runs[0] == pytest.approx(runs[1])        # equal weights: plain cross-entropy
    assert runs[2] != pytest.approx(runs[0])        # background left out of the loss


def test_label_colours_keep_background_apart():
    from matplotlib.colors import to_rgb

    rgb = S.colour_labels(torch.tensor([[0, 8], [3, 1]]))
    assert rgb.shape == (2, 2, 3) and rgb[0, 0].tolist() == [0, 0, 0]
    colours = [to_rgb(c) for c in S.LABEL_COLOURS]
    assert len(set(colours)) == len(colours)            # nine labels, nine colours
    assert all(max(c) > 0.3 for c in colours[1:])       # no object drawn (nearly) black
    with pytest.raises(ValueError, match="0..8"):
        S.colour_labels(torch.tensor([9]))
    import matplotlib.pyplot as plt
    fig = plt.figure()
    legend = S.label_legend(fig, {0: "background", 1: "T-shirt"})
    assert [t.get_text() for t in legend.get_texts()] == ["background", "T-shirt"]
    plt.close(fig)
