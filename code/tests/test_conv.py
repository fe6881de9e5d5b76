"""dlcv.conv and dlcv.complexity against torch.nn.functional, torch.nn and torch's FLOP counter."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlcv import complexity, conv

CASES = [dict(), dict(stride=2), dict(padding=1), dict(stride=2, padding=2), dict(dilation=2),
         dict(stride=(1, 2), padding=(2, 1)), dict(groups=2), dict(groups=4, stride=2, padding=1, dilation=2)]


@pytest.mark.parametrize("kw", CASES, ids=str)
@pytest.mark.parametrize("impl", [conv.conv2d_loops, conv.conv2d_im2col], ids=["loops", "im2col"])
def test_conv2d_matches_torch(impl, kw):
    g = torch.Generator().manual_seed(0)
    groups = kw.get("groups", 1)
    x = torch.randn(2, 4, 9, 11, generator=g, dtype=torch.float64)
    w = torch.randn(8, 4 // groups, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(8, generator=g, dtype=torch.float64)
    assert torch.allclose(impl(x, w, b, **kw), F.conv2d(x, w, b, **kw))


def test_im2col_matches_unfold_and_output_size_matches_torch():
    x = torch.randn(2, 3, 10, 7, dtype=torch.float64)
    for k, s, p, d in [(3, 1, 0, 1), (5, 2, 2, 1), (3, 2, 1, 2)]:
        assert torch.equal(conv.im2col(x, k, s, p, d), F.unfold(x, k, dilation=d, padding=p, stride=s))
        out = F.conv2d(x, torch.zeros(1, 3, k, k, dtype=torch.float64), stride=s, padding=p, dilation=d)
        assert out.shape[-2:] == (conv.output_size(10, k, s, p, d), conv.output_size(7, k, s, p, d))


def test_slide_formulas():
    assert conv.output_size(7, 3) == 5 and conv.output_size(7, 3, stride=2) == 3
    assert conv.output_size(32, 5, 1, 2) == 32
    assert conv.receptive_field([(3, 1)] * 4) == 1 + 4 * 2
    assert conv.conv_params(3, 10, 5) == 760 and conv.conv_macs(3, 10, 5, 32, 32) == 768_000
    layer = nn.Conv2d(3, 10, 5, padding=2)
    assert sum(p.numel() for p in layer.parameters()) == 760
    with pytest.raises(ValueError, match="does not fit"):
        conv.output_size(3, 5)


def test_max_pool_matches_torch_and_slide_example():
    x = torch.tensor([[1.0, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]])[None, None]
    assert conv.max_pool2d(x, 2).flatten().tolist() == [6, 8, 3, 4]
    y = torch.randn(2, 3, 9, 8)
    for k, s, p in [(2, 2, 0), (3, 2, 1), (3, 1, 1)]:
        assert torch.equal(conv.max_pool2d(y, k, s, p), F.max_pool2d(y, k, s, p))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_batchnorm_matches_torch(mode):
    torch.manual_seed(0)
    ours, theirs = conv.BatchNorm2d(5), nn.BatchNorm2d(5)
    with torch.no_grad():
        ours.gamma.copy_(torch.rand(5) + 0.5), ours.beta.copy_(torch.randn(5))
        theirs.weight.copy_(ours.gamma), theirs.bias.copy_(ours.beta)
    for _ in range(3):  # a few training batches update the running statistics
        x = 3 * torch.randn(8, 5, 4, 4) + 1
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)
    assert torch.allclose(ours.running_mean, theirs.running_mean, atol=1e-6)
    assert torch.allclose(ours.running_var, theirs.running_var, atol=1e-5)
    if mode == "eval":
        ours.eval(), theirs.eval()
        x = torch.randn(2, 5, 3, 3)
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)
    x = torch.randn(4, 5, 3, 3, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    ours(x).square().sum().backward(), theirs(x2).square().sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-4)


def test_layer_table_counts_agree_with_torch_flop_counter():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 16, 3, padding=1, groups=2), nn.ReLU(),
                          nn.Flatten(), nn.Linear(16 * 8 * 8, 10))
    rows = complexity.layer_table(model, (3, 16, 16))
    assert [r.kind for r in rows] == ["conv", "maxpool", "conv", "flatten", "linear"]
    assert rows[0].out_shape == (8, 16, 16) and rows[0].memory_kb == 8 * 16 * 16 * 4 / 1024
    assert sum(r.params for r in rows) == complexity.count_params(model)
    assert 2 * complexity.totals(rows)["macs"] == complexity.count_flops(model, (3, 16, 16))
    assert rows[1].macs == 0 and rows[1].other_ops == 8 * 8 * 8 * 4     # pooling compares, it multiplies nothing
    gap = complexity.layer_table(nn.AdaptiveAvgPool2d(1), (8, 5, 5))[0]
    assert (gap.macs, gap.other_ops) == (0, 8 * 25)
    assert model.training, "counting must leave the model in the mode it found it"
    with torch.device("meta"):
        big = nn.Sequential(nn.Conv2d(3, 64, 7, stride=2, padding=3))
    assert complexity.count_flops(big, (3, 224, 224)) == 2 * 64 * 112 * 112 * 3 * 49
    html = complexity.table_html(["a", "b"], [["x", 1]])
    assert "<table" in html and "<td" in html
    with pytest.raises(ValueError, match="every column needs a header"):
        complexity.table_html(["", "b"], [["x", 1]])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="divisible by groups"):
        conv.conv2d_im2col(torch.zeros(1, 3, 5, 5), torch.zeros(4, 1, 3, 3), groups=2)
    with pytest.raises(ValueError, match="input channels"):
        conv.conv2d_loops(torch.zeros(1, 3, 5, 5), torch.zeros(4, 2, 3, 3))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        conv.max_pool2d(torch.zeros(5, 5))


@pytest.mark.parametrize("name, kwargs", [("alexnet", {}), ("resnet18", {}), ("resnet50", {}),
                                          ("googlenet", {"aux_logits": False, "init_weights": False})])
def test_torchvision_complexity_matches_published_figures(name, kwargs):
    r = complexity.torchvision_complexity(name, **kwargs)
    assert r["params"] == r["published_params"] or name == "googlenet"
    assert abs(r["gmacs"] - r["published_gmacs"]) / r["published_gmacs"] < 0.02
    with pytest.raises(ValueError, match="no weights"):
        complexity.torchvision_complexity("resnet18", weights="NOPE")


def test_basic_and_bottleneck_blocks_cost_18_and_17_HWC2():
    from torchvision.models.resnet import BasicBlock, Bottleneck
    H = W = 14
    C = 32
    basic = complexity.layer_table(BasicBlock(C, C), (C, H, W))
    bottle = complexity.layer_table(Bottleneck(4 * C, C), (4 * C, H, W))
    assert sum(r.macs for r in basic) == 18 * H * W * C * C
    assert sum(r.macs for r in bottle) == 17 * H * W * C * C


def test_small_resnet_shapes():
    from dlcv.models import SmallResNet
    m = SmallResNet(widths=(8, 16), blocks=2)
    assert m(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    with pytest.raises(ValueError):
        SmallResNet(widths=())
