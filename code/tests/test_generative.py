"""dlcv.generative against the definitions and the libraries: PixelCNN's masks are causal
(checked with autograd's Jacobian), the VAE's KL term equals torch.distributions', the vector
quantiser picks the nearest code and passes gradients straight through, and the GAN's optimal
discriminator maximises the value, which equals -log 4 + 2 JSD (scipy's Jensen-Shannon)."""
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from torch.distributions import Normal, kl_divergence

from dlcv import generative as G


def dependence(f, size=6):
    """Which input pixels each output pixel depends on: ``[size*size, size*size]`` bool."""
    x = torch.randn(1, 1, size, size)
    jac = torch.autograd.functional.jacobian(lambda v: f(v.view(1, 1, size, size)).sum(1).flatten(),
                                             x.flatten())
    return jac.abs() > 0


@pytest.mark.parametrize("mask", ["A", "B"])
def test_masked_convolution_sees_only_the_past(mask):
    torch.manual_seed(0)
    layer = G.MaskedConv2d(1, 4, 5, mask)
    dep = dependence(layer)
    n = dep.shape[0]
    order = torch.arange(n)
    allowed = order[None, :] < order[:, None] if mask == "A" else order[None, :] <= order[:, None]
    assert not (dep & ~allowed).any(), "an output depends on a pixel at or after it"
    # and it does see the pixels just before it (the left neighbour and the one above)
    assert dep[14, 13] and dep[14, 8]
    assert dep[14, 14] == (mask == "B")


