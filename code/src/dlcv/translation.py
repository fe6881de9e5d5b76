"""Image-to-image translation from scratch (Chapter 16): pix2pix and CycleGAN, small enough to
train on 28x28 images on a CPU.

Images are ``[N, C, 28, 28]`` in ``[0, 1]``.

* ``canny_edges`` makes the paired task: the edges of an image (scikit-image's Canny) as the
  input, the image as the target, as pix2pix's edges-to-shoes. ``stroke_width`` makes the
  unpaired one: handwritten digits split into thin and bold writing, CycleGAN's two domains.
* ``TranslationUNet`` is the generator: an encoder-decoder with skips, dropout in the decoder
  (pix2pix's only source of randomness: it drops the noise vector ``z``), a sigmoid output.
* ``PatchDiscriminator`` is PatchGAN: strided convolutions down to a ``7 x 7`` grid of logits,
  each judging whether one patch of its receptive field is real. With ``condition_channels``
  it sees the input beside the output, ``D(x, y)``, as pix2pix's conditional discriminator.
* ``pix2pix_losses`` and ``cycle_losses`` compute every term of the two papers' objectives
  (adversarial terms as binary cross-entropy on logits, the generator's in the non-saturating
  form; the L1 reconstruction and cycle terms); ``train_pix2pix`` and ``train_cyclegan``
  alternate the discriminators' and the generators' steps.
"""
from __future__ import annotations


import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import runtime
from .training import run_epochs

__all__ = ["canny_edges", "stroke_width", "TranslationUNet", "PatchDiscriminator", "pix2pix_losses", "cycle_losses",
           "train_pix2pix", "train_cyclegan"]


def canny_edges(images, sigma: float = 1.0) -> torch.Tensor:
    """Edge maps ``float [N, 1, H, W]`` of zeros and ones from grey images ``[N, H, W]`` (uint8
    or float in ``[0, 1]``), by Canny's detector (``skimage.feature.canny``).

    First used in section 16.1.1, *Edges to shoes*.
    """
    from skimage.feature import canny

    array = np.asarray(images)
    if array.ndim != 3:
        raise ValueError(f"images must be [N, H, W] grey images, got shape {array.shape}")
    if array.dtype == np.uint8:
        array = array / 255.0
    edges = np.stack([canny(a, sigma=sigma) for a in array])
    return torch.from_numpy(edges).float()[:, None]


def stroke_width(images) -> torch.Tensor:
    """The mean stroke width, in pixels, of each grey image ``[N, H, W]`` or ``[N, 1, H, W]``
    (uint8, or float in ``[0, 1]``): its ink (the pixels above half intensity) divided by the
    length of its skeleton (``skimage.morphology.skeletonize``), so that a line drawn ``k``
    pixels wide measures about ``k``. Returns ``float [N]``; an image without ink gives 0.
    Splits handwritten digits into thin and bold writing, CycleGAN's two domains in section 16.1.

    First used in section 16.1.2, *Without pairs: CycleGAN*.
    """
    from skimage.morphology import skeletonize

    array = np.asarray(images.cpu() if isinstance(images, torch.Tensor) else images)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3:
        raise ValueError(f"images must be [N, H, W] or [N, 1, H, W] grey images, got shape {array.shape}")
    ink = array > (127 if array.dtype == np.uint8 else 0.5)
    widths = [i.sum() / max(int(skeletonize(i).sum()), 1) for i in ink]
    return torch.tensor(widths, dtype=torch.float32)


