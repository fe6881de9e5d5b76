"""Chapter 12's from-scratch transformer pieces against PyTorch and torchvision."""
import pytest
import torch
from torch import nn

from dlcv import complexity
from dlcv.transformer import MultiHeadAttention, TransformerBlock, ViT, patchify


def test_multi_head_attention_matches_torch_with_copied_weights():
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(16, 4, batch_first=True)
    ours = MultiHeadAttention(16, 4).load_torch(theirs)
    x, ctx = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    assert torch.allclose(ours(x), theirs(x, x, x, need_weights=False)[0], atol=1e-6)      # self
    y_t, a_t = theirs(x, ctx, ctx, average_attn_weights=False)
    assert torch.allclose(ours(x, ctx), y_t, atol=1e-6)                                   # cross
    assert ours.last_attention.shape == (2, 4, 5, 7) and torch.allclose(ours.last_attention, a_t, atol=1e-6)
    two_heads = MultiHeadAttention(16, 2)
    two_heads.load_state_dict(ours.state_dict())             # the same weights, split in two heads
    assert not torch.allclose(two_heads(x), ours(x), atol=1e-3)
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 4)


def test_transformer_block_matches_torch_encoder_layer():
    torch.manual_seed(0)
    theirs = nn.TransformerEncoderLayer(16, 4, 64, dropout=0.0, activation="gelu", batch_first=True,
                                        norm_first=True).eval()
    ours = TransformerBlock(16, 4, mlp_ratio=4).load_torch(theirs)
    x = torch.randn(3, 6, 16, requires_grad=True)
    assert torch.allclose(ours(x), theirs(x), atol=1e-5)
    g1, = torch.autograd.grad(ours(x).square().sum(), x)
    g2, = torch.autograd.grad(theirs(x).square().sum(), x)
    assert torch.allclose(g1, g2, atol=1e-4)


def test_patchify_then_linear_equals_a_strided_convolution():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 12, 8)
    conv = nn.Conv2d(3, 5, kernel_size=4, stride=4)
    patches = patchify(images, 4)                             # [2, 6, 48]
    assert patches.shape == (2, 6, 48)
    by_linear = patches @ conv.weight.flatten(1).T + conv.bias                   # [2, 6, 5]
    by_conv = conv(images).flatten(2).transpose(1, 2)                            # [2, 6, 5]
    assert torch.allclose(by_linear, by_conv, atol=1e-5)
    assert torch.equal(patches[0, 1], images[0, :, 0:4, 4:8].flatten())         # row-major order
    with pytest.raises(ValueError, match="multiple"):
        patchify(images, 5)


def test_vit_b16_has_torchvision_parameter_count():
    with torch.device("meta"):
        ours = ViT(224, 16, 3, 1000, dim=768, depth=12, heads=12, mlp_ratio=4)
    theirs = complexity.meta_model("vit_b_16")
    assert complexity.count_params(ours) == complexity.count_params(theirs) == 86_567_656


def test_small_vit_shapes_and_learning():
    torch.manual_seed(0)
    vit = ViT(28, 7, 1, 10, dim=32, depth=2, heads=2, mlp_ratio=2)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    assert vit(x).shape == (8, 10) and vit.tokens(x).shape == (8, 17, 32)
    opt = torch.optim.Adam(vit.parameters(), lr=3e-3)
    first = nn.functional.cross_entropy(vit(x), y).item()
    for _ in range(40):
        opt.zero_grad()
        nn.functional.cross_entropy(vit(x), y).backward()
        opt.step()
    assert nn.functional.cross_entropy(vit(x), y).item() < first / 4