def test_pixelcnn_is_causal_learns_and_samples():
    torch.manual_seed(0)
    net = G.PixelCNN(levels=4, channels=8, layers=2)
    # quantised inputs have no gradient, so check the layers on a real-valued input
    x = torch.randn(1, 1, 6, 6, requires_grad=True)
    first = net.first(x)
    h = first
    for layer in net.body:
        h = h + layer(torch.relu(h))
    logits = net.head(h)
    for i in range(36):
        grad, = torch.autograd.grad(logits[0, :, i // 6, i % 6].sum(), x, retain_graph=True)
        seen = (grad.flatten().abs() > 0).nonzero().flatten()
        assert (seen < i).all(), f"pixel {i} sees pixels {seen[seen >= i].tolist()}"
    # learns: stripes of constant rows are easy to predict from the pixels above
    data = torch.zeros(16, 1, 8, 8, dtype=torch.long)
    data[:, :, ::2] = 3
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    first_nll = net.nll_bits_per_pixel(data).item()
    for _ in range(60):
        loss = net.nll_bits_per_pixel(data)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first_nll
    samples = net.sample(2, size=8, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (2, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 3
    assert (samples == data[:2]).float().mean() > 0.8       # it draws the stripes


def test_quantise():
    levels = G.quantise(torch.tensor([0.0, 0.2, 0.5, 1.0, 1.7]), 4)
    assert levels.tolist() == [0, 1, 2, 3, 3] and levels.dtype == torch.int64
    with pytest.raises(ValueError, match="at least 2"):
        G.quantise(torch.zeros(1), 1)


def test_gaussian_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mu, log_var = torch.randn(5, 3), torch.randn(5, 3)
    ours = G.gaussian_kl(mu, log_var)
    theirs = kl_divergence(Normal(mu, (0.5 * log_var).exp()), Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert torch.allclose(G.gaussian_kl(torch.zeros(2, 4), torch.zeros(2, 4)), torch.zeros(2))


def test_vae_terms_and_reparameterised_gradients():
    torch.manual_seed(0)
    vae = G.VAE(latent=2, width=8)
    x = torch.rand(4, 1, 28, 28)
    rec, kl = vae(x)
    assert rec.shape == kl.shape == (4,) and (rec > 0).all() and (kl >= 0).all()
    rec.sum().backward()          # the reconstruction alone reaches the encoder through z
    assert vae.encoder[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"\[N, 1, 28, 28\]"):
        vae(torch.rand(4, 28, 28))


def test_vector_quantiser_nearest_code_and_straight_through():
    torch.manual_seed(0)
    vq = G.VectorQuantizer(codes=5, dim=3)
    z = torch.randn(2, 3, 4, 4, requires_grad=True)
    out, index, loss = vq(z)
    codes = vq.codebook.weight
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 3)
    brute = ((flat[:, None] - codes[None]) ** 2).sum(-1).argmin(1)
    assert torch.equal(index.flatten(), brute)
    assert torch.allclose(out.detach().permute(0, 2, 3, 1).reshape(-1, 3), codes[brute].detach())
    (out * torch.arange(3.0).view(1, 3, 1, 1)).sum().backward(retain_graph=True)
    assert torch.allclose(z.grad, torch.arange(3.0).view(1, 3, 1, 1).expand_as(z))  # copied
    loss.backward()
    assert vq.codebook.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        vq(torch.randn(2, 4, 4, 4))


def test_optimal_discriminator_maximises_the_value_and_gives_the_jsd():
    x = torch.linspace(-8, 8, 4001, dtype=torch.float64)
    dx = float(x[1] - x[0])
    p_data = torch.exp(Normal(torch.tensor(0.0, dtype=torch.float64), 1.0).log_prob(x))
    p_g = torch.exp(Normal(torch.tensor(1.5, dtype=torch.float64), 0.7).log_prob(x))
    best = G.optimal_discriminator(p_data, p_g)
    v_best = G.gan_value(best, p_data, p_g, dx)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):            # any other discriminator does worse
        other = (best + 0.05 * torch.randn(len(x), generator=gen, dtype=torch.float64)).clamp(1e-6, 1 - 1e-6)
        assert G.gan_value(other, p_data, p_g, dx) < v_best
    jsd = jensenshannon((p_data * dx).numpy(), (p_g * dx).numpy()) ** 2   # natural log
    assert float(v_best) == pytest.approx(-math.log(4) + 2 * jsd, abs=1e-6)
    same = G.optimal_discriminator(p_data, p_data)
    assert torch.allclose(same, torch.full_like(same, 0.5))
    assert float(G.gan_value(same, p_data, p_data, dx)) == pytest.approx(-math.log(4), abs=1e-6)
    assert np.isfinite(float(v_best))


def test_dcgan_shapes_and_losses():
    torch.manual_seed(0)
    gen, disc = G.Generator(latent=8, width=8), G.Discriminator(width=8)
    fake = gen(torch.randn(5, 8))
    assert fake.shape == (5, 1, 28, 28) and fake.min() >= 0 and fake.max() <= 1
    assert disc(fake).shape == (5,)
    with pytest.raises(ValueError, match=r"\[N, 8\]"):
        gen(torch.randn(5, 7))
    real_logits, fake_logits = torch.randn(6), torch.randn(6)
    d = torch.sigmoid
    by_hand = -(torch.log(d(real_logits)) + torch.log(1 - d(fake_logits))).mean()
    assert torch.allclose(G.discriminator_loss(real_logits, fake_logits), by_hand, atol=1e-6)
    assert torch.allclose(G.generator_loss(fake_logits), -torch.log(d(fake_logits)).mean(), atol=1e-6)
    # the non-saturating loss has the larger gradient where the discriminator wins (D(G(z)) ~ 0)
    losing = torch.tensor([-6.0], requires_grad=True)
    g_ns, = torch.autograd.grad(G.generator_loss(losing), losing)
    g_mm, = torch.autograd.grad(torch.log(1 - d(losing)).sum(), losing)
    assert g_ns.abs() > 100 * g_mm.abs()


def blobs(n=64, seed=0):
    """Toy 28 x 28 images: a bright square at one of four places."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(n, 1, 28, 28)
    corners = torch.randint(0, 4, (n,), generator=g)
    for k, c in enumerate(corners.tolist()):
        r, col = 4 + 12 * (c // 2), 4 + 12 * (c % 2)
        out[k, 0, r:r + 8, col:col + 8] = 1.0
    return out


def test_training_loops_reduce_their_losses():
    torch.manual_seed(0)
    x = blobs()
    vae = G.VAE(latent=2, width=8)
    log = G.train_vae(vae, x, epochs=8, batch_size=16, lr=3e-3)
    assert len(log) == 8 and log[-1]["reconstruction"] < 0.6 * log[0]["reconstruction"]
    pix = G.PixelCNN(levels=2, channels=8, layers=2)
    nll = G.train_pixelcnn(pix, x, epochs=4, batch_size=16, lr=5e-3)
    assert len(nll) == 4 and nll[-1] < 0.5 * nll[0]
    gen, disc = G.Generator(latent=8, width=8), G.Discriminator(width=8)
    seen = []
    glog = G.train_gan(gen, disc, x, epochs=3, batch_size=16, on_epoch=seen.append)
    assert seen == [0, 1, 2] and len(glog) == 3
    assert all(0 <= e["d_real"] <= 1 and 0 <= e["d_fake"] <= 1 for e in glog)
    with pytest.raises(ValueError, match="float"):
        G.train_vae(vae, (x * 255).byte(), epochs=1)


def test_autoencoder_and_vqvae_learn_to_reconstruct():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 28, 28)   # a bar of three rows at one of 26 heights: one number to encode
    for i, row in enumerate(torch.randint(0, 26, (64,)).tolist()):
        x[i, 0, row:row + 3] = 1
    for model, train in ((G.Autoencoder(latent=4, width=8), G.train_autoencoder),
                         (G.VQVAE(codes=8, dim=4, width=8), G.train_vqvae)):
        log = train(model, x, epochs=40, batch_size=32, lr=5e-3)
        assert log[-1]["reconstruction"] < 0.8 * log[0]["reconstruction"], (type(model).__name__, log)
    with pytest.raises(ValueError, match=r"\[N, 1, 28, 28\]"):
        G.Autoencoder().encode(torch.rand(2, 28, 28))


def test_vqvae_codes_decode_to_what_the_forward_pass_reconstructs():
    torch.manual_seed(0)
    model = G.VQVAE(codes=8, dim=4, width=8).eval()
    x = torch.rand(3, 1, 28, 28)
    index = model.encode(x)
    assert index.shape == (3, 7, 7) and index.dtype == torch.long
    rec, vq = model(x)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(model.decode(index), x, reduction="none")
    torch.testing.assert_close(rec, expected.sum((1, 2, 3)))
    assert vq.shape == (3,) and torch.all(vq == vq[0])
    with pytest.raises(ValueError, match="0..7"):
        model.decode(torch.full((1, 7, 7), 8))


def test_codebook_usage_counts_codes_and_perplexity():
    used, perplexity = G.codebook_usage(torch.tensor([0, 1, 2, 3]), codes=8)
    assert used == 0.5 and math.isclose(perplexity, 4.0)
    used, perplexity = G.codebook_usage(torch.tensor([5, 5, 5]), codes=8)
    assert used == 1 / 8 and math.isclose(perplexity, 1.0)
    with pytest.raises(ValueError, match="beyond a codebook of 4"):
        G.codebook_usage(torch.tensor([0, 7]), codes=4)


def test_generator_losses_have_the_textbook_gradients():
    """-log D (non-saturating) has gradient -(1 - D) per logit, log(1 - D) has -D: at D near 0,
    early in training, only the first moves the generator."""
    logits = torch.linspace(-6, 6, 13, requires_grad=True)
    d = torch.sigmoid(logits).detach()
    for saturating, expected in ((False, -(1 - d)), (True, -d)):
        grad, = torch.autograd.grad(G.generator_loss(logits, saturating=saturating) * len(logits), logits)
        torch.testing.assert_close(grad, expected)
    # the saturating loss is the minimax game's log(1 - D), averaged
    torch.testing.assert_close(G.generator_loss(logits, saturating=True), torch.log1p(-d).mean())


def test_adain_is_instance_norm_with_each_images_style():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 5)
    scale, bias = torch.randn(3, 4), torch.randn(3, 4)
    expected = torch.nn.functional.instance_norm(x) * scale[:, :, None, None] + bias[:, :, None, None]
    torch.testing.assert_close(G.adain(x, scale, bias), expected, atol=1e-5, rtol=1e-5)
    out = G.adain(x, scale, bias)
    torch.testing.assert_close(out.mean((2, 3)), bias, atol=1e-5, rtol=1e-5)   # the style sets the mean
    with pytest.raises(ValueError, match="scale, bias"):
        G.adain(x, scale[:, :2], bias)
    mapping = G.StyleMapping(latent=8, layers=2, channels=4, n_styles=3)
    styles = mapping.styles(mapping(torch.randn(2, 8)))
    assert len(styles) == 3 and all(s.shape == (2, 4) and b.shape == (2, 4) for s, b in styles)


def test_frechet_distance_matches_torchmetrics_and_closed_form():
    tm_fid = pytest.importorskip("torchmetrics.image.fid")
    torch.manual_seed(0)

    class Features(torch.nn.Module):   # a fixed "feature network": the flattened image itself
        num_features = 6

        def forward(self, x):
            return x.flatten(1).double()

    real = torch.randn(400, 1, 2, 3)
    fake = 0.5 * torch.randn(300, 1, 2, 3) + 0.3
    metric = tm_fid.FrechetInceptionDistance(feature=Features(), normalize=True)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    ours = G.frechet_distance(real.flatten(1), fake.flatten(1))
    assert math.isclose(ours, float(metric.compute()), rel_tol=1e-6)
    # the closed form for two Gaussians with diagonal covariances: |mu|^2 + sum (s_a - s_b)^2
    a = torch.randn(200_000, 2) * torch.tensor([1.0, 2.0])
    b = torch.randn(200_000, 2) * torch.tensor([0.5, 1.0]) + torch.tensor([1.0, 0.0])
    assert math.isclose(G.frechet_distance(a, b), 1.0 + 0.5 ** 2 + 1.0 ** 2, rel_tol=2e-2)
    assert abs(G.frechet_distance(a, a)) < 1e-8
    with pytest.raises(ValueError, match="at least two"):
        G.frechet_distance(a[:1], b)


def test_pixelcnn_trains_on_given_levels_and_refuses_bad_ones():
    torch.manual_seed(0)
    net = G.PixelCNN(levels=8, channels=8, layers=1)
    codes = torch.randint(0, 8, (16, 1, 7, 7))
    log = G.train_pixelcnn(net, codes, epochs=2, batch_size=8)
    assert len(log) == 2 and all(0 < v < 4 for v in log)
    with pytest.raises(ValueError, match="0..7"):
        G.train_pixelcnn(net, codes + 1, epochs=1)


def test_pixelcnn_sampling_reads_only_the_rows_it_needs():
    """Cropping each pass to the ``reach`` rows above the pixel and ``reach`` columns either side
    gives the probabilities a pass over the whole image gives (so the samples are the same), and
    one row or column less would not."""
    torch.manual_seed(0)
    net = G.PixelCNN(levels=3, channels=8, layers=2).eval()
    x = torch.randint(0, 3, (2, 1, 12, 12))
    full = net(x)
    i, j = 10, 5
    top = i - net.reach
    torch.testing.assert_close(net(x[:, :, top:i + 1])[:, :, -1, j], full[:, :, i, j])
    assert not torch.allclose(net(x[:, :, top + 1:i + 1])[:, :, -1, j], full[:, :, i, j])
    for j in (2, 5, 9):   # and columns: reach either side
        left = max(0, j - net.reach)
        window = x[:, :, top:i + 1, left:j + net.reach + 1]
        torch.testing.assert_close(net(window)[:, :, -1, j - left], full[:, :, i, j])
    j = 9
    assert not torch.allclose(net(x[:, :, top:i + 1, j - net.reach + 1:])[:, :, -1, net.reach - 1],
                              full[:, :, i, j])


def corner_blobs(n=64, seed=0):
    """``blobs`` with their labels: which of the four corners holds the square."""
    x = blobs(n, seed)
    quadrant = x.view(n, 2, 14, 2, 14).sum((2, 4)).flatten(1)      # [n, 4] ink per quadrant
    return x, quadrant.argmax(1)


def quadrant_share(images, labels):
    """The share of each image's ink that lies in the quadrant its label names, averaged."""
    quadrant = images.view(len(images), 2, 14, 2, 14).sum((2, 4)).flatten(1)
    return (quadrant[torch.arange(len(images)), labels] / quadrant.sum(1).clamp(min=1e-6)).mean().item()


def test_conditional_pixelcnn_is_causal_windowed_and_its_marginal_is_the_sum_rule():
    torch.manual_seed(0)
    net = G.PixelCNN(levels=3, channels=8, layers=2, classes=4).eval()
    with torch.no_grad():
        net.label_maps.normal_()                  # zero at the start: make the labels matter
    labels = torch.tensor([1, 3])
    # the label adds no path from a pixel to an earlier one's prediction
    dep = dependence(lambda v: net.scores(v.expand(2, -1, -1, -1), labels)[:1])
    order = torch.arange(36)
    assert not (dep & ~(order[None, :] < order[:, None])).any()
    # a window's logits equal the full pass's, the label's maps cropped with it
    x = torch.randint(0, 3, (2, 1, 12, 12))
    full = net(x, labels)
    assert not torch.allclose(full, net(x, torch.tensor([0, 0])))
    i, j = 10, 5
    top, left = i - net.reach, max(0, j - net.reach)
    window = x[:, :, top:i + 1, left:j + net.reach + 1]
    torch.testing.assert_close(net(window, labels, (top, left, 12))[:, :, -1, j - left], full[:, :, i, j])
    # -log sum_y p(x | y) p(y), against torch.distributions
    prior = torch.tensor([0.1, 0.2, 0.3, 0.4])
    per_class = torch.stack([
        torch.distributions.Categorical(logits=net(x, torch.full((2,), y)).permute(0, 2, 3, 1))
        .log_prob(x[:, 0]).sum((1, 2)) for y in range(4)], dim=1)
    expected = -(torch.logsumexp(per_class + prior.log(), 1) / (144 * math.log(2))).mean()
    torch.testing.assert_close(net.marginal_bits_per_pixel(x, prior), expected)
    with pytest.raises(ValueError, match="labels"):
        net(x)
    with pytest.raises(ValueError, match=r"0\.\.3"):
        net(x, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="without classes"):
        G.PixelCNN(levels=3, channels=8, layers=1)(x, labels)
    with pytest.raises(ValueError, match="summing to 1"):
        net.marginal_bits_per_pixel(x, torch.ones(4))


def test_conditional_pixelcnn_draws_what_it_is_asked_for():
    torch.manual_seed(0)
    x, corner = corner_blobs(128)
    net = G.PixelCNN(levels=2, channels=8, layers=2, classes=4, label_grid=2)
    G.train_pixelcnn(net, x, labels=corner, epochs=20, batch_size=16, lr=1e-2)
    asked = torch.arange(8) % 4
    samples = net.eval().sample(8, generator=torch.Generator().manual_seed(0), labels=asked).float()
    assert quadrant_share(samples, asked) > 0.5     # a quarter if the label were ignored


def test_conditional_gan_projection_and_weight_average():
    torch.manual_seed(0)
    gen, disc = G.Generator(latent=8, width=8, classes=4), G.Discriminator(width=8, classes=4)
    labels = torch.tensor([0, 3, 2])
    fake = gen(torch.randn(3, 8), labels)
    assert fake.shape == (3, 1, 28, 28)
    disc.eval()
    h = disc.features(fake * 2 - 1)
    by_hand = disc.out(h)[:, 0] + (disc.projection.weight[labels] * h).sum(1)
    torch.testing.assert_close(disc(fake, labels), by_hand)
    with pytest.raises(ValueError, match="labels"):
        gen(torch.randn(3, 8))
    with pytest.raises(ValueError, match="without classes"):
        G.Discriminator(width=8)(fake, labels)
    # the average of the weights changes what the generator holds at the end, not the game
    x, corner = corner_blobs(32)
    runs = {}
    for ema in (None, 0.9, 1e-9):
        torch.manual_seed(0)
        g, d = G.Generator(latent=8, width=8, classes=4), G.Discriminator(width=8, classes=4)
        log = G.train_gan(g, d, x, labels=corner, epochs=2, batch_size=8, ema=ema)
        runs[ema] = (log, torch.cat([p.detach().flatten() for p in g.parameters()]))
    assert runs[0.9][0] == runs[None][0]
    assert not torch.allclose(runs[0.9][1], runs[None][1])
    torch.testing.assert_close(runs[1e-9][1], runs[None][1])   # decay ~0: the last weights
    with pytest.raises(ValueError, match="ema"):
        G.train_gan(g, d, x, labels=corner, epochs=1, ema=1.5)
    with pytest.raises(ValueError, match="labels"):
        G.train_gan(g, d, x, epochs=1)


def test_conditional_gan_draws_what_it_is_asked_for():
    torch.manual_seed(0)
    x, corner = corner_blobs(128)
    gen, disc = G.Generator(latent=8, width=8, classes=4), G.Discriminator(width=8, classes=4)
    G.train_gan(gen, disc, x, labels=corner, epochs=40, batch_size=16, lr=2e-3, ema=0.9)
    asked = torch.arange(40) % 4
    with torch.no_grad():
        images = gen(torch.randn(40, 8, generator=torch.Generator().manual_seed(1)), asked)
    assert quadrant_share(images, asked) > 0.5     # a quarter if the label were ignored
