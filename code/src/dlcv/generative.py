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
* ``Autoencoder`` is the same encoder and decoder without the prior: a code, but nothing to
  sample codes from.
* ``VectorQuantizer`` is VQ-VAE's bottleneck: the nearest code, with the straight-through
  gradient and the codebook and commitment losses; ``VQVAE`` puts it between an encoder and a
  decoder, and ``codebook_usage`` measures how many codes are used.
* ``Generator`` and ``Discriminator`` are a DCGAN (Radford et al. 2016) for 28x28 digits:
  transposed convolutions up from a noise vector, strided convolutions down to one logit, batch
  norm, no pooling and no fully connected hidden layers; ``discriminator_loss`` and
  ``generator_loss`` are the minimax game's two losses (the generator's in the non-saturating
  form the GAN paper recommends).
* ``optimal_discriminator`` and ``gan_value`` check the GAN paper's result on densities:
  ``D*(x) = p_data / (p_data + p_g)`` and ``V(D*, G) = -log 4 + 2 JSD(p_data || p_g)``.
* ``adain`` and ``StyleMapping`` are StyleGAN's adaptive instance normalisation and mapping
  network, small enough for a worked example.
* ``frechet_distance`` is FID's formula on any features (tested against torchmetrics').
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from . import runtime
from .training import run_epochs

__all__ = ["SampleReader", "MaskedConv2d", "PixelCNN", "quantise", "gaussian_kl", "Autoencoder", "VAE", "VectorQuantizer",
           "VQVAE", "codebook_usage", "Generator", "Discriminator", "discriminator_loss", "generator_loss",
           "optimal_discriminator", "gan_value", "adain", "StyleMapping", "frechet_distance",
           "train_autoencoder", "train_vae", "train_vqvae", "train_pixelcnn", "train_gan"]


class MaskedConv2d(nn.Conv2d):
    """A convolution whose kernel is zero at and after the centre in raster order (``"A"``) or
    after the centre (``"B"``): output pixel ``(i, j)`` depends only on input pixels before
    ``(i, j)`` (and, for ``"B"``, on ``(i, j)`` itself). Odd kernel sizes, "same" padding.

    First used in section 15.2, *Autoregressive models: PixelCNN*.
    """

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
    """Intensities ``[0, 1]`` to integer levels ``0..levels - 1`` (int64, same shape).

    First used in section 15.2, *Autoregressive models: PixelCNN*.
    """
    if levels < 2:
        raise ValueError(f"levels must be at least 2, got {levels}")
    return (images.clamp(0, 1) * (levels - 1)).round().long()