class TranslationUNet(nn.Module):
    """``[N, in_channels, 28, 28] -> [N, out_channels, 28, 28]`` in ``[0, 1]``: two stride-2
    convolutions down (14, 7), transposed convolutions up, the encoder's maps concatenated on
    the way up (skips), dropout in the decoder.

    First used in section 16.1.1, *Edges to shoes*.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 32, dropout: float = 0.5):
        super().__init__()
        w = width

        def down(a, b):
            return nn.Sequential(nn.Conv2d(a, b, 4, 2, 1), nn.BatchNorm2d(b), nn.LeakyReLU(0.2))

        def up(a, b):
            return nn.Sequential(nn.ConvTranspose2d(a, b, 4, 2, 1), nn.BatchNorm2d(b), nn.ReLU(),
                                 nn.Dropout(dropout))

        self.inp = nn.Sequential(nn.Conv2d(in_channels, w, 3, padding=1), nn.LeakyReLU(0.2))   # 28
        self.down1, self.down2 = down(w, 2 * w), down(2 * w, 4 * w)                           # 14, 7
        self.mid = nn.Sequential(nn.Conv2d(4 * w, 4 * w, 3, padding=1), nn.ReLU())
        self.up2, self.up1 = up(8 * w, 2 * w), up(4 * w, w)                                   # 14, 28
        self.out = nn.Conv2d(2 * w, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[2:] != (28, 28):
            raise ValueError(f"TranslationUNet takes [N, C, 28, 28], got {tuple(x.shape)}")
        h0 = self.inp(x)
        h1 = self.down1(h0)
        h2 = self.down2(h1)
        u2 = self.up2(torch.cat([self.mid(h2), h2], 1))
        u1 = self.up1(torch.cat([u2, h1], 1))
        return torch.sigmoid(self.out(torch.cat([u1, h0], 1)))


class PatchDiscriminator(nn.Module):
    """PatchGAN for 28x28 images: ``[N, channels, 28, 28]`` (plus ``condition_channels`` of the
    input, concatenated) ``-> [N, 7, 7]`` logits, one per overlapping patch.

    First used in section 16.1.1, *Edges to shoes*.
    """

    def __init__(self, channels: int = 1, condition_channels: int = 0, width: int = 32):
        super().__init__()
        self.condition_channels = condition_channels
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(channels + condition_channels, w, 4, 2, 1), nn.LeakyReLU(0.2),        # 14
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),         # 7
            nn.Conv2d(2 * w, 1, 3, padding=1))

    def forward(self, y: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        if (condition is None) != (self.condition_channels == 0):
            raise ValueError("a conditional discriminator needs the input image, an unconditional one takes none")
        inp = y if condition is None else torch.cat([condition, y], 1)
        return self.net(inp * 2 - 1)[:, 0]


def _real(logits: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def _fake(logits: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))


def pix2pix_losses(G: TranslationUNet, D: PatchDiscriminator, x: torch.Tensor, y: torch.Tensor,
                   lam: float = 100.0) -> dict:
    """The terms of pix2pix's objective on a batch of pairs ``(x, y)``:
    ``d`` = ``-log D(x, y) - log(1 - D(x, G(x)))`` (fakes detached), ``g_gan`` = ``-log D(x,
    G(x))`` (non-saturating), ``l1`` = ``mean |y - G(x)|``, ``g`` = ``g_gan + lam * l1``, and
    the generator's output ``fake``."""
    fake = G(x)
    g_gan, l1 = _pix2pix_g(D, x, y, fake)
    return {"d": _pix2pix_d(D, x, y, fake), "g_gan": g_gan, "l1": l1, "g": g_gan + lam * l1, "fake": fake}


def _pix2pix_d(D, x, y, fake):
    """The conditional discriminator's loss, the fakes detached."""
    return _real(D(y, x)) + _fake(D(fake.detach(), x))


def _pix2pix_g(D, x, y, fake):
    """The generator's terms: non-saturating adversarial, and L1 to the target."""
    return _real(D(fake, x)), (y - fake).abs().mean()


def cycle_losses(G: nn.Module, Fb: nn.Module, D_X: PatchDiscriminator, D_Y: PatchDiscriminator,
                 x: torch.Tensor, y: torch.Tensor, lam: float = 10.0, identity: float = 0.0) -> dict:
    """The terms of CycleGAN's objective on unpaired batches ``x`` (domain X) and ``y`` (Y), with
    ``G: X -> Y`` and ``Fb: Y -> X``: the generators' adversarial terms ``gan_G`` (``-log
    D_Y(G(x))``) and ``gan_F``, the cycle terms ``cyc_x = mean |F(G(x)) - x|`` and ``cyc_y``,
    the identity term ``idt = mean |G(y) - y| + mean |F(x) - x|`` (CycleGAN's optional loss
    that asks each generator to leave an image of its own output domain alone), the generators'
    total ``g = gan_G + gan_F + lam (cyc_x + cyc_y) + identity * idt``, and the discriminators'
    losses ``d_X`` and ``d_Y`` (fakes detached).

    First used in section 16.1.2, *Without pairs: CycleGAN*.
    """
    fake_y, fake_x = G(x), Fb(y)
    out = {**_cycle_g(G, Fb, D_X, D_Y, x, y, fake_x, fake_y), **_cycle_d(D_X, D_Y, x, y, fake_x, fake_y),
           "idt": _identity(G, Fb, x, y), "fake_y": fake_y, "fake_x": fake_x}
    out["g"] = _generators_total(out, lam, identity)
    return out


def _identity(G, Fb, x, y) -> torch.Tensor:
    """How far each generator moves an image that is already in its output domain."""
    return (G(y) - y).abs().mean() + (Fb(x) - x).abs().mean()


def _generators_total(terms: dict, lam: float, identity: float) -> torch.Tensor:
    total = terms["gan_G"] + terms["gan_F"] + lam * (terms["cyc_x"] + terms["cyc_y"])
    return total + identity * terms["idt"] if identity else total


