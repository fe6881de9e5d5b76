"""dlcv.diffusion against its closed forms and diffusers: the one-step closed form of the
forward process equals iterating the noising step, the schedule and the noising equal
diffusers' DDPMScheduler, an ancestral step equals its step, DDIM with a perfect noise
predictor recovers x_0, and classifier-free guidance interpolates as written."""
import math

import pytest
import torch

from dlcv import diffusion as D
from dlcv import runtime


def test_closed_form_equals_iterated_noising():
    """x_t from x_0 by t steps is sqrt(alpha_bar_t) x_0 plus noise whose coefficients have
    squares summing to 1 - alpha_bar_t: checked exactly, step by step, through linearity."""
    sched = D.NoiseSchedule.linear(T=50, beta_start=1e-3, beta_end=0.2)
    x0 = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    x, coeffs = x0.clone(), []
    for t in range(sched.T):
        tt = torch.full((3,), t, dtype=torch.long)
        x = sched.q_step(x, tt, torch.zeros_like(x))                  # the signal part
        coeffs = [c * math.sqrt(1 - sched.betas[t]) for c in coeffs] + [math.sqrt(sched.betas[t])]
        torch.testing.assert_close(x, math.sqrt(sched.alpha_bars[t]) * x0)
        assert math.isclose(sum(c * c for c in coeffs), 1 - float(sched.alpha_bars[t]), rel_tol=1e-12)
    # and the closed form draws with those moments: mean and variance over many draws
    torch.manual_seed(0)
    t = torch.full((200_000,), 30, dtype=torch.long)
    xt = sched.q_sample(torch.full((200_000, 1), 0.5, dtype=torch.float64), t,
                        torch.randn(200_000, 1, dtype=torch.float64))
    a = float(sched.alpha_bars[30])
    assert abs(xt.mean() - 0.5 * math.sqrt(a)) < 0.01 and abs(xt.var() - (1 - a)) < 0.01


def test_schedule_and_noising_match_diffusers():
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                                  beta_schedule="linear", clip_sample=False)
    sched = D.NoiseSchedule.linear(1000, 1e-4, 0.02)
    torch.testing.assert_close(sched.betas.float(), ref.betas, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(sched.alpha_bars.float(), ref.alphas_cumprod, rtol=1e-5, atol=1e-7)
    torch.manual_seed(0)
    x0, noise = torch.randn(5, 1, 8, 8), torch.randn(5, 1, 8, 8)
    t = torch.tensor([0, 10, 250, 600, 999])
    torch.testing.assert_close(sched.q_sample(x0, t, noise), ref.add_noise(x0, noise, t), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("t", [999, 500, 1, 0])
def test_ancestral_step_matches_diffusers(t):
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, clip_sample=False)
    ref.set_timesteps(1000)
    sched = D.NoiseSchedule.linear(1000)
    torch.manual_seed(1)
    x, eps = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    theirs = ref.step(eps, t, x, generator=torch.Generator().manual_seed(7)).prev_sample
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    ours = D.ddpm_step(sched, x, t, eps, noise if t > 0 else None)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("t", [999, 500, 1, 0])
def test_clipped_ancestral_step_matches_diffusers(t):
    """With x_0 clamped to [-1, 1] (diffusers' clip_sample): a noise guess far off, so that the
    clamp bites, and the same step as DDPMScheduler's."""
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, clip_sample=True)
    ref.set_timesteps(1000)
    sched = D.NoiseSchedule.linear(1000)
    torch.manual_seed(2)
    x, eps = torch.randn(2, 1, 8, 8), 3 * torch.randn(2, 1, 8, 8)
    assert D.predicted_x0(sched, x, t, eps, clip=None).abs().max() > 1
    theirs = ref.step(eps, t, x, generator=torch.Generator().manual_seed(7)).prev_sample
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    ours = D.ddpm_step(sched, x, t, eps, noise if t > 0 else None, clip=1.0)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    unclipped = D.ddpm_step(sched, x, t, eps, noise if t > 0 else None)
    assert not torch.allclose(ours, unclipped)
    with pytest.raises(ValueError, match="clip must be positive"):
        D.predicted_x0(sched, x, t, eps, clip=0.0)


def test_latent_autoencoder_shapes_scale_and_training():
    torch.manual_seed(0)
    images = -torch.ones(128, 1, 32, 32)
    images[:64, :, 8:24, 8:24] = 1                                   # squares and blanks
    ae = D.LatentAutoencoder(latent_channels=4, width=8)
    log = D.train_latent_autoencoder(ae, images, epochs=15, batch_size=32, lr=3e-3)
    assert log[-1] < 0.3 * log[0], log
    with torch.no_grad():
        z = ae.encode(images)
        assert z.shape == (128, 4, 8, 8)
        assert abs(z.std().item() - 1) < 1e-4                         # scaled to unit variance
        torch.testing.assert_close(ae.decode(z), ae.decoder(ae.encoder(images)))
    with pytest.raises(ValueError, match="pad 28x28 digits by 2"):
        ae.encode(torch.zeros(1, 1, 28, 28))


class Oracle(torch.nn.Module):
    """A perfect noise predictor for one known x_0: eps = (x_t - sqrt(a) x_0) / sqrt(1 - a)."""

    def __init__(self, sched, x0):
        super().__init__()
        self.sched, self.x0, self.classes = sched, x0, None
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, t, labels=None):
        a = self.sched.alpha_bars[t].float().view(-1, 1, 1, 1)
        return (x - a.sqrt() * self.x0) / (1 - a).sqrt()