class PixelCNN(nn.Module):
    """A small PixelCNN (van den Oord et al. 2016) for one-channel images quantised to
    ``levels`` intensities: a 7x7 mask-A convolution, ``layers`` 3x3 mask-B convolutions with
    ReLUs (residual), and a 1x1 head giving ``levels`` logits per pixel: ``[N, levels, H, W]``.
    Its receptive field grows with depth but always stays above and left of each pixel.

    With ``classes`` it is class-conditional, as in the conditional PixelCNN (van den Oord et
    al. 2016), with its location-dependent conditioning: each layer adds a learned map per class
    (``label_grid`` x ``label_grid`` per channel, stretched bilinearly over the image) to the
    features, so that each pixel's prediction knows the label ``[N]`` and what that label puts
    at its position, though it sees only a few rows above it.
    Summing ``p(x | y) p(y)`` over the classes gives the exact likelihood of an image without its
    label (``marginal_bits_per_pixel``).

    First used in section 15.2, *Autoregressive models: PixelCNN*.
    """

    def __init__(self, levels: int = 4, channels: int = 32, layers: int = 5, classes: int = 0,
                 label_grid: int = 7):
        super().__init__()
        if classes < 0:
            raise ValueError(f"classes must be 0 (unconditional) or more, got {classes}")
        self.levels, self.classes, self.channels = levels, classes, channels
        self.first = MaskedConv2d(1, channels, 7, "A")
        self.body = nn.ModuleList([MaskedConv2d(channels, channels, 3, "B") for _ in range(layers)])
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(),
                                  nn.Conv2d(channels, levels, 1))
        # a map per class and layer (the first layer and each of the body's), zero at the start
        self.label_maps = (nn.Parameter(torch.zeros(classes, channels * (layers + 1), label_grid, label_grid))
                           if classes else None)
        # how many rows above a pixel its prediction can see: 3 for the 7x7 kernel, 1 per 3x3
        self.reach = 3 + layers

    def _check_labels(self, labels: torch.Tensor | None, n: int) -> None:
        _check_class_labels(labels, self.classes, n, "PixelCNN")

    def forward(self, levels: torch.Tensor, labels: torch.Tensor | None = None,
                window: tuple[int, int, int] | None = None) -> torch.Tensor:
        """``levels int64 [N, 1, H, W]`` (and ``labels [N]``) -> logits ``[N, levels, H, W]``;
        ``window=(top, left, size)`` when the input is that crop of a ``size`` x ``size`` image."""
        return self.scores(levels.float() / (self.levels - 1) - 0.5, labels, window)

    def scores(self, x: torch.Tensor, labels: torch.Tensor | None = None,
               window: tuple[int, int, int] | None = None) -> torch.Tensor:
        """The logits from real-valued inputs ``[N, 1, H, W]`` (levels scaled to ``[-0.5, 0.5]``),
        through which gradients flow: to check which pixels a prediction depends on."""
        self._check_labels(labels, len(x))
        biases = [0.0] * (len(self.body) + 1)
        if labels is not None:
            h, w = x.shape[-2:]
            top, left, size = window if window is not None else (0, 0, None)
            full = (h, w) if size is None else (size, size)
            maps = F.interpolate(self.label_maps, size=full, mode="bilinear", align_corners=False)
            biases = maps[:, :, top:top + h, left:left + w][labels].split(self.channels, dim=1)
        h = self.first(x) + biases[0]
        for layer, bias in zip(self.body, biases[1:]):
            h = h + layer(F.relu(h)) + bias
        return self.head(h)

    def nll_bits_per_pixel(self, levels: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Negative log-likelihood of images ``[N, 1, H, W]`` (levels), in bits per pixel
        (given their ``labels`` for a conditional model)."""
        return F.cross_entropy(self(levels, labels), levels[:, 0]) / math.log(2)

    def marginal_bits_per_pixel(self, levels: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """A conditional model's exact negative log-likelihood of images ``[N, 1, H, W]``
        without their labels, ``-log sum_y p(x | y) p(y)``, in bits per pixel, averaged over the
        images; ``prior [classes]`` is ``p(y)`` (uniform by default). One pass per class."""
        if not self.classes:
            raise ValueError("marginal_bits_per_pixel needs a PixelCNN built with classes")
        prior = torch.full((self.classes,), 1.0 / self.classes) if prior is None else prior
        if prior.shape != (self.classes,) or (prior < 0).any() or abs(float(prior.sum()) - 1) > 1e-4:
            raise ValueError(f"prior must be {self.classes} probabilities summing to 1, got {prior}")
        n = len(levels)
        log_joint = torch.stack([
            -F.cross_entropy(self(levels, torch.full((n,), y, dtype=torch.long, device=levels.device)),
                             levels[:, 0], reduction="none").sum((1, 2)) + math.log(max(float(prior[y]), 1e-300))
            for y in range(self.classes)], dim=1)                        # [N, classes], nats
        pixels = levels[0].numel()
        return -(torch.logsumexp(log_joint, dim=1) / (pixels * math.log(2))).mean()

    @torch.no_grad()
    def sample(self, n: int, size: int = 28, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """Draw ``n`` images pixel by pixel in raster order: ``int64 [n, 1, size, size]``
        (``size * size`` forward passes: the price of an autoregressive model); a conditional
        model draws image ``k`` of class ``labels[k]``. Each pass reads only the window pixel
        ``(i, j)`` can see (``reach`` rows above it and its own row, ``reach`` columns either
        side), which gives the same probabilities as a pass over the whole image at a fraction of
        the cost: no input outside the window is within reach."""
        device = self.head[-1].weight.device
        self._check_labels(labels, n)
        labels = None if labels is None else labels.to(device)
        out = torch.zeros(n, 1, size, size, dtype=torch.long, device=device)
        for i in range(size):
            top = max(0, i - self.reach)
            for j in range(size):
                left = max(0, j - self.reach)
                window = out[:, :, top:i + 1, left:j + self.reach + 1]
                logits = self(window, labels, (top, left, size))
                probs = F.softmax(logits[:, :, i - top, j - left], dim=1)
                out[:, 0, i, j] = torch.multinomial(probs.cpu(), 1, generator=generator)[:, 0].to(device)
        return out


def gaussian_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, diag(exp(log_var))) || N(0, I))`` per example, summed over the latent
    dimensions: ``0.5 * sum(mu^2 + exp(log_var) - log_var - 1)``. ``[N, D] -> [N]``.

    First used in section 15.4, *Variational autoencoders*.
    """
    return 0.5 * (mu.pow(2) + log_var.exp() - log_var - 1).sum(dim=1)


def _encoder(width: int, out: int) -> nn.Sequential:
    """``[N, 1, 28, 28] -> [N, out]``: two stride-2 convolutions and two linear layers."""
    return nn.Sequential(
        nn.Conv2d(1, width, 4, 2, 1), nn.ReLU(),             # 14 x 14
        nn.Conv2d(width, 2 * width, 4, 2, 1), nn.ReLU(),     # 7 x 7
        nn.Flatten(), nn.Linear(2 * width * 49, 256), nn.ReLU(), nn.Linear(256, out))


def _decoder(latent: int, width: int) -> nn.Sequential:
    """``[N, latent] -> [N, 1, 28, 28]`` pixel logits: the encoder's mirror image."""
    return nn.Sequential(
        nn.Linear(latent, 256), nn.ReLU(), nn.Linear(256, 2 * width * 49), nn.ReLU(),
        nn.Unflatten(1, (2 * width, 7, 7)),
        nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),   # 14 x 14
        nn.ConvTranspose2d(width, 1, 4, 2, 1))                      # 28 x 28 logits