def _cycle_d(D_X, D_Y, x, y, fake_x, fake_y) -> dict:
    """Both discriminators' losses, the fakes detached."""
    return {"d_Y": _real(D_Y(y)) + _fake(D_Y(fake_y.detach())),
            "d_X": _real(D_X(x)) + _fake(D_X(fake_x.detach()))}


def _cycle_g(G, Fb, D_X, D_Y, x, y, fake_x, fake_y) -> dict:
    """The generators' adversarial (non-saturating) and cycle terms."""
    return {"gan_G": _real(D_Y(fake_y)), "gan_F": _real(D_X(fake_x)),
            "cyc_x": (Fb(fake_y) - x).abs().mean(), "cyc_y": (G(fake_x) - y).abs().mean()}


def train_pix2pix(G: TranslationUNet, D: PatchDiscriminator | None, x: torch.Tensor, y: torch.Tensor,
                  *, epochs: int, lam: float = 100.0, batch_size: int = 64, lr: float = 2e-4,
                  seed: int = 0) -> list[dict]:
    """Alternate a discriminator step and a generator step per batch of pairs (Adam, beta1 =
    0.5, as pix2pix); returns each epoch's mean of ``d``, ``g_gan`` and ``l1``. With ``D =
    None`` there is no adversarial term: the generator minimises the L1 distance alone (the
    paper's "L1" baseline), and each epoch's log holds ``l1`` only.

    First used in section 16.1.1, *Edges to shoes*.
    """
    if len(x) != len(y):
        raise ValueError(f"pix2pix needs pairs: {len(x)} inputs and {len(y)} targets")
    device = runtime.device_of(G)
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999)) if D is not None else None

    def step(epoch, idx):
        xb, yb = x[idx].to(device), y[idx].to(device)
        fake = G(xb)
        if D is None:                                   # the L1 baseline: no discriminator
            l1 = (yb - fake).abs().mean()
            terms, g = {"l1": l1}, l1
        else:
            d = _pix2pix_d(D, xb, yb, fake)
            opt_d.zero_grad()
            d.backward()
            opt_d.step()
            g_gan, l1 = _pix2pix_g(D, xb, yb, fake)    # against the updated discriminator
            terms, g = {"d": d, "g_gan": g_gan, "l1": l1}, g_gan + lam * l1
        opt_g.zero_grad()
        g.backward()
        opt_g.step()
        return terms

    return run_epochs([G] if D is None else [G, D], len(x), batch_size=batch_size, epochs=epochs,
                      generator=torch.Generator().manual_seed(seed), step=step)


def train_cyclegan(G, Fb, D_X, D_Y, xs: torch.Tensor, ys: torch.Tensor, *, epochs: int,
                   lam: float = 10.0, identity: float = 0.0, batch_size: int = 64, lr: float = 2e-4,
                   seed: int = 0) -> list[dict]:
    """CycleGAN's loop on unpaired sets ``xs`` and ``ys`` (batches drawn from each
    independently): a step of both discriminators, then of both generators. Returns each
    epoch's mean of every loss term (``idt`` only with ``identity``, the identity term's weight;
    the paper uses ``0.5 lam`` where colours must be kept, 0 elsewhere).

    First used in section 16.1.2, *Without pairs: CycleGAN*.
    """
    device = runtime.device_of(G)
    opt_g = torch.optim.Adam(list(G.parameters()) + list(Fb.parameters()), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(list(D_X.parameters()) + list(D_Y.parameters()), lr=lr, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(seed + 1)
    keys = ("gan_G", "gan_F", "cyc_x", "cyc_y", "d_X", "d_Y") + (("idt",) if identity else ())

    def step(epoch, idx):
        xb = xs[idx].to(device)
        yb = ys[torch.randint(0, len(ys), (len(idx),), generator=gen)].to(device)
        fake_y, fake_x = G(xb), Fb(yb)
        d = _cycle_d(D_X, D_Y, xb, yb, fake_x, fake_y)
        opt_d.zero_grad()
        (d["d_X"] + d["d_Y"]).backward()
        opt_d.step()
        losses = {**_cycle_g(G, Fb, D_X, D_Y, xb, yb, fake_x, fake_y), **d}   # against the updated D
        if identity:
            losses["idt"] = _identity(G, Fb, xb, yb)
        opt_g.zero_grad()
        _generators_total(losses, lam, identity).backward()
        opt_g.step()
        return {k: losses[k] for k in keys}

    return run_epochs([G, Fb, D_X, D_Y], len(xs), batch_size=batch_size, epochs=epochs,
                      generator=torch.Generator().manual_seed(seed), step=step)
