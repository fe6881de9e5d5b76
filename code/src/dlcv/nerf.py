"""Neural radiance fields from scratch (Chapter 16): rays, volume rendering, positional
encoding, a tiny NeRF, and a small 3-D scene that the package renders itself, so that the
views and their camera poses are known exactly and nothing is downloaded.

Conventions: a camera looks down its own ``-z`` axis with ``+y`` up (as in the NeRF paper's
code); ``pose [4, 4]`` maps camera coordinates to world coordinates. Images are ``[H, W, 3]``
in ``[0, 1]``.

* ``camera_rays`` gives every pixel's ray, origin and unit direction ``[H*W, 3]`` each.
* ``render_weights`` and ``volume_render`` are the quadrature of the volume rendering
  integral: ``alpha_i = 1 - exp(-sigma_i delta_i)``, transmittance ``T_i = prod_{j<i} (1 -
  alpha_j)``, colour ``sum_i T_i alpha_i c_i`` (checked against the closed form for a medium
  of constant density).
* ``positional_encoding`` maps coordinates to ``[x, sin(2^k pi x), cos(2^k pi x)]``.
* ``TinyNeRF`` is an MLP from an encoded point to density and colour; ``render_rays`` samples
  points along rays (stratified), queries the network and renders; ``train_nerf`` fits it to
  posed images.
* ``Scene`` is a handful of coloured, diffusely lit spheres on a floor, ray-traced exactly;
  ``orbit_pose`` places a camera on a circle around it, looking at its centre.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from . import runtime

__all__ = ["camera_rays", "orbit_pose", "render_weights", "volume_render", "positional_encoding",
           "TinyNeRF", "render_rays", "render_image", "train_nerf", "psnr", "Scene"]


def orbit_pose(angle: float, radius: float = 4.0, height: float = 1.5) -> torch.Tensor:
    """A camera-to-world matrix ``[4, 4]`` for a camera at ``angle`` (radians) on a horizontal
    circle of ``radius`` around the origin, ``height`` above it, looking at the origin.

    First used in section 16.3.1, *A tiny NeRF*.
    """
    eye = torch.tensor([radius * math.sin(angle), height, radius * math.cos(angle)])
    forward = -eye / eye.norm()                          # the camera looks down -z: z = -forward
    right = torch.linalg.cross(forward, torch.tensor([0.0, 1.0, 0.0]))
    right = right / right.norm()
    up = torch.linalg.cross(right, forward)
    pose = torch.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, up, -forward, eye
    return pose


def camera_rays(height: int, width: int, focal: float, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through the centres of the pixels of a pinhole camera with focal length ``focal``
    (in pixels) at ``pose``: origins and unit directions, ``[H*W, 3]`` each, row by row.

    First used in section 16.3.1, *A tiny NeRF*.
    """
    if pose.shape != (4, 4):
        raise ValueError(f"pose must be a [4, 4] camera-to-world matrix, got {tuple(pose.shape)}")
    j, i = torch.meshgrid(torch.arange(height, dtype=torch.float32) + 0.5,
                          torch.arange(width, dtype=torch.float32) + 0.5, indexing="ij")
    dirs = torch.stack([(i - width / 2) / focal, -(j - height / 2) / focal, -torch.ones_like(i)], -1)
    dirs = dirs.reshape(-1, 3) @ pose[:3, :3].T
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    return pose[:3, 3].expand_as(dirs).clone(), dirs


def render_weights(sigma: torch.Tensor, t: torch.Tensor, far_delta: float = 1e10) -> torch.Tensor:
    """The weight of each sample in its ray's colour, ``T_i (1 - exp(-sigma_i delta_i))``, for
    densities ``sigma [R, S]`` at distances ``t [R, S]`` (increasing; ``delta_i = t_{i+1} -
    t_i``, the last one ``far_delta``). ``T_i``, the transmittance, is the probability that the
    ray travels to sample ``i`` without being stopped."""
    delta = torch.cat([t[:, 1:] - t[:, :-1], torch.full_like(t[:, :1], far_delta)], dim=1)
    alpha = 1 - torch.exp(-F.relu(sigma) * delta)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1] + 1e-10], 1), 1)
    return transmittance * alpha