def _check_digits(x: torch.Tensor, who: str) -> None:
    if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
        raise ValueError(f"{who} takes images [N, 1, 28, 28] in [0, 1], got {tuple(x.shape)}")


class Autoencoder(nn.Module):
    """A plain autoencoder: a deterministic code ``z = e(x)`` of ``latent`` numbers and a decoder
    back to pixel logits, trained to reconstruct (binary cross-entropy per pixel). The same
    encoder and decoder as ``VAE``, without the prior: nothing says which codes are likely.

    First used in section 15.3, *Autoencoders*.
    """

    def __init__(self, latent: int = 2, width: int = 32):
        super().__init__()
        self.latent = latent
        self.encoder = _encoder(width, latent)
        self.decoder = _decoder(latent, width)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        _check_digits(x, "Autoencoder")
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel logits ``[N, 1, 28, 28]``."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        """``(reconstruction,)``: the cross-entropy of each image ``[N]``, in nats."""
        logits = self.decode(self.encode(x))
        return (F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3)),)


class VAE(nn.Module):
    """A variational autoencoder for ``[N, 1, 28, 28]`` digits with a ``latent``-dimensional
    Gaussian code: a convolutional encoder to ``(mu, log_var)``, a decoder from ``z`` to pixel
    logits (a Bernoulli likelihood per pixel). ``latent=2`` gives a code one can draw.

    First used in section 15.4, *Variational autoencoders*.
    """

    def __init__(self, latent: int = 2, width: int = 32):
        super().__init__()
        self.latent = latent
        self.encoder = _encoder(width, 2 * latent)
        self.decoder = _decoder(latent, width)

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
        _check_digits(x, "VAE")
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
    moves the codes towards the encoder's outputs and commits the encoder to its codes.

    First used in section 15.4, *Variational autoencoders*.
    """

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