def test_ddim_with_a_perfect_predictor_recovers_x0():
    sched = D.NoiseSchedule.linear(1000)
    x0 = torch.rand(2, 1, 8, 8) * 2 - 1
    out = D.ddim_sample(Oracle(sched, x0), sched, (2, 1, 8, 8), steps=20, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x0, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="steps must be between 1 and 1000"):
        D.ddim_sample(Oracle(sched, x0), sched, (2, 1, 8, 8), steps=0)


def test_unet_shapes_labels_and_guidance():
    torch.manual_seed(0)
    net = D.DenoisingUNet(in_channels=1, width=8, classes=10, time_dim=16).eval()
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([0, 5, 9])
    labels = torch.tensor([1, 2, 3])
    with torch.no_grad():
        eps_c, eps_u = net(x, t, labels), net(x, t)
        assert eps_c.shape == x.shape and not torch.allclose(eps_c, eps_u)
        torch.testing.assert_close(D.guided_noise(net, x, t, labels, 1.0), eps_c)
        torch.testing.assert_close(D.guided_noise(net, x, t, labels, 0.0), eps_u, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(D.guided_noise(net, x, t, labels, 3.0), eps_u + 3 * (eps_c - eps_u),
                                   rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 1, 30, 30), torch.tensor([0]))
    with pytest.raises(ValueError, match="int64 in 0..9"):
        D.NoiseSchedule.linear(10).q_sample(x, torch.tensor([10, 0, 0]), x)


def test_time_embedding_is_the_sinusoidal_encoding():
    emb = D.TimeEmbedding(8)
    t = torch.tensor([0, 3, 100])
    s = emb.sinusoidal(t)
    k = torch.arange(4)
    expected = torch.cat([torch.sin(t[:, None] * 10_000 ** (-k / 4)), torch.cos(t[:, None] * 10_000 ** (-k / 4))], 1)
    torch.testing.assert_close(s, expected.float())


def test_training_lowers_the_loss_and_sampling_runs():
    torch.manual_seed(0)
    sched = D.NoiseSchedule.linear(T=100, beta_end=0.1)
    images = torch.zeros(64, 1, 8, 8) - 1
    images[:, :, 2:6, 2:6] = 1                                      # a square, every time
    net = D.DenoisingUNet(in_channels=1, width=8, time_dim=16)
    log = D.train_diffusion(net, sched, images, epochs=30, batch_size=32, lr=3e-3)
    assert log[-1] < 0.5 * log[0], log
    samples = D.ddim_sample(net, sched, (4, 1, 8, 8), steps=20, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (4, 1, 8, 8)
    assert samples[:, :, 2:6, 2:6].mean() > samples[:, :, :2].mean() + 0.5   # the square is drawn
    with pytest.raises(ValueError, match="without classes"):
        D.train_diffusion(net, sched, images, labels=torch.zeros(64, dtype=torch.long), epochs=1)


def test_ancestral_sampling_is_cut_at_the_smoke_scale(monkeypatch):
    """T passes normally; runtime.SMOKE_STEPS at DLCV_SCALE=smoke (the code path is what is
    checked)."""
    sched = D.NoiseSchedule.linear(50)
    net = D.DenoisingUNet(in_channels=1, width=8, time_dim=16).eval()
    calls = []
    net.register_forward_hook(lambda *_: calls.append(1))
    D.ddpm_sample(net, sched, (1, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    assert len(calls) == 50
    monkeypatch.setenv("DLCV_SCALE", "smoke")
    calls.clear()
    D.ddpm_sample(net, sched, (1, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    assert len(calls) == runtime.SMOKE_STEPS < 50


def test_cosine_schedule_matches_diffusers():
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    torch.testing.assert_close(D.NoiseSchedule.cosine(1000).betas.float(), ref.betas, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="T must"):
        D.NoiseSchedule.cosine(0)


def test_cosine_schedule_keeps_more_signal_midway():
    lin, cos = D.NoiseSchedule.linear(1000), D.NoiseSchedule.cosine(1000)
    assert cos.alpha_bars[499] > 2 * lin.alpha_bars[499]


def test_ema_and_one_cycle_leave_the_losses_and_average_the_weights():
    """The EMA does not change what is trained (the same losses as without it, step for step),
    only what the model holds at the end: the average, which is not the last step's weights."""
    torch.manual_seed(0)
    images = torch.rand(32, 1, 8, 8) * 2 - 1
    sched = D.NoiseSchedule.linear(50)
    runs = {}
    for ema in (None, 0.9):
        torch.manual_seed(1)
        net = D.DenoisingUNet(in_channels=1, width=8, time_dim=16)
        runs[ema] = (D.train_diffusion(net, sched, images, epochs=3, batch_size=8, one_cycle=True, ema=ema), net)
    assert runs[None][0] == pytest.approx(runs[0.9][0], rel=1e-6)
    w_last, w_avg = runs[None][1].inp.weight, runs[0.9][1].inp.weight
    assert not torch.allclose(w_last, w_avg)
    with pytest.raises(ValueError, match="ema must be"):
        D.train_diffusion(net, sched, images, epochs=1, ema=1.5)


def test_small_and_full_digits_round_trip_shapes_and_errors():
    x = torch.rand(3, 1, 28, 28)
    s = D.small_digits(x)
    assert s.shape == (3, 1, 16, 16) and s.min() >= -1 and s.max() <= 1
    assert (s[:, :, 0] == -1).all() and (s[:, :, :, -1] == -1).all()
    back = D.full_digits(s)
    assert back.shape == (3, 1, 28, 28)
    assert (back - x).abs().mean() < 0.3
    with pytest.raises(ValueError, match="small_digits"):
        D.small_digits(torch.rand(3, 1, 16, 16))
    with pytest.raises(ValueError, match="full_digits"):
        D.full_digits(torch.rand(3, 1, 28, 28))
