"""Generative models from scratch (Chapter 15), small enough to train on digits on a CPU.

Shapes follow PyTorch: images ``[N, 1, 28, 28]`` with values in ``[0, 1]``.

* ``MaskedConv2d`` is PixelCNN's convolution: each output pixel sees only the pixels before it
  in raster order (mask ``"A"``, the first layer: not the pixel itself; ``"B"``: the pixel's own
  features too), so that ``p(x) = prod_i p(x_i | x_<i)`` can be computed in one pass;
  ``PixelCNN`` stacks them and predicts each pixel's intensity level, ``sample`` draws pixels
  one at a time.
* ``gaussian_kl`` is the KL term of the VAE's ELBO in closed form (tested against
  ``torch.distributions``); ``VAE`` encodes to ``(mu, log_var)``, samples with the
  reparameterisation trick and returns the ELBO's two terms.
* ``VectorQuantizer`` is VQ-VAE's bottleneck: the nearest code, with the straight-through
  gradient and the codebook and commitment losses.
* ``Generator`` and ``Discriminator`` are a DCGAN (Radford et al. 2016) for 28x28 digits:
  transposed convolutions up from a noise vector, strided convolutions down to one logit, batch
  norm, no pooling and no fully connected hidden layers; ``discriminator_loss`` and
  ``generator_loss`` are the minimax game's two losses (the generator's in the non-saturating
  form the GAN paper recommends).
* ``optimal_discriminator`` and ``gan_value`` check the GAN paper's result on densities:
  ``D*(x) = p_data / (p_data + p_g)`` and ``V(D*, G) = -log 4 + 2 JSD(p_data || p_g)``.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from . import runtime

__all__ = ["MaskedConv2d", "PixelCNN", "quantise", "gaussian_kl", "VAE", "VectorQuantizer",
           "Generator", "Discriminator", "discriminator_loss", "generator_loss",
           "optimal_discriminator", "gan_value", "train_vae", "train_pixelcnn", "train_gan"]


class MaskedConv2d(nn.Conv2d):
    """A convolution whose kernel is zero at and after the centre in raster order (``"A"``) or
    after the centre (``"B"``): output pixel ``(i, j)`` depends only on input pixels before
    ``(i, j)`` (and, for ``"B"``, on ``(i, j)`` itself). Odd kernel sizes, "same" padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask: str):
        if mask not in ("A", "B"):
            raise ValueError(f"mask must be 'A' or 'B', got {mask!r}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        centre = kernel_size // 2
        weight_mask = torch.ones_like(self.weight)
        weight_mask[:, :, centre, centre + (mask == "B"):] = 0   # the centre row, from the centre
        weight_mask[:, :, centre + 1:] = 0                        # every row below
        self.register_buffer("mask", weight_mask)
        self.mask_type = mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def quantise(images: torch.Tensor, levels: int) -> torch.Tensor:
    """Intensities ``[0, 1]`` to integer levels ``0..levels - 1`` (int64, same shape)."""
    if levels < 2:
        raise ValueError(f"levels must be at least 2, got {levels}")
    return (images.clamp(0, 1) * (levels - 1)).round().long()


class PixelCNN(nn.Module):
    """A small PixelCNN (van den Oord et al. 2016) for one-channel images quantised to
    ``levels`` intensities: a 7x7 mask-A convolution, ``layers`` 3x3 mask-B convolutions with
    ReLUs (residual), and a 1x1 head giving ``levels`` logits per pixel: ``[N, levels, H, W]``.
    Its receptive field grows with depth but always stays above and left of each pixel."""

    def __init__(self, levels: int = 4, channels: int = 32, layers: int = 5):
        super().__init__()
        self.levels = levels
        self.first = MaskedConv2d(1, channels, 7, "A")
        self.body = nn.ModuleList([MaskedConv2d(channels, channels, 3, "B") for _ in range(layers)])
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(),
                                  nn.Conv2d(channels, levels, 1))

    def forward(self, levels: torch.Tensor) -> torch.Tensor:
        """``levels int64 [N, 1, H, W]`` -> logits ``[N, levels, H, W]``."""
        x = levels.float() / (self.levels - 1) - 0.5
        h = self.first(x)
        for layer in self.body:
            h = h + layer(F.relu(h))
        return self.head(h)

    def nll_bits_per_pixel(self, levels: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of images ``[N, 1, H, W]`` (levels), in bits per pixel."""
        return F.cross_entropy(self(levels), levels[:, 0]) / math.log(2)

    @torch.no_grad()
    def sample(self, n: int, size: int = 28, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` images pixel by pixel in raster order: ``int64 [n, 1, size, size]``
        (``size * size`` forward passes: the price of an autoregressive model)."""
        device = self.head[-1].weight.device
        out = torch.zeros(n, 1, size, size, dtype=torch.long, device=device)
        for i in range(size):
            for j in range(size):
                probs = F.softmax(self(out)[:, :, i, j], dim=1)
                out[:, 0, i, j] = torch.multinomial(probs.cpu(), 1, generator=generator)[:, 0].to(device)
        return out


def gaussian_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, diag(exp(log_var))) || N(0, I))`` per example, summed over the latent
    dimensions: ``0.5 * sum(mu^2 + exp(log_var) - log_var - 1)``. ``[N, D] -> [N]``."""
    return 0.5 * (mu.pow(2) + log_var.exp() - log_var - 1).sum(dim=1)


class VAE(nn.Module):
    """A variational autoencoder for ``[N, 1, 28, 28]`` digits with a ``latent``-dimensional
    Gaussian code: a convolutional encoder to ``(mu, log_var)``, a decoder from ``z`` to pixel
    logits (a Bernoulli likelihood per pixel). ``latent=2`` gives a code one can draw."""

    def __init__(self, latent: int = 2, width: int = 32):
        super().__init__()
        self.latent = latent
        self.encoder = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.ReLU(),             # 14 x 14
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.ReLU(),     # 7 x 7
            nn.Flatten(), nn.Linear(2 * width * 49, 256), nn.ReLU(), nn.Linear(256, 2 * latent))
        self.decoder = nn.Sequential(
            nn.Linear(latent, 256), nn.ReLU(), nn.Linear(256, 2 * width * 49), nn.ReLU(),
            nn.Unflatten(1, (2 * width, 7, 7)),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),   # 14 x 14
            nn.ConvTranspose2d(width, 1, 4, 2, 1))                      # 28 x 28 logits

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.encoder(x).chunk(2, dim=1)
        return mu, log_var.clamp(-10, 10)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel logits ``[N, 1, 28, 28]``; ``torch.sigmoid`` of them is the mean image."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ELBO's two terms per example, ``(reconstruction, kl)``, each ``[N]``, in nats:
        ``-ELBO = reconstruction + kl``. One sample of ``z = mu + sigma * eps`` (the
        reparameterisation trick: the noise is an input, so gradients reach ``mu`` and
        ``sigma``)."""
        if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"VAE takes images [N, 1, 28, 28] in [0, 1], got {tuple(x.shape)}")
        mu, log_var = self.encode(x)
        z = mu + (0.5 * log_var).exp() * torch.randn_like(mu)
        logits = self.decode(z)
        reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
        return reconstruction, gaussian_kl(mu, log_var)