class VQVAE(nn.Module):
    """A small VQ-VAE for ``[N, 1, 28, 28]`` digits: a convolutional encoder to a ``7 x 7`` map of
    ``dim``-vectors, ``VectorQuantizer`` with ``codes`` codebook vectors, and a decoder from the
    quantised map to pixel logits. Each image becomes 49 code indices ``[N, 7, 7]``, which a
    PixelCNN over the grid of indices can learn to draw (the prior).

    First used in section 15.4, *Variational autoencoders*.
    """

    def __init__(self, codes: int = 32, dim: int = 16, width: int = 32, beta: float = 0.25):
        super().__init__()
        self.codes = codes
        self.encoder = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.ReLU(),                  # 14 x 14
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.ReLU(),          # 7 x 7
            nn.Conv2d(2 * width, dim, 1))
        self.quantizer = VectorQuantizer(codes, dim, beta)
        self.decoder = nn.Sequential(
            nn.Conv2d(dim, 2 * width, 3, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),   # 14 x 14
            nn.ConvTranspose2d(width, 1, 4, 2, 1))                      # 28 x 28 logits

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code indices ``int64 [N, 7, 7]`` of images ``[N, 1, 28, 28]``."""
        _check_digits(x, "VQVAE")
        return self.quantizer(self.encoder(x))[1]

    def decode(self, index: torch.Tensor) -> torch.Tensor:
        """Pixel logits ``[N, 1, 28, 28]`` from code indices ``[N, 7, 7]``."""
        if index.dtype != torch.long or index.ndim != 3:
            raise ValueError(f"code indices must be int64 [N, H, W], got {index.dtype} {tuple(index.shape)}")
        if index.min() < 0 or index.max() >= self.codes:
            raise ValueError(f"code indices must lie in 0..{self.codes - 1}")
        return self.decoder(self.quantizer.codebook(index).permute(0, 3, 1, 2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(reconstruction [N], vq [N])``: each image's cross-entropy in nats, summed over its
        pixels, and the codebook plus commitment loss summed over its code map (the batch's mean
        squared distance times the map's size, repeated ``[N]``). Both are sums per image, so
        that ``beta`` keeps the balance of the paper; a mean over the code's entries against a
        sum over 784 pixels would let the reconstruction's gradient drag the encoder's outputs
        ever farther from their codes."""
        _check_digits(x, "VQVAE")
        z = self.encoder(x)
        quantised, _, vq_loss = self.quantizer(z)
        logits = self.decoder(quantised)
        reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
        return reconstruction, (vq_loss * z[0].numel()).expand(len(x))


def codebook_usage(index: torch.Tensor, codes: int) -> tuple[float, float]:
    """How much of a codebook ``codes`` long the indices use: ``(fraction of codes used,
    perplexity)``, the perplexity ``exp(entropy)`` of the codes' frequencies being the number of
    equally used codes that would give the same entropy (``codes`` at best, 1 at worst).

    First used in section 15.4, *Variational autoencoders*.
    """
    counts = torch.bincount(index.flatten().cpu(), minlength=codes).double()
    if len(counts) > codes:
        raise ValueError(f"indices go up to {len(counts) - 1}, beyond a codebook of {codes}")
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return float((counts > 0).double().mean()), float(entropy.exp())