def volume_render(sigma: torch.Tensor, colour: torch.Tensor, t: torch.Tensor,
                  background: float = 1.0, far_delta: float = 1e10) -> torch.Tensor:
    """Each ray's colour ``[R, 3]`` from densities ``[R, S]``, colours ``[R, S, 3]`` and sample
    distances ``[R, S]``: the weighted sum, and ``background`` for whatever light passes
    through every sample.

    First used in section 16.3, *Neural rendering: NeRF*.
    """
    w = render_weights(sigma, t, far_delta)
    return (w[..., None] * colour).sum(1) + background * (1 - w.sum(1, keepdim=True))


def positional_encoding(x: torch.Tensor, frequencies: int) -> torch.Tensor:
    """``[..., D] -> [..., D (1 + 2 frequencies)]``: the coordinates, then ``sin`` and ``cos``
    of ``2^k pi x`` for ``k = 0 .. frequencies - 1``. Lets an MLP, which prefers smooth
    functions of its inputs, fit detail that varies fast in space.

    First used in section 16.3.3, *Exercises*.
    """
    out = [x]
    for k in range(frequencies):
        out += [torch.sin(2.0 ** k * math.pi * x), torch.cos(2.0 ** k * math.pi * x)]
    return torch.cat(out, dim=-1)


class TinyNeRF(nn.Module):
    """An MLP from a 3-D point (positionally encoded with ``frequencies`` octaves; 0: the raw
    coordinates) to a density (ReLU) and a colour (sigmoid). No view direction: the scene is
    lit diffusely, so colours do not change with the viewpoint.

    First used in section 16.3.1, *A tiny NeRF*.
    """

    def __init__(self, frequencies: int = 6, width: int = 64, layers: int = 3):
        super().__init__()
        self.frequencies = frequencies
        d = 3 * (1 + 2 * frequencies)
        blocks, c = [], d
        for _ in range(layers):
            blocks += [nn.Linear(c, width), nn.ReLU()]
            c = width
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(width, 4)

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``points [..., 3] -> (sigma [...], colour [..., 3])``."""
        out = self.head(self.body(positional_encoding(points, self.frequencies)))
        return F.relu(out[..., 0]), torch.sigmoid(out[..., 1:])


def render_rays(model: TinyNeRF, origins: torch.Tensor, dirs: torch.Tensor, near: float, far: float,
                samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Render ``[R, 3]`` colours: ``samples`` distances between ``near`` and ``far`` along each
    ray, evenly spaced, or jittered within their bins when a ``generator`` is given (stratified
    sampling, for training); the network at every point; the quadrature."""
    bins = torch.linspace(near, far, samples + 1, device=origins.device)
    lower, width = bins[:-1], bins[1:] - bins[:-1]
    if generator is None:
        t = (lower + 0.5 * width).expand(len(origins), samples)
    else:
        t = lower + width * torch.rand(len(origins), samples, generator=generator).to(origins.device)
    points = origins[:, None] + dirs[:, None] * t[..., None]          # [R, S, 3]
    sigma, colour = model(points)
    return volume_render(sigma, colour, t)