class VectorQuantizer(nn.Module):
    """VQ-VAE's bottleneck (van den Oord et al. 2017): each ``dim``-vector of ``z [N, dim, H, W]``
    is replaced by its nearest of ``codes`` codebook vectors. ``forward`` returns the quantised
    map (with the straight-through gradient: the decoder's gradient is copied to ``z``), the
    code indices ``[N, H, W]``, and the loss ``||sg[z] - e||^2 + beta ||z - sg[e]||^2`` that
    moves the codes towards the encoder's outputs and commits the encoder to its codes."""

    def __init__(self, codes: int, dim: int, beta: float = 0.25):
        super().__init__()
        self.codebook = nn.Embedding(codes, dim)
        self.codebook.weight.data.uniform_(-1 / codes, 1 / codes)
        self.beta = beta

    def forward(self, z: torch.Tensor):
        if z.ndim != 4 or z.shape[1] != self.codebook.embedding_dim:
            raise ValueError(f"z must be [N, {self.codebook.embedding_dim}, H, W], got {tuple(z.shape)}")
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])                   # [N*H*W, dim]
        index = torch.cdist(flat, self.codebook.weight).argmin(dim=1)           # nearest code
        quantised = self.codebook(index).view(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
        loss = F.mse_loss(quantised, z.detach()) + self.beta * F.mse_loss(z, quantised.detach())
        straight_through = z + (quantised - z).detach()
        return straight_through, index.view(z.shape[0], z.shape[2], z.shape[3]), loss


class Generator(nn.Module):
    """DCGAN's generator for 28x28 images: noise ``[N, latent]`` -> a 7x7 map -> 14x14 -> 28x28
    by stride-2 transposed convolutions (kernel 4: divisible by the stride, no checkerboard),
    batch norm and ReLU, then ``tanh``; returns images ``[N, 1, 28, 28]`` in ``[0, 1]``."""

    def __init__(self, latent: int = 32, width: int = 32):
        super().__init__()
        self.latent = latent
        self.net = nn.Sequential(
            nn.Linear(latent, 2 * width * 49, bias=False), nn.BatchNorm1d(2 * width * 49), nn.ReLU(),
            nn.Unflatten(1, (2 * width, 7, 7)),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.latent:
            raise ValueError(f"noise must be [N, {self.latent}], got {tuple(z.shape)}")
        return (self.net(z) + 1) / 2


class Discriminator(nn.Module):
    """DCGAN's discriminator: images ``[N, 1, 28, 28]`` in ``[0, 1]`` -> one logit each ``[N]``
    ("real" when positive), by stride-2 convolutions with leaky ReLUs."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2),                       # 14 x 14
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2),                                                      # 7 x 7
            nn.Flatten(), nn.Linear(2 * width * 49, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)[:, 0]


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``-(log D(x) + log(1 - D(G(z))))``, averaged: the discriminator's side of the minimax
    game, as binary cross-entropy with real = 1 and fake = 0."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss ``-log D(G(z))``: it has the same fixed point as
    minimising ``log(1 - D(G(z)))`` but strong gradients while the discriminator wins, early
    in training, where ``log(1 - D)`` is flat."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def optimal_discriminator(p_data: torch.Tensor, p_g: torch.Tensor) -> torch.Tensor:
    """The discriminator that maximises the GAN value for fixed densities (evaluated on the
    same points): ``D*(x) = p_data(x) / (p_data(x) + p_g(x))``; 1/2 where both are zero."""
    total = p_data + p_g
    return torch.where(total > 0, p_data / total.clamp(min=1e-300), torch.full_like(total, 0.5))


def gan_value(d: torch.Tensor, p_data: torch.Tensor, p_g: torch.Tensor, dx: float) -> torch.Tensor:
    """The GAN value ``V(D, G) = E_data[log D] + E_g[log(1 - D)]`` for densities sampled on a
    grid of spacing ``dx`` (a Riemann sum), with ``D`` given on the same grid."""
    eps = 1e-12
    return ((p_data * torch.log(d.clamp(min=eps))).sum()
            + (p_g * torch.log((1 - d).clamp(min=eps))).sum()) * dx


# ----------------------------------------------------------------------------- training loops
def _batches(n: int, batch_size: int, epochs: int, seed: int):
    """``(epoch, index tensor)`` for shuffled batches, cut at the smoke scale."""
    gen = torch.Generator().manual_seed(seed)
    steps = math.ceil(n / batch_size)
    epochs, steps = runtime.smoke_limits(epochs, steps)
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        for s in range(steps):
            yield epoch, order[s * batch_size:(s + 1) * batch_size]


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _check_images(images: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 1 or images.dtype.is_floating_point is False:
        raise ValueError(f"images must be float [N, 1, H, W] in [0, 1], got {images.dtype} "
                         f"{tuple(images.shape)}")


def train_vae(vae: VAE, images: torch.Tensor, *, epochs: int, batch_size: int = 128,
              lr: float = 2e-3, seed: int = 0) -> list[dict]:
    """Maximise the ELBO (minimise ``reconstruction + kl``, per example) with Adam. Returns, per
    epoch, the mean of both terms in nats, so that a chapter can plot how they trade off."""
    _check_images(images)
    device = _device(vae)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    log, sums, count, current = [], {"reconstruction": 0.0, "kl": 0.0}, 0, 0
    vae.train()
    for epoch, idx in _batches(len(images), batch_size, epochs, seed):
        if epoch != current:
            log.append({k: v / count for k, v in sums.items()})
            sums, count, current = {"reconstruction": 0.0, "kl": 0.0}, 0, epoch
        rec, kl = vae(images[idx].to(device))
        loss = (rec + kl).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sums["reconstruction"] += rec.sum().item()
        sums["kl"] += kl.sum().item()
        count += len(idx)
    log.append({k: v / count for k, v in sums.items()})
    vae.eval()
    return log


def train_pixelcnn(model: PixelCNN, images: torch.Tensor, *, epochs: int, batch_size: int = 64,
                   lr: float = 2e-3, seed: int = 0) -> list[float]:
    """Maximum likelihood: minimise the cross-entropy of every pixel's level given the pixels
    before it. Returns each epoch's mean negative log-likelihood in bits per pixel."""
    _check_images(images)
    device = _device(model)
    levels = quantise(images, model.levels)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    log, total, count, current = [], 0.0, 0, 0
    model.train()
    for epoch, idx in _batches(len(images), batch_size, epochs, seed):
        if epoch != current:
            log.append(total / count)
            total, count, current = 0.0, 0, epoch
        loss = model.nll_bits_per_pixel(levels[idx].to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
        count += len(idx)
    log.append(total / count)
    model.eval()
    return log


def train_gan(generator: Generator, discriminator: Discriminator, images: torch.Tensor, *,
              epochs: int, batch_size: int = 64, lr: float = 2e-4, seed: int = 0,
              on_epoch=None) -> list[dict]:
    """The GAN training loop, as the paper and DCGAN run it: per batch one step of the
    discriminator (real images against the generator's, ``discriminator_loss``), then one step
    of the generator (``generator_loss`` on fresh fakes), each with Adam (beta1 = 0.5, DCGAN's
    choice). Returns per epoch the mean losses and the discriminator's mean output on real and
    on fake images, the numbers a GAN's training is watched by; ``on_epoch(epoch)`` is called
    after each epoch (to record samples)."""
    _check_images(images)
    device = _device(generator)
    gen = torch.Generator().manual_seed(seed + 1)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.5, 0.999))
    keys = ("d_loss", "g_loss", "d_real", "d_fake")
    log, sums, count, current = [], dict.fromkeys(keys, 0.0), 0, 0

    def close_epoch(epoch):
        log.append({k: v / count for k, v in sums.items()})
        if on_epoch is not None:
            generator.eval()
            on_epoch(epoch)
            generator.train()

    generator.train()
    discriminator.train()
    for epoch, idx in _batches(len(images), batch_size, epochs, seed):
        if epoch != current:
            close_epoch(current)
            sums, count, current = dict.fromkeys(keys, 0.0), 0, epoch
        real = images[idx].to(device)
        z = torch.randn(len(idx), generator.latent, generator=gen).to(device)
        fake = generator(z)
        real_logits, fake_logits = discriminator(real), discriminator(fake.detach())
        d_loss = discriminator_loss(real_logits, fake_logits)
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = generator_loss(discriminator(fake))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        sums["d_loss"] += d_loss.item()
        sums["g_loss"] += g_loss.item()
        sums["d_real"] += torch.sigmoid(real_logits).mean().item()
        sums["d_fake"] += torch.sigmoid(fake_logits).mean().item()
        count += 1
    close_epoch(current)
    generator.eval()
    discriminator.eval()
    return log