class Generator(nn.Module):
    """DCGAN's generator for 28x28 images: noise ``[N, latent]`` -> a 7x7 map -> 14x14 -> 28x28
    by stride-2 transposed convolutions (kernel 4: divisible by the stride, no checkerboard),
    batch norm and ReLU, then ``tanh``; returns images ``[N, 1, 28, 28]`` in ``[0, 1]``.

    With ``classes`` it is a conditional GAN's generator (Mirza and Osindero 2014): the label
    ``[N]``, one-hot, is appended to the noise, and the image should show that class.

    First used in section 15.5, *Generative adversarial networks*.
    """

    def __init__(self, latent: int = 32, width: int = 32, classes: int = 0):
        super().__init__()
        self.latent, self.classes = latent, classes
        self.net = nn.Sequential(
            nn.Linear(latent + classes, 2 * width * 49, bias=False), nn.BatchNorm1d(2 * width * 49), nn.ReLU(),
            nn.Unflatten(1, (2 * width, 7, 7)),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.latent:
            raise ValueError(f"noise must be [N, {self.latent}], got {tuple(z.shape)}")
        _check_class_labels(labels, self.classes, len(z), "generator")
        if self.classes:
            z = torch.cat([z, F.one_hot(labels, self.classes).to(z.dtype)], dim=1)
        return (self.net(z) + 1) / 2


class Discriminator(nn.Module):
    """DCGAN's discriminator: images ``[N, 1, 28, 28]`` in ``[0, 1]`` -> one logit each ``[N]``
    ("real" when positive), by stride-2 convolutions with leaky ReLUs.

    With ``classes`` it is a projection discriminator (Miyato and Koyama 2018), a conditional
    GAN's: a learned vector per class is dotted with the features and added to the logit, so
    that it judges whether an image is a real image *of the given label* ``[N]``.

    First used in section 15.5, *Generative adversarial networks*.
    """

    def __init__(self, width: int = 32, classes: int = 0):
        super().__init__()
        self.classes = classes
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2),                       # 14 x 14
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2),                                                      # 7 x 7
            nn.Flatten())
        self.out = nn.Linear(2 * width * 49, 1)
        self.projection = nn.Embedding(classes, 2 * width * 49) if classes else None
        if classes:   # zero at the start: the label's term grows from nothing, not from a
            nn.init.zeros_(self.projection.weight)   # sum of 1,568 random products

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        _check_class_labels(labels, self.classes, len(x), "discriminator")
        h = self.features(x * 2 - 1)
        logit = self.out(h)[:, 0]
        if self.classes:
            logit = logit + (self.projection(labels) * h).sum(1)
        return logit


def _check_class_labels(labels: torch.Tensor | None, classes: int, n: int, who: str) -> None:
    if classes and labels is None:
        raise ValueError(f"this {who} is conditional on {classes} classes: give labels [N]")
    if not classes and labels is not None:
        raise ValueError(f"labels given to a {who} built without classes")
    if labels is not None and (labels.shape != (n,) or labels.dtype != torch.long
                               or labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"labels must be int64 [{n}] in 0..{classes - 1}, got {labels.dtype} "
                         f"{tuple(labels.shape)}")


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``-(log D(x) + log(1 - D(G(z))))``, averaged: the discriminator's side of the minimax
    game, as binary cross-entropy with real = 1 and fake = 0.

    First used in section 15.5, *Generative adversarial networks*.
    """
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def generator_loss(fake_logits: torch.Tensor, saturating: bool = False) -> torch.Tensor:
    """The generator's loss, averaged. By default the non-saturating ``-log D(G(z))``: it has the
    same fixed point as the minimax game's ``log(1 - D(G(z)))`` (``saturating=True``, which the
    generator minimises) but strong gradients while the discriminator wins, early in training,
    where ``log(1 - D)`` is flat. Per logit ``a`` (``D = sigmoid(a)``) the gradients are
    ``-(1 - D)`` and ``-D``.

    First used in section 15.5, *Generative adversarial networks*.
    """
    if saturating:
        return -F.softplus(fake_logits).mean()           # log(1 - sigmoid(a)) = -softplus(a)
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def optimal_discriminator(p_data: torch.Tensor, p_g: torch.Tensor) -> torch.Tensor:
    """The discriminator that maximises the GAN value for fixed densities (evaluated on the
    same points): ``D*(x) = p_data(x) / (p_data(x) + p_g(x))``; 1/2 where both are zero.

    First used in section 15.5, *Generative adversarial networks*.
    """
    total = p_data + p_g
    return torch.where(total > 0, p_data / total.clamp(min=1e-300), torch.full_like(total, 0.5))


def gan_value(d: torch.Tensor, p_data: torch.Tensor, p_g: torch.Tensor, dx: float) -> torch.Tensor:
    """The GAN value ``V(D, G) = E_data[log D] + E_g[log(1 - D)]`` for densities sampled on a
    grid of spacing ``dx`` (a Riemann sum), with ``D`` given on the same grid.

    First used in section 15.5, *Generative adversarial networks*.
    """
    eps = 1e-12
    return ((p_data * torch.log(d.clamp(min=eps))).sum()
            + (p_g * torch.log((1 - d).clamp(min=eps))).sum()) * dx


def adain(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Adaptive instance normalisation (StyleGAN's AdaIN): normalise each channel of each image
    ``x [N, C, H, W]`` to zero mean and unit variance over its pixels, then scale and shift it
    by that image's style, ``scale`` and ``bias [N, C]``. The style replaces the statistics.

    First used in section 15.5, *Generative adversarial networks*.
    """
    if x.ndim != 4 or scale.shape != x.shape[:2] or bias.shape != x.shape[:2]:
        raise ValueError(f"adain takes x [N, C, H, W] and scale, bias [N, C]; got {tuple(x.shape)}, "
                         f"{tuple(scale.shape)}, {tuple(bias.shape)}")
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), keepdim=True, unbiased=False)
    return scale[:, :, None, None] * (x - mean) / torch.sqrt(var + eps) + bias[:, :, None, None]


