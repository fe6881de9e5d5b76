"""dlcv.translation against its definitions: Canny edges from scikit-image, each PatchGAN logit
sees one patch (its receptive field measured with autograd), the pix2pix and CycleGAN loss
terms are the papers' formulas, and the training loops lower the reconstruction terms."""
import math

import numpy as np
import pytest
import torch
from skimage.feature import canny

from dlcv import translation as T


def test_canny_edges_match_scikit_image():
    rng = np.random.default_rng(0)
    images = np.zeros((2, 28, 28), np.uint8)
    images[:, 8:20, 6:22] = 200
    images[1] += rng.integers(0, 20, (28, 28), dtype=np.uint8)
    edges = T.canny_edges(images)
    assert edges.shape == (2, 1, 28, 28) and set(edges.unique().tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(edges[0, 0].numpy().astype(bool), canny(images[0] / 255.0, sigma=1.0))
    assert edges[0, 0, 8:20, 6].sum() > 5 and edges[0, 0, 0:5].sum() == 0   # the square's outline
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        T.canny_edges(np.zeros((28, 28)))


def test_patch_logits_see_patches():
    torch.manual_seed(0)
    D = T.PatchDiscriminator(channels=1, condition_channels=1, width=4).eval()
    y = torch.rand(1, 1, 28, 28, requires_grad=True)
    x = torch.rand(1, 1, 28, 28)
    logits = D(y, x)
    assert logits.shape == (1, 7, 7)
    logits[0, 3, 3].backward()
    seen = (y.grad[0, 0].abs() > 0).nonzero()
    rows, cols = seen[:, 0], seen[:, 1]
    # one patch in the middle, far smaller than the image: 4x4/2, 4x4/2, 3x3 -> 22 pixels across
    assert rows.max() - rows.min() + 1 <= 22 and cols.max() - cols.min() + 1 <= 22
    assert (y.grad[0, 0, :2].abs() == 0).all()
    with pytest.raises(ValueError, match="conditional discriminator"):
        D(y)


def test_pix2pix_terms_are_the_objective():
    torch.manual_seed(0)
    G, D = T.TranslationUNet(width=4).eval(), T.PatchDiscriminator(condition_channels=1, width=4).eval()
    x, y = torch.rand(3, 1, 28, 28), torch.rand(3, 1, 28, 28)
    out = T.pix2pix_losses(G, D, x, y, lam=100.0)
    fake = G(x)
    d_real, d_fake = torch.sigmoid(D(y, x)), torch.sigmoid(D(fake, x))
    torch.testing.assert_close(out["d"], -(d_real.log().mean() + (1 - d_fake).log().mean()), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["g_gan"], -d_fake.log().mean(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["l1"], (y - fake).abs().mean())
    torch.testing.assert_close(out["g"], out["g_gan"] + 100 * out["l1"])


def test_cycle_terms_are_the_objective():
    torch.manual_seed(0)
    G, Fb = T.TranslationUNet(width=4).eval(), T.TranslationUNet(width=4).eval()
    D_X, D_Y = T.PatchDiscriminator(width=4).eval(), T.PatchDiscriminator(width=4).eval()
    x, y = torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28)
    out = T.cycle_losses(G, Fb, D_X, D_Y, x, y, lam=10.0)
    torch.testing.assert_close(out["cyc_x"], (Fb(G(x)) - x).abs().mean())
    torch.testing.assert_close(out["cyc_y"], (G(Fb(y)) - y).abs().mean())
    torch.testing.assert_close(out["gan_G"], -torch.sigmoid(D_Y(G(x))).log().mean(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["g"], out["gan_G"] + out["gan_F"] + 10 * (out["cyc_x"] + out["cyc_y"]))
    torch.testing.assert_close(out["idt"], (G(y) - y).abs().mean() + (Fb(x) - x).abs().mean())
    with_identity = T.cycle_losses(G, Fb, D_X, D_Y, x, y, lam=10.0, identity=5.0)
    torch.testing.assert_close(with_identity["g"], out["g"] + 5 * out["idt"])


def test_training_loops_lower_reconstruction():
    torch.manual_seed(0)
    y = torch.zeros(32, 1, 28, 28)
    for i, r in enumerate(torch.randint(4, 20, (32,)).tolist()):
        y[i, 0, r:r + 6, 6:22] = 1
    x = T.canny_edges((y[:, 0] * 255).to(torch.uint8).numpy())
    G, D = T.TranslationUNet(width=8), T.PatchDiscriminator(condition_channels=1, width=8)
    log = T.train_pix2pix(G, D, x, y, epochs=12, batch_size=16, lr=2e-3)
    assert log[-1]["l1"] < 0.6 * log[0]["l1"], log
    G2, F2 = T.TranslationUNet(width=4), T.TranslationUNet(width=4)
    DX, DY = T.PatchDiscriminator(width=4), T.PatchDiscriminator(width=4)
    log = T.train_cyclegan(G2, F2, DX, DY, x, y, epochs=8, batch_size=16, lr=2e-3)
    assert log[-1]["cyc_x"] < log[0]["cyc_x"] and all(math.isfinite(v) for v in log[-1].values())
    log = T.train_cyclegan(G2, F2, DX, DY, x, y, epochs=2, batch_size=16, lr=2e-3, identity=5.0)
    assert "idt" in log[-1] and math.isfinite(log[-1]["idt"])
    with pytest.raises(ValueError, match="pairs"):
        T.train_pix2pix(G, D, x, y[:5], epochs=1)


def test_l1_only_training_is_the_papers_baseline():
    """``D=None`` trains the generator on the L1 term alone: the same loss a hand-written loop
    with torch.optim gives, step for step, and no adversarial terms in the log."""
    torch.manual_seed(0)
    y = torch.rand(16, 1, 28, 28)
    x = (y > 0.5).float()
    G = T.TranslationUNet(width=4, dropout=0.0)
    twin = T.TranslationUNet(width=4, dropout=0.0)
    twin.load_state_dict(G.state_dict())
    log = T.train_pix2pix(G, None, x, y, epochs=1, batch_size=16, lr=1e-3)
    assert set(log[0]) == {"l1"}
    opt = torch.optim.Adam(twin.parameters(), lr=1e-3, betas=(0.5, 0.999))
    twin.train()
    loss = (y - twin(x)).abs().mean()    # one batch of all 16, in a permuted order: same mean
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert log[0]["l1"] == pytest.approx(loss.item(), rel=1e-5)
    for a, b in zip(G.parameters(), twin.parameters()):
        # a convolution's bias just before batch norm has a gradient of rounding error only,
        # which Adam's first step blows up to +-lr either way: compare the others
        if b.grad.abs().max() > 1e-6:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_stroke_width_measures_lines_drawn_k_pixels_wide():
    images = np.zeros((4, 28, 28), np.uint8)
    for k in range(1, 5):
        images[k - 1, 10:10 + k, 4:24] = 255     # a bar 20 long and k wide
    widths = T.stroke_width(images)
    assert torch.all(widths[1:] > widths[:-1]), widths
    for k, w in enumerate(widths.tolist(), start=1):
        assert k * 0.9 <= w <= k * 1.25, (k, w)
    as_float = T.stroke_width(torch.from_numpy(images[:, None] / 255.0).float())
    torch.testing.assert_close(as_float, widths)
    assert T.stroke_width(np.zeros((1, 28, 28), np.uint8)).item() == 0
    with pytest.raises(ValueError, match="grey images"):
        T.stroke_width(np.zeros((28, 28)))