@torch.no_grad()
def render_image(model: TinyNeRF, height: int, width: int, focal: float, pose: torch.Tensor,
                 near: float, far: float, samples: int, chunk: int = 4096) -> torch.Tensor:
    """A whole view ``[H, W, 3]``, rendered in chunks of rays.

    First used in section 16.3.1, *A tiny NeRF*.
    """
    device = runtime.device_of(model)
    origins, dirs = camera_rays(height, width, focal, pose)
    out = [render_rays(model, o.to(device), d.to(device), near, far, samples)
           for o, d in zip(origins.split(chunk), dirs.split(chunk))]
    return torch.cat(out).reshape(height, width, 3).clamp(0, 1).cpu()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two images in ``[0, 1]``: ``-10 log10 MSE``.

    First used in section 16.3.1, *A tiny NeRF*.
    """
    mse = F.mse_loss(a.float(), b.float()).item()
    return float("inf") if mse == 0 else -10 * math.log10(mse)


def train_nerf(model: TinyNeRF, images: torch.Tensor, poses: torch.Tensor, focal: float, *,
               near: float, far: float, samples: int, steps: int, batch_rays: int = 1024,
               lr: float = 5e-3, lr_end: float | None = None, seed: int = 0) -> list[float]:
    """Fit ``model`` to posed views ``images [V, H, W, 3]``, ``poses [V, 4, 4]``: each step
    renders a random batch of rays from all views (stratified samples) and minimises the MSE
    to their pixels with Adam. With ``lr_end`` the learning rate decays exponentially from
    ``lr`` to ``lr_end`` over the steps (``torch.optim.lr_scheduler.ExponentialLR``), as the
    NeRF paper's does. Returns the loss of every step. Cut at the smoke scale.

    First used in section 16.3.1, *A tiny NeRF*.
    """
    if images.ndim != 4 or images.shape[-1] != 3 or len(poses) != len(images):
        raise ValueError(f"images must be [V, H, W, 3] with one pose each, got {tuple(images.shape)} "
                         f"and {len(poses)} poses")
    device = runtime.device_of(model)
    v, h, w, _ = images.shape
    rays = [camera_rays(h, w, focal, p) for p in poses]
    origins = torch.cat([r[0] for r in rays]).to(device)
    dirs = torch.cat([r[1] for r in rays]).to(device)
    target = images.reshape(-1, 3).to(device)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = runtime.limit_steps(steps)
    if lr_end is not None and not 0 < lr_end <= lr:
        raise ValueError(f"lr_end must be in (0, lr = {lr}], got {lr_end}")
    gamma = (lr_end / lr) ** (1 / steps) if lr_end is not None else 1.0
    schedule = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
    log = []
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(target), (batch_rays,), generator=gen).to(device)
        colour = render_rays(model, origins[idx], dirs[idx], near, far, samples, gen)
        loss = F.mse_loss(colour, target[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        log.append(loss.item())
    model.eval()
    return log


@dataclass
class Scene:
    """Spheres ``(centre, radius, colour)`` resting on a grey floor at ``y = floor``, lit by a
    distant light (Lambert's cosine law plus ambient light), on a white background. ``render``
    traces one ray per pixel exactly, the ground truth a NeRF is fitted to.

    First used in section 16.3.1, *A tiny NeRF*.
    """

    spheres: list = field(default_factory=lambda: [
        ((0.0, 0.0, 0.0), 0.8, (0.84, 0.37, 0.0)),     # the book's palette: vermillion
        ((1.1, -0.4, 0.6), 0.4, (0.0, 0.45, 0.70)),    # blue
        ((-0.9, -0.5, 0.7), 0.3, (0.0, 0.62, 0.45)),   # green
        ((-0.3, -0.55, -1.1), 0.25, (0.90, 0.62, 0.0)),  # orange
    ])
    floor: float = -0.8
    floor_half_size: float = 2.0
    light: tuple = (0.5, 1.0, 0.7)

    def render(self, height: int, width: int, focal: float, pose: torch.Tensor) -> torch.Tensor:
        origins, dirs = camera_rays(height, width, focal, pose)
        n = len(origins)
        best_t = torch.full((n,), float("inf"))
        colour = torch.ones(n, 3)
        light = torch.tensor(self.light)
        light = light / light.norm()
        for centre, radius, rgb in self.spheres:
            c = torch.tensor(centre)
            oc = origins - c
            b = (oc * dirs).sum(1)
            disc = b * b - ((oc * oc).sum(1) - radius ** 2)
            t = -b - torch.sqrt(disc.clamp(min=0))
            hit = (disc > 0) & (t > 0) & (t < best_t)
            normal = F.normalize(origins + dirs * t[:, None] - c, dim=1)
            shade = 0.3 + 0.7 * (normal @ light).clamp(min=0)
            colour[hit] = shade[hit, None] * torch.tensor(rgb)
            best_t = torch.where(hit, t, best_t)
        t = (self.floor - origins[:, 1]) / dirs[:, 1]
        p = origins + dirs * t[:, None]
        on_floor = (dirs[:, 1] < 0) & (t > 0) & (t < best_t) & (p[:, 0].abs() < self.floor_half_size) \
            & (p[:, 2].abs() < self.floor_half_size)
        checker = ((torch.floor(p[:, 0] * 2) + torch.floor(p[:, 2] * 2)) % 2 == 0).float()
        floor_rgb = (0.55 + 0.2 * checker)[:, None].expand(n, 3) * (0.3 + 0.7 * float(light[1]))
        colour[on_floor] = floor_rgb[on_floor]
        return colour.reshape(height, width, 3).clamp(0, 1)