class StyleMapping(nn.Module):
    """StyleGAN's mapping network and the affine maps to styles: noise ``z [N, latent]`` is
    normalised, passed through ``layers`` fully connected layers with leaky ReLUs to ``w``, and
    ``styles(w)`` gives each of ``n_styles`` synthesis layers its ``(scale, bias) [N, channels]``
    (the scale centred on 1).

    First used in section 15.5, *Generative adversarial networks*.
    """

    def __init__(self, latent: int = 8, layers: int = 4, channels: int = 4, n_styles: int = 2):
        super().__init__()
        blocks = []
        for _ in range(layers):
            blocks += [nn.Linear(latent, latent), nn.LeakyReLU(0.2)]
        self.mapping = nn.Sequential(*blocks)
        self.affine = nn.ModuleList([nn.Linear(latent, 2 * channels) for _ in range(n_styles)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``w [N, latent]``."""
        z = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)   # pixel norm of the noise
        return self.mapping(z)

    def styles(self, w: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for affine in self.affine:
            scale, bias = affine(w).chunk(2, dim=1)
            out.append((1 + scale, bias))
        return out


class SampleReader:
    """A classifier trained in the book, used to judge generated or translated images (digits in
    chapters 15 and 16, shoes in section 16.1): its 64-number feature layer is the space of the
    Fréchet distance (``features``), and its prediction reads which class a sample shows
    (``labels``, ``agreement``), from up to ten classes. A ``SmallConvNet(feature_dim=64)``
    trained with ``dlcv.training.fit`` on ``images [N, 1, 28, 28]`` in [0, 1] with ``labels
    [N]``, from ``torch.manual_seed(seed)``: Adam at ``lr``, annealed to zero over ``epochs`` on
    a cosine (the annealing is worth about a point of test accuracy on 8,000 digits).

    First used in section 15.6, *Measuring samples: the Fréchet distance*.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, epochs: int = 6,
                 lr: float = 3e-3, seed: int = 0, device=None):
        from .models import SmallConvNet
        from .training import TensorData, fit

        device = torch.device(device) if device is not None else images.device
        torch.manual_seed(seed)
        self.net = SmallConvNet(feature_dim=64).to(device)
        opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        fit(self.net, TensorData(images, labels).to(device), epochs=epochs, optimizer=opt,
            scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs), seed=seed)
        self.net.eval()
        self.device = device

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 1, 28, 28]`` in [0, 1] -> the feature layer ``[N, 16]``, on the CPU."""
        return torch.cat([self.net.features(b.to(self.device)).cpu() for b in images.split(500)])

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """The classifier's softmax over the ten digits for each image, ``[N, 10]`` on the CPU."""
        return torch.cat([self.net(b.to(self.device)).softmax(1).cpu() for b in images.split(500)])

    def confident(self, images: torch.Tensor, threshold: float = 0.9) -> float:
        """The share of ``images`` that the classifier reads as some digit with probability at
        least ``threshold``: how many samples look like a digit at all, whichever digit."""
        return (self.probabilities(images).max(1).values >= threshold).float().mean().item()

    @torch.no_grad()
    def labels(self, images: torch.Tensor) -> torch.Tensor:
        """The digit each image ``[N, 1, 28, 28]`` is read as, ``[N]`` on the CPU."""
        return torch.cat([self.net(b.to(self.device)).argmax(1).cpu() for b in images.split(500)])

    def agreement(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """The share of ``images`` read as their ``labels`` (a test accuracy, or how often
        class-conditional samples show the digit asked for)."""
        return (self.labels(images) == labels.cpu()).float().mean().item()


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two sets of features ``[N, D]`` and
    ``[M, D]``: ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, with unbiased
    covariances. FID is this with Inception-v3's pool features; with another network's features
    it is another number, on another scale. ``tr (S_a S_b)^(1/2)`` is computed as the sum of the
    square roots of the eigenvalues of ``S_a^(1/2) S_b S_a^(1/2)`` (symmetric, so ``eigvalsh``),
    in float64.

    First used in section 15.6, *Measuring samples: the Fréchet distance*.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be [N, D] and [M, D], got {tuple(a.shape)} and {tuple(b.shape)}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("each set needs at least two feature vectors for a covariance")
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    evals, evecs = torch.linalg.eigh(cov_a)
    root_a = evecs @ torch.diag(evals.clamp(min=0).sqrt()) @ evecs.T
    middle = root_a @ cov_b @ root_a
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * trace_root)


