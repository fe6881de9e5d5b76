"""Denoising diffusion from scratch (Chapter 16), small enough to train on digits on a CPU.

Shapes follow PyTorch: images ``[N, C, H, W]`` scaled to ``[-1, 1]`` (the diffusion papers'
convention), timesteps int64 ``[N]`` counted from 0 (``t = 0`` is the first noising step, as
in diffusers; the papers count from 1).

* ``NoiseSchedule`` holds the forward process of Ho et al. (2020): ``beta_t``, ``alpha_t = 1 -
  beta_t`` and ``alpha_bar_t = prod_{s <= t} alpha_s``. ``q_step`` is one noising step,
  ``q_sample`` the closed form ``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps``
  (checked against iterating ``q_step`` and against diffusers' ``DDPMScheduler``).
* ``TimeEmbedding`` is the transformer's sinusoidal encoding of ``t``; ``DenoisingUNet`` is a
  two-level U-Net that predicts the noise, with the time added in every block and, optionally,
  class labels attended to by cross-attention at the bottom, as latent diffusion conditions its
  U-Net on text (a learned "null" label stands for no label: classifier-free guidance).
* ``diffusion_loss`` is the simplified objective ``||eps - eps_theta(x_t, t)||^2``;
  ``ddpm_sample`` is ancestral sampling (one network pass per step, ``T`` steps),
  ``ddim_sample`` the deterministic DDIM sampler on a subsequence of steps (Song et al. 2021),
  both with classifier-free guidance ``eps_u + w (eps_c - eps_u)`` (Ho and Salimans 2022), and
  by default with the estimate of ``x_0`` clamped to the images' range, as diffusers does.
* ``LatentAutoencoder`` is latent diffusion's first stage (Rombach et al. 2022) for digits:
  ``32 x 32`` images to ``4 x 8 x 8`` codes scaled to unit variance, where the same U-Net and
  samplers run twelve times fewer positions.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from . import runtime
from .training import run_epochs

__all__ = ["small_digits", "full_digits", "NoiseSchedule", "TimeEmbedding", "DenoisingUNet", "diffusion_loss", "guided_noise",
           "ddpm_step", "ddpm_sample", "ddim_sample", "predicted_x0", "train_diffusion",
           "LatentAutoencoder", "train_latent_autoencoder"]


def small_digits(images: torch.Tensor) -> torch.Tensor:
    """28 x 28 digits ``[N, 1, 28, 28]`` in ``[0, 1]`` -> ``[N, 1, 16, 16]`` in ``[-1, 1]``: averaged
    over 2 x 2 blocks to 14 x 14 and padded by one pixel of background, so that the U-Net's two
    halvings divide evenly. A small image is far cheaper to denoise (a quarter of the positions)
    and its digits are still readable.

    First used in section 16.2, *Diffusion models*.
    """
    if images.ndim != 4 or images.shape[1:] != (1, 28, 28):
        raise ValueError(f"small_digits takes [N, 1, 28, 28] digits in [0, 1], got {tuple(images.shape)}")
    return F.pad(F.avg_pool2d(images, 2) * 2 - 1, (1, 1, 1, 1), value=-1.0)


def full_digits(images: torch.Tensor) -> torch.Tensor:
    """The inverse of ``small_digits`` for reading: ``[N, 1, 16, 16]`` in ``[-1, 1]`` -> ``[N, 1,
    28, 28]`` in ``[0, 1]`` (the border cropped, bilinear upsampling), the size the book's digit
    classifier reads.

    First used in section 16.2.1, *Sampling: ancestral and DDIM*.
    """
    if images.ndim != 4 or images.shape[1:] != (1, 16, 16):
        raise ValueError(f"full_digits takes [N, 1, 16, 16] images, got {tuple(images.shape)}")
    inner = images[:, :, 1:15, 1:15]
    return ((F.interpolate(inner, scale_factor=2, mode="bilinear", align_corners=False) + 1) / 2).clamp(0, 1)


class NoiseSchedule:
    """The forward (noising) process: ``betas [T]`` (float64), ``alphas``, ``alpha_bars``.

    First used in section 16.2, *Diffusion models*.
    """

    def __init__(self, betas: torch.Tensor):
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or len(betas) < 1 or (betas <= 0).any() or (betas >= 1).any():
            raise ValueError("betas must be a 1-D tensor of values strictly between 0 and 1")
        self.betas = betas
        self.alphas = 1 - betas
        self.alpha_bars = torch.cumprod(self.alphas, dim=0)
        self.T = len(betas)

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> "NoiseSchedule":
        """DDPM's schedule: ``T`` betas evenly spaced from ``beta_start`` to ``beta_end``."""
        return cls(torch.linspace(beta_start, beta_end, T, dtype=torch.float64))

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> "NoiseSchedule":
        """The cosine schedule of Nichol and Dhariwal (2021): ``alpha_bar_t = f(t) / f(0)`` with
        ``f(t) = cos^2((t / T + s) / (1 + s) * pi / 2)``, each ``beta_t = 1 - alpha_bar_t /
        alpha_bar_{t-1}`` capped at ``max_beta``. Noise is added more slowly than by the linear
        schedule in the middle of the process, where the linear one has already wiped a small
        image out (diffusers' ``squaredcos_cap_v2``).

        First used in section 16.2, *Diffusion models*.
        """
        if T < 1:
            raise ValueError(f"T must be a positive number of steps, got {T}")
        f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
        betas = [min(1 - f(t + 1) / f(t), max_beta) for t in range(T)]
        return cls(torch.tensor(betas, dtype=torch.float64))

    def _at(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t)
        if t.dtype != torch.long or (t < 0).any() or (t >= self.T).any():
            raise ValueError(f"timesteps must be int64 in 0..{self.T - 1}")
        return values[t.cpu()].to(like.device, like.dtype).view(-1, *([1] * (like.ndim - 1)))

    def q_step(self, x_prev: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """One step of noising: ``x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps``."""
        beta = self._at(self.betas, t, x_prev)
        return torch.sqrt(1 - beta) * x_prev + torch.sqrt(beta) * noise

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t`` straight from ``x_0``: ``sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps``."""
        a = self._at(self.alpha_bars, t, x0)
        return torch.sqrt(a) * x0 + torch.sqrt(1 - a) * noise


class TimeEmbedding(nn.Module):
    """``t [N] -> [N, dim]``: sines and cosines of ``t`` at geometric frequencies (the
    transformer's positional encoding), then a small MLP."""

    def __init__(self, dim: int):
        super().__init__()
        if dim % 2:
            raise ValueError(f"dim must be even, got {dim}")
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.SiLU(), nn.Linear(2 * dim, dim))

    def sinusoidal(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)
        angles = t.float()[:, None] * freqs[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.sinusoidal(t))


def _norm(channels: int) -> nn.GroupNorm:
    """Group norm with at least four channels a group (at most eight groups). With one channel
    a group it would be instance norm, which erases each map's mean, and with it how bright the
    image is: a narrow U-Net then cannot tell the background's level, and its samples come out
    on grey or black backgrounds."""
    return nn.GroupNorm(max(1, min(8, channels // 4)), channels)


class _Block(nn.Module):
    """Two 3x3 convolutions with group norm and SiLU, the time added in between, residual."""

    def __init__(self, c_in: int, c_out: int, time_dim: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(time_dim, c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class _CrossAttention(nn.Module):
    """Each position of a feature map ``[N, C, H, W]`` (queries) attends to a short sequence of
    context tokens ``[N, L, D]`` (keys and values), residual: how latent diffusion lets text
    steer the U-Net; here the tokens are embedded class labels."""

    def __init__(self, channels: int, context_dim: int, heads: int = 4):
        super().__init__()
        self.norm = _norm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, kdim=context_dim, vdim=context_dim, batch_first=True)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q = self.norm(x).flatten(2).transpose(1, 2)              # [N, H*W, C]
        out, _ = self.attn(q, context, context, need_weights=False)
        return x + out.transpose(1, 2).reshape(n, c, h, w)


class DenoisingUNet(nn.Module):
    """A two-level U-Net predicting the noise in ``x_t [N, C, H, W]`` (H and W divisible by 4):
    blocks at full, half and quarter resolution, skips from the way down to the way up, the
    time embedding in every block. With ``classes``, a label ``[N]`` (``classes`` itself means
    "no label") becomes a context token that the bottom block attends to.

    First used in section 16.2, *Diffusion models*.
    """

    def __init__(self, in_channels: int = 1, width: int = 32, classes: int | None = None,
                 time_dim: int = 64):
        super().__init__()
        self.classes = classes
        self.time = TimeEmbedding(time_dim)
        c1, c2 = width, 2 * width
        self.inp = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.down1 = _Block(c1, c1, time_dim)
        self.pool1 = nn.Conv2d(c1, c1, 4, 2, 1)
        self.down2 = _Block(c1, c2, time_dim)
        self.pool2 = nn.Conv2d(c2, c2, 4, 2, 1)
        self.mid = _Block(c2, c2, time_dim)
        if classes is not None:
            self.label = nn.Embedding(classes + 1, time_dim)        # the last one: no label
            self.cross = _CrossAttention(c2, time_dim)
        self.up2 = nn.ConvTranspose2d(c2, c2, 4, 2, 1)
        self.dec2 = _Block(2 * c2, c2, time_dim)
        self.up1 = nn.ConvTranspose2d(c2, c1, 4, 2, 1)
        self.dec1 = _Block(2 * c1, c1, time_dim)
        self.out = nn.Sequential(_norm(c1), nn.SiLU(), nn.Conv2d(c1, in_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 4 or x.shape[2] % 4 or x.shape[3] % 4:
            raise ValueError(f"x must be [N, C, H, W] with H and W divisible by 4, got {tuple(x.shape)}")
        emb = self.time(t)
        h0 = self.inp(x)
        h1 = self.down1(h0, emb)
        h2 = self.down2(self.pool1(h1), emb)
        m = self.mid(self.pool2(h2), emb)
        if self.classes is not None:
            if labels is None:
                labels = torch.full((len(x),), self.classes, dtype=torch.long, device=x.device)
            m = self.cross(m, self.label(labels)[:, None])             # one context token each
        u2 = self.dec2(torch.cat([self.up2(m), h2], dim=1), emb)
        u1 = self.dec1(torch.cat([self.up1(u2), h1], dim=1), emb)
        return self.out(u1)


def diffusion_loss(model: DenoisingUNet, schedule: NoiseSchedule, x0: torch.Tensor,
                   labels: torch.Tensor | None = None, p_uncond: float = 0.1,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """DDPM's simplified objective: draw ``t`` uniformly and ``eps ~ N(0, I)``, noise ``x_0`` to
    ``x_t`` in one step of the closed form, and return ``mean ||eps - eps_theta(x_t, t)||^2``.
    With labels, each is dropped to "no label" with probability ``p_uncond``, so that one
    network learns both the conditional and the unconditional noise (classifier-free
    guidance)."""
    n = len(x0)
    t = torch.randint(0, schedule.T, (n,), generator=generator).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    x_t = schedule.q_sample(x0, t, noise)
    if labels is not None:
        drop = torch.rand(n, generator=generator).to(x0.device) < p_uncond
        labels = torch.where(drop, torch.full_like(labels, model.classes), labels)
    return F.mse_loss(model(x_t, t, labels), noise)


def guided_noise(model: DenoisingUNet, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None,
                 guidance: float) -> torch.Tensor:
    """The predicted noise, with classifier-free guidance when there are labels:
    ``eps_u + guidance * (eps_c - eps_u)`` (``guidance = 1``: the conditional model; 0: the
    unconditional one; above 1: further towards the label)."""
    if labels is None or guidance == 1:
        return model(x, t, labels)
    both = model(torch.cat([x, x]), torch.cat([t, t]),
                 torch.cat([labels, torch.full_like(labels, model.classes)]))
    conditional, unconditional = both.chunk(2)
    return unconditional + guidance * (conditional - unconditional)


@torch.no_grad()
def ddpm_sample(model: DenoisingUNet, schedule: NoiseSchedule, shape: tuple, *,
                labels: torch.Tensor | None = None, guidance: float = 1.0, clip: float | None = 1.0,
                generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Ancestral sampling: from ``x_T ~ N(0, I)``, ``T`` steps of ``ddpm_step`` (no noise at
    the last step). One network pass per step. When training is cut (the smoke scale,
    ``dlcv.runtime.limit_steps``) only the last ``runtime.SMOKE_STEPS`` steps run: the code
    path is checked, the result means nothing.

    First used in section 16.2.1, *Sampling: ancestral and DDIM*.
    """
    device = device or runtime.device_of(model)
    x = torch.randn(shape, generator=generator).to(device)
    start = runtime.limit_steps(schedule.T)
    for t in reversed(range(start)):
        tt = torch.full((shape[0],), t, dtype=torch.long, device=device)
        eps = guided_noise(model, x, tt, labels, guidance)
        noise = torch.randn(shape, generator=generator).to(device) if t > 0 else None
        x = ddpm_step(schedule, x, t, eps, noise, clip=clip)
    return x


def predicted_x0(schedule: NoiseSchedule, x: torch.Tensor, t: int, eps: torch.Tensor,
                 clip: float | None) -> torch.Tensor:
    """The clean image that ``x_t`` and the predicted noise imply, ``(x_t - sqrt(1 - alpha_bar_t)
    eps) / sqrt(alpha_bar_t)``, clamped to ``[-clip, clip]`` unless ``clip`` is None (diffusers'
    ``clip_sample`` with ``clip_sample_range``: an undertrained network's estimates at large
    ``t`` can lie far outside the range of the data, and the errors compound)."""
    a_bar = float(schedule.alpha_bars[t])
    x0 = (x - math.sqrt(1 - a_bar) * eps) / math.sqrt(a_bar)
    if clip is not None and clip <= 0:
        raise ValueError(f"clip must be positive or None, got {clip}")
    return x0 if clip is None else x0.clamp(-clip, clip)


def ddpm_step(schedule: NoiseSchedule, x: torch.Tensor, t: int, eps: torch.Tensor,
              noise: torch.Tensor | None, clip: float | None = None) -> torch.Tensor:
    """One ancestral step from ``x_t`` to ``x_{t-1}`` given the predicted noise ``eps`` and fresh
    noise ``z`` (None at ``t = 0``): the mean of the posterior ``q(x_{t-1} | x_t, x_0)`` with
    ``x_0`` estimated from ``eps``, plus its standard deviation ``sqrt(beta_t (1 -
    alpha_bar_{t-1}) / (1 - alpha_bar_t))`` times ``z``. Without ``clip`` the mean is
    ``(x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t)``; with it, the same posterior
    mean written through ``x_0`` clamped to ``[-clip, clip]`` (as diffusers' ``DDPMScheduler``
    does)."""
    beta, alpha, a_bar = (float(v[t]) for v in (schedule.betas, schedule.alphas, schedule.alpha_bars))
    a_prev = float(schedule.alpha_bars[t - 1]) if t > 0 else 1.0
    if clip is not None:
        x0 = predicted_x0(schedule, x, t, eps, clip)
        mean = (math.sqrt(a_prev) * beta * x0 + math.sqrt(alpha) * (1 - a_prev) * x) / (1 - a_bar)
    else:
        mean = (x - beta / math.sqrt(1 - a_bar) * eps) / math.sqrt(alpha)
    if t == 0 or noise is None:
        return mean
    var = beta * (1 - a_prev) / (1 - a_bar)
    return mean + math.sqrt(var) * noise


@torch.no_grad()
def ddim_sample(model: DenoisingUNet, schedule: NoiseSchedule, shape: tuple, steps: int, *,
                labels: torch.Tensor | None = None, guidance: float = 1.0, clip: float | None = 1.0,
                generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """DDIM's deterministic sampler (eta = 0) on ``steps`` evenly spaced timesteps: predict
    ``x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)`` and move to the earlier
    timestep along the same noise, ``x_s = sqrt(alpha_bar_s) x_0 + sqrt(1 - alpha_bar_s) eps``.
    The same trained network; ``steps`` passes instead of ``T``. The estimate of ``x_0`` is
    clamped to ``[-clip, clip]`` (``[-1, 1]`` for images; the codes' range for latents; None:
    no clamp) and the noise recomputed from it.

    First used in section 16.2.1, *Sampling: ancestral and DDIM*.
    """
    if not 1 <= steps <= schedule.T:
        raise ValueError(f"steps must be between 1 and {schedule.T}, got {steps}")
    device = device or runtime.device_of(model)
    times = torch.linspace(schedule.T - 1, 0, steps).round().long().tolist()
    x = torch.randn(shape, generator=generator).to(device)
    for i, t in enumerate(times):
        tt = torch.full((shape[0],), t, dtype=torch.long, device=device)
        eps = guided_noise(model, x, tt, labels, guidance)
        a_t = float(schedule.alpha_bars[t])
        x0 = predicted_x0(schedule, x, t, eps, clip)
        if clip is not None:
            eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        a_s = float(schedule.alpha_bars[times[i + 1]]) if i + 1 < len(times) else 1.0
        x = math.sqrt(a_s) * x0 + math.sqrt(1 - a_s) * eps
    return x


def train_diffusion(model: DenoisingUNet, schedule: NoiseSchedule, images: torch.Tensor, *,
                    labels: torch.Tensor | None = None, epochs: int, batch_size: int = 128,
                    lr: float = 2e-3, p_uncond: float = 0.1, seed: int = 0, one_cycle: bool = False,
                    ema: float | None = None) -> list[float]:
    """Adam on ``diffusion_loss`` over ``images [N, C, H, W]`` in ``[-1, 1]`` (with ``labels
    [N]`` for a conditional model); returns each epoch's mean loss. Cut at the smoke scale.

    Two habits of the diffusion papers, both off by default: ``one_cycle`` runs the learning
    rate up to ``lr`` and down again over all the steps (``torch.optim.lr_scheduler.OneCycleLR``,
    AdamW), and ``ema`` keeps an exponential moving average of the weights with that decay
    (``torch.optim.swa_utils``), which the model holds at the end: the average of the last few
    hundred steps samples better than the last step's weights, as in DDPM.

    First used in section 16.2, *Diffusion models*.
    """
    if images.ndim != 4 or not images.dtype.is_floating_point:
        raise ValueError(f"images must be float [N, C, H, W] in [-1, 1], got {images.dtype} {tuple(images.shape)}")
    if labels is not None and model.classes is None:
        raise ValueError("labels given to a model built without classes")
    if ema is not None and not 0 < ema < 1:
        raise ValueError(f"ema must be a decay between 0 and 1, or None; got {ema}")
    device = runtime.device_of(model)
    gen = torch.Generator().manual_seed(seed)   # the batches' order and the noise, one stream

    def batch_loss(idx):
        y = None if labels is None else labels[idx].to(device)
        return diffusion_loss(model, schedule, images[idx].to(device), y, p_uncond, gen)

    if not one_cycle and ema is None:
        return _adam_epochs(model, len(images), batch_size, epochs, lr, gen, batch_loss)
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    cut_epochs, per_epoch = runtime.limits(epochs, math.ceil(len(images) / batch_size))
    cycle = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=cut_epochs * per_epoch) if one_cycle else None
    average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema)) if ema is not None else None

    def step(epoch, idx):
        loss = batch_loss(idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if cycle is not None:
            cycle.step()
        if average is not None:
            average.update_parameters(model)
        return {"loss": loss}

    log = run_epochs(model, len(images), batch_size=batch_size, epochs=epochs, generator=gen, step=step)
    if average is not None:
        model.load_state_dict(average.module.state_dict())
    return [e["loss"] for e in log]


def _adam_epochs(model: nn.Module, n: int, batch_size: int, epochs: int, lr: float,
                 generator: torch.Generator, batch_loss) -> list[float]:
    """Adam on ``batch_loss(index tensor)`` over shuffled batches of ``n`` examples
    (``training.run_epochs``, drawing from ``generator``); returns each epoch's mean loss."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step(epoch, idx):
        loss = batch_loss(idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss}

    log = run_epochs(model, n, batch_size=batch_size, epochs=epochs, generator=generator, step=step)
    return [e["loss"] for e in log]


class LatentAutoencoder(nn.Module):
    """Latent diffusion's first stage for digits: ``[N, 1, 32, 32]`` in ``[-1, 1]`` (28x28
    digits padded by 2) ``-> [N, latent_channels, 8, 8]`` codes and back. Two stride-2
    convolutions down, two transposed up; ``scale`` divides the codes so that they have unit
    standard deviation, as Stable Diffusion scales its latents (set by ``fit_scale``).

    First used in section 16.2.3, *Latent diffusion*.
    """

    def __init__(self, latent_channels: int = 4, width: int = 16):
        super().__init__()
        w = width
        self.encoder = nn.Sequential(nn.Conv2d(1, w, 4, 2, 1), nn.SiLU(), nn.Conv2d(w, 2 * w, 4, 2, 1), nn.SiLU(),
                                     nn.Conv2d(2 * w, latent_channels, 3, padding=1))
        self.decoder = nn.Sequential(nn.Conv2d(latent_channels, 2 * w, 3, padding=1), nn.SiLU(),
                                     nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.SiLU(),
                                     nn.ConvTranspose2d(w, 1, 4, 2, 1), nn.Tanh())
        self.register_buffer("scale", torch.tensor(1.0))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1:] != (1, 32, 32):
            raise ValueError(f"LatentAutoencoder takes [N, 1, 32, 32] (pad 28x28 digits by 2), got {tuple(x.shape)}")
        return self.encoder(x) / self.scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z * self.scale)

    @torch.no_grad()
    def fit_scale(self, x: torch.Tensor) -> float:
        """Set ``scale`` to the standard deviation of the unscaled codes of ``x``; returns it."""
        self.scale.fill_(1.0)
        self.scale.fill_(torch.cat([self.encoder(b) for b in x.split(1000)]).std().item())
        return float(self.scale)


def train_latent_autoencoder(model: LatentAutoencoder, images: torch.Tensor, *, epochs: int,
                             batch_size: int = 64, lr: float = 2e-3, seed: int = 0) -> list[float]:
    """Adam on the mean squared reconstruction error of ``images [N, 1, 32, 32]`` in ``[-1, 1]``;
    returns each epoch's mean, and sets the codes' ``scale`` at the end.

    First used in section 16.2.3, *Latent diffusion*.
    """
    device = runtime.device_of(model)

    def batch_loss(idx):
        x = images[idx].to(device)
        return F.mse_loss(model.decoder(model.encoder(x)), x)

    log = _adam_epochs(model, len(images), batch_size, epochs, lr, torch.Generator().manual_seed(seed),
                       batch_loss)
    model.fit_scale(images.to(device))
    return log
