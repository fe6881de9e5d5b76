"""dlcv.nerf against closed forms: the quadrature of volume rendering is exact for a medium of
constant density, rays leave the camera where and how its pose says, the positional encoding
is the formula, the scene is drawn where its geometry puts it, and a tiny NeRF learns."""
import math

import pytest
import torch

from dlcv import nerf as N


@pytest.mark.parametrize("sigma", [0.1, 1.0, 5.0])
def test_quadrature_is_exact_for_constant_density(sigma):
    near, far, samples = 2.0, 6.0, 64
    delta = (far - near) / samples
    t = (near + delta * torch.arange(samples, dtype=torch.float64))[None]
    density = torch.full_like(t, sigma)
    colour = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64).expand(1, samples, 3)
    out = N.volume_render(density, colour, t, background=1.0, far_delta=delta)
    absorbed = 1 - math.exp(-sigma * (far - near))             # the closed form
    expected = colour[0, 0] * absorbed + 1.0 * (1 - absorbed)
    torch.testing.assert_close(out[0], expected, rtol=1e-7, atol=1e-7)
    weights = N.render_weights(density, t, far_delta=delta)
    assert math.isclose(weights.sum().item(), absorbed, rel_tol=1e-7)


def test_rays_follow_the_pose():
    pose = N.orbit_pose(0.7, radius=4.0, height=1.5)
    origins, dirs = N.camera_rays(9, 9, focal=10.0, pose=pose)
    assert origins.shape == dirs.shape == (81, 3)
    torch.testing.assert_close(dirs.norm(dim=1), torch.ones(81))
    torch.testing.assert_close(origins[0], pose[:3, 3])
    centre = dirs[40]                                        # the middle pixel looks at the origin
    closest = origins[40] + centre * (-(origins[40] @ centre))
    assert closest.norm() < 1e-5
    assert dirs[0, 1] > centre[1] and dirs[0] @ pose[:3, 0] < 0   # the top-left ray: up and left
    with pytest.raises(ValueError, match=r"\[4, 4\]"):
        N.camera_rays(2, 2, 1.0, torch.eye(3))


def test_positional_encoding():
    x = torch.tensor([[0.25, -0.5, 1.0]])
    enc = N.positional_encoding(x, 2)
    assert enc.shape == (1, 15)
    torch.testing.assert_close(enc[0, :3], x[0])
    torch.testing.assert_close(enc[0, 3:6], torch.sin(math.pi * x[0]))
    torch.testing.assert_close(enc[0, 12:15], torch.cos(2 * math.pi * x[0]))


def test_scene_draws_its_geometry():
    scene = N.Scene()
    image = scene.render(33, 33, focal=40.0, pose=N.orbit_pose(0.0))
    assert image.shape == (33, 33, 3)
    centre = image[16, 16]
    assert centre[0] > centre[2]                       # the vermillion sphere at the centre
    assert torch.allclose(image[0, 0], torch.ones(3))  # the sky is white
    assert image.min() >= 0 and image.max() <= 1


def test_tiny_nerf_learns_a_scene():
    torch.manual_seed(0)
    scene = N.Scene()
    poses = torch.stack([N.orbit_pose(a) for a in (0.0, 1.5, 3.0)])
    images = torch.stack([scene.render(12, 12, 14.0, p) for p in poses])
    model = N.TinyNeRF(frequencies=2, width=32, layers=2)
    log = N.train_nerf(model, images, poses, 14.0, near=2.0, far=6.5, samples=16, steps=150,
                       batch_rays=256, lr=1e-2)
    assert sum(log[-10:]) / 10 < 0.5 * sum(log[:10]) / 10, (log[:3], log[-3:])
    view = N.render_image(model, 12, 12, 14.0, poses[0], 2.0, 6.5, 16)
    assert N.psnr(view, images[0]) > 12
    with pytest.raises(ValueError, match="one pose each"):
        N.train_nerf(model, images, poses[:2], 14.0, near=2, far=6, samples=4, steps=1)


def test_learning_rate_decays_to_lr_end():
    """``lr_end`` gives Adam the exponential decay of the NeRF paper: after ``steps`` steps the
    rate is ``lr_end``, as torch's ExponentialLR with gamma = (lr_end / lr) ** (1 / steps)."""
    scene = N.Scene()
    poses = torch.stack([N.orbit_pose(0.0)])
    images = torch.stack([scene.render(6, 6, 7.0, poses[0])])
    rates = []
    real_step = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    torch.optim.Adam.step = spy
    try:
        N.train_nerf(N.TinyNeRF(frequencies=1, width=8, layers=1), images, poses, 7.0, near=2,
                     far=6, samples=4, steps=10, batch_rays=8, lr=1e-2, lr_end=1e-3)
    finally:
        torch.optim.Adam.step = real_step
    assert rates[0] == pytest.approx(1e-2)
    assert rates[-1] == pytest.approx(1e-2 * 0.1 ** (9 / 10))   # the rate of the last step
    assert all(b < a for a, b in zip(rates, rates[1:]))
    with pytest.raises(ValueError, match="lr_end"):
        N.train_nerf(N.TinyNeRF(frequencies=1, width=8, layers=1), images, poses, 7.0, near=2,
                     far=6, samples=4, steps=1, lr=1e-3, lr_end=1e-2)