# ----------------------------------------------------------------------------- training loops
def _check_images(images: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 1 or images.dtype.is_floating_point is False:
        raise ValueError(f"images must be float [N, 1, H, W] in [0, 1], got {images.dtype} "
                         f"{tuple(images.shape)}")


def _train_terms(model: nn.Module, images: torch.Tensor, names: tuple[str, ...], *, epochs: int,
                 batch_size: int, lr: float, seed: int) -> list[dict]:
    """Adam on the sum of the per-example terms ``model(x)`` returns (named ``names``), averaged
    over the batch; returns each epoch's mean of every term (``training.run_epochs``)."""
    _check_images(images)
    device = runtime.device_of(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step(epoch, idx):
        terms = model(images[idx].to(device))
        loss = sum(t.mean() for t in terms)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {name: t.sum() for name, t in zip(names, terms)}   # totals: per example below

    return run_epochs(model, len(images), batch_size=batch_size, epochs=epochs,
                      generator=torch.Generator().manual_seed(seed), step=step, per="example")


def train_vae(vae: VAE, images: torch.Tensor, *, epochs: int, batch_size: int = 128,
              lr: float = 2e-3, seed: int = 0) -> list[dict]:
    """Maximise the ELBO (minimise ``reconstruction + kl``, per example) with Adam. Returns, per
    epoch, the mean of both terms in nats, so that a chapter can plot how they trade off.

    First used in section 15.4, *Variational autoencoders*.
    """
    return _train_terms(vae, images, ("reconstruction", "kl"), epochs=epochs, batch_size=batch_size,
                        lr=lr, seed=seed)


def train_autoencoder(model: Autoencoder, images: torch.Tensor, *, epochs: int, batch_size: int = 128,
                      lr: float = 2e-3, seed: int = 0) -> list[dict]:
    """Minimise the reconstruction's cross-entropy; per epoch ``{"reconstruction": nats}``.

    First used in section 15.3, *Autoencoders*.
    """
    return _train_terms(model, images, ("reconstruction",), epochs=epochs, batch_size=batch_size,
                        lr=lr, seed=seed)


def train_vqvae(model: VQVAE, images: torch.Tensor, *, epochs: int, batch_size: int = 128,
                lr: float = 2e-3, seed: int = 0) -> list[dict]:
    """Minimise reconstruction plus the codebook and commitment loss; per epoch the mean of
    ``reconstruction`` (nats per image) and ``vq``.

    First used in section 15.4, *Variational autoencoders*.
    """
    return _train_terms(model, images, ("reconstruction", "vq"), epochs=epochs, batch_size=batch_size,
                        lr=lr, seed=seed)


def train_pixelcnn(model: PixelCNN, images: torch.Tensor, *, labels: torch.Tensor | None = None,
                   epochs: int, batch_size: int = 64, lr: float = 2e-3, seed: int = 0) -> list[float]:
    """Maximum likelihood: minimise the cross-entropy of every pixel's level given the pixels
    before it. ``images`` are float ``[N, 1, H, W]`` in ``[0, 1]`` (quantised to the model's
    levels here) or already levels, int64 ``[N, 1, H, W]`` (a VQ-VAE's code indices, for its
    prior), with ``labels [N]`` for a class-conditional model. Returns each epoch's mean negative
    log-likelihood in bits per pixel.

    First used in section 15.2, *Autoregressive models: PixelCNN*.
    """
    if images.dtype == torch.long:
        if images.ndim != 4 or images.shape[1] != 1 or images.min() < 0 or images.max() >= model.levels:
            raise ValueError(f"levels must be int64 [N, 1, H, W] in 0..{model.levels - 1}, got "
                             f"{tuple(images.shape)} from {int(images.min())} to {int(images.max())}")
        levels = images
    else:
        _check_images(images)
        levels = quantise(images, model.levels)
    model._check_labels(labels, len(images))
    device = runtime.device_of(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step(epoch, idx):
        y = None if labels is None else labels[idx].to(device)
        loss = model.nll_bits_per_pixel(levels[idx].to(device), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"bits": loss.item() * len(idx)}

    log = run_epochs(model, len(images), batch_size=batch_size, epochs=epochs,
                     generator=torch.Generator().manual_seed(seed), step=step, per="example")
    return [e["bits"] for e in log]


def train_gan(generator: Generator, discriminator: Discriminator, images: torch.Tensor, *,
              labels: torch.Tensor | None = None, epochs: int, batch_size: int = 64,
              lr: float = 2e-4, seed: int = 0, ema: float | None = None, on_epoch=None) -> list[dict]:
    """The GAN training loop, as the paper and DCGAN run it: per batch one step of the
    discriminator (real images against the generator's, ``discriminator_loss``), then one step
    of the generator (``generator_loss`` on fresh fakes), each with Adam (beta1 = 0.5, DCGAN's
    choice). Returns per epoch the mean losses and the discriminator's mean output on real and
    on fake images, the numbers a GAN's training is watched by; ``on_epoch(epoch)`` is called
    after each epoch (to record samples).

    With ``labels [N]`` (for a generator and discriminator built with ``classes``) it trains a
    conditional GAN: each fake is drawn for the label of a real image of the batch, and the
    discriminator judges image and label together. ``ema`` keeps an exponential moving average
    of the generator's weights and batch-norm statistics with that decay
    (``torch.optim.swa_utils``), which the generator holds at the end: the average of the last
    few hundred steps, as ProGAN and StyleGAN sample from, smooths the oscillation of the game.

    First used in section 15.5, *Generative adversarial networks*.
    """
    _check_images(images)
    _check_class_labels(labels, generator.classes, len(images), "generator")
    _check_class_labels(labels, discriminator.classes, len(images), "discriminator")
    if ema is not None and not 0 < ema < 1:
        raise ValueError(f"ema must be a decay between 0 and 1, or None; got {ema}")
    device = runtime.device_of(generator)
    gen = torch.Generator().manual_seed(seed + 1)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.5, 0.999))
    average = None
    if ema is not None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
        average = AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(ema), use_buffers=True)

    def step(epoch, idx):
        real = images[idx].to(device)
        y = None if labels is None else labels[idx].to(device)
        z = torch.randn(len(idx), generator.latent, generator=gen).to(device)
        fake = generator(z, y)
        real_logits, fake_logits = discriminator(real, y), discriminator(fake.detach(), y)
        d_loss = discriminator_loss(real_logits, fake_logits)     # first the discriminator
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = generator_loss(discriminator(fake, y))           # then the generator
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        if average is not None:
            average.update_parameters(generator)
        return {"d_loss": d_loss, "g_loss": g_loss, "d_real": torch.sigmoid(real_logits).mean(),
                "d_fake": torch.sigmoid(fake_logits).mean()}

    log = run_epochs([generator, discriminator], len(images), batch_size=batch_size,
                     epochs=epochs, generator=torch.Generator().manual_seed(seed), step=step,
                     on_epoch=on_epoch)
    if average is not None:
        generator.load_state_dict(average.module.state_dict())
    return log
