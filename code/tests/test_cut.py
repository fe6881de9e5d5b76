"""The one cut: every training loop of the package reads ``dlcv.runtime.max_batches`` (the smoke
scale, or ``DLCV_MAX_BATCHES`` at any scale, which the fake GPU of the book's tests sets), and
nothing of the package is replaced at run time to make it stop early.

Each loop is run at the small scale with ``DLCV_MAX_BATCHES=1`` on data that would take many
batches, and the optimiser steps are counted (a global hook on ``torch.optim.Optimizer.step``):
at most ``SMOKE_EPOCHS`` epochs of one batch, for each optimiser the loop uses."""
import inspect

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

import dlcv
from dlcv import detection, diffusion, generative, instances, linear, nerf, runtime
from dlcv import segmentation, training
from dlcv import translation
from dlcv.models import SmallConvNet


def blobs(n, size=28, channels=1):
    x = torch.zeros(n, channels, size, size)
    x[:, :, size // 4:size // 2, size // 4:size // 2] = 1.0
    return x


def toy_detection(n=32):
    images = torch.zeros(n, 3, 64, 64, dtype=torch.uint8)
    images[:, :, 10:40, 20:36] = 255
    targets = [{"boxes": torch.tensor([[20.0, 10, 36, 40]]), "labels": torch.tensor([1])}] * n
    return images, targets


def nerf_case():
    scene = nerf.Scene()
    poses = torch.stack([nerf.orbit_pose(a) for a in (0.0, 1.5)])
    images = torch.stack([scene.render(8, 8, 10.0, p) for p in poses])
    model = nerf.TinyNeRF(frequencies=2, width=16, layers=2)
    return lambda: nerf.train_nerf(model, images, poses, 10.0, near=2.0, far=6.5, samples=4,
                                   steps=500, batch_rays=16)


def segmentation_cases():
    from test_segmentation import toy_scenes
    images, targets = toy_scenes()
    images, targets = images.repeat(8, 1, 1, 1), targets * 8
    labels = torch.stack([segmentation.semantic_labels(t, 32, 32) for t in targets])
    net = segmentation.SegmentationNet(num_classes=3, width=8)
    return {
        "segmentation.train_segmenter": (1, lambda: segmentation.train_segmenter(
            net, images, labels, epochs=5, batch_size=1)),
        "instances.train_instance_heads": (1, lambda: instances.train_instance_heads(
            instances.InstanceHeads(channels=8), net, images, targets, epochs=5,
            batch_size=1)),
    }


def cases():
    """``{name: (optimisers, run)}`` for every training function of the package."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(400, 1, 28, 28, generator=g), torch.randint(0, 10, (400,), generator=g)
    det, det_targets = toy_detection()
    detector = detection.SingleStageDetector(num_classes=2, width=16)
    images32 = blobs(64, 32) * 2 - 1
    edges, shoes = blobs(64, 28), blobs(64, 28)
    out = {
        "training.fit": (1, lambda: training.fit(SmallConvNet(), training.TensorData(x, y),
                                                 training.TensorData(x, y), epochs=5,
                                                 batch_size=10)),
        "linear.train_linear": (1, lambda: linear.train_linear(x.flatten(1), y, lr=0.1,
                                                               steps=500, batch_size=10,
                                                               optimizer="adam")),
        "detection.train_detector": (1, lambda: detection.train_detector(
            detector, det, det_targets, epochs=5, batch_size=2, flip=False)),
        "detection.train_second_stage": (1, lambda: detection.train_second_stage(
            detection.SecondStage(channels=16, num_classes=2, hidden=16), detector, det,
            det_targets, epochs=5, batch_size=2)),
        "diffusion.train_diffusion": (1, lambda: diffusion.train_diffusion(
            diffusion.DenoisingUNet(in_channels=1, width=8, time_dim=16),
            diffusion.NoiseSchedule.linear(50), images32[:, :, :8, :8], epochs=5, batch_size=2)),
        "diffusion.train_latent_autoencoder": (1, lambda: diffusion.train_latent_autoencoder(
            diffusion.LatentAutoencoder(latent_channels=4, width=8), images32, epochs=5,
            batch_size=2)),
        "generative.train_vae": (1, lambda: generative.train_vae(
            generative.VAE(latent=2, width=8), blobs(64), epochs=5, batch_size=2)),
        "generative.train_autoencoder": (1, lambda: generative.train_autoencoder(
            generative.Autoencoder(latent=2, width=8), blobs(64), epochs=5, batch_size=2)),
        "generative.train_vqvae": (1, lambda: generative.train_vqvae(
            generative.VQVAE(codes=8, width=8), blobs(64), epochs=5, batch_size=2)),
        "generative.train_pixelcnn": (1, lambda: generative.train_pixelcnn(
            generative.PixelCNN(levels=2, channels=8, layers=2), blobs(64), epochs=5,
            batch_size=2)),
        "generative.train_gan": (2, lambda: generative.train_gan(
            generative.Generator(latent=8, width=8), generative.Discriminator(width=8),
            blobs(64) * 2 - 1, epochs=5, batch_size=2)),
        "translation.train_pix2pix": (2, lambda: translation.train_pix2pix(
            translation.TranslationUNet(width=4),
            translation.PatchDiscriminator(condition_channels=1, width=4), edges, shoes,
            epochs=5, batch_size=2)),
        "translation.train_cyclegan": (2, lambda: translation.train_cyclegan(
            translation.TranslationUNet(width=4), translation.TranslationUNet(width=4),
            translation.PatchDiscriminator(width=4), translation.PatchDiscriminator(width=4),
            edges, shoes, epochs=5, batch_size=2)),
        "nerf.train_nerf": (1, nerf_case()),
    }
    out.update(segmentation_cases())
    return out


def training_functions() -> set[str]:
    """Every public ``train_*`` function and ``training.fit`` in the package's modules."""
    import importlib
    import pkgutil
    found = {"training.fit"}
    for info in pkgutil.iter_modules(dlcv.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"dlcv.{info.name}")
        for name, obj in vars(module).items():
            if name.startswith("train_") and inspect.isfunction(obj) and \
                    obj.__module__ == module.__name__:
                found.add(f"{info.name}.{name}")
    return found


def test_every_training_function_is_checked():
    assert training_functions() == set(cases()), training_functions() ^ set(cases())


@pytest.fixture
def optimiser_steps():
    steps = []
    handle = register_optimizer_step_post_hook(
        lambda opt, args, kwargs: steps.append(id(opt)))
    yield steps
    handle.remove()


@pytest.mark.parametrize("name", sorted(cases()))
def test_training_function_honours_the_cut(monkeypatch, optimiser_steps, name):
    monkeypatch.setenv("DLCV_SCALE", "small")
    monkeypatch.setenv(runtime.MAX_BATCHES_VARIABLE, "1")
    assert runtime.max_batches() == 1 and runtime.limits(5, 40) == (runtime.SMOKE_EPOCHS, 1)
    optimisers, run = cases()[name]
    torch.manual_seed(0)
    run()
    limit = runtime.SMOKE_STEPS if name in ("linear.train_linear", "nerf.train_nerf") \
        else runtime.SMOKE_EPOCHS
    assert 0 < len(optimiser_steps) <= optimisers * limit, (name, len(optimiser_steps))


def test_the_cut_setting_is_checked(monkeypatch):
    monkeypatch.setenv("DLCV_SCALE", "small")
    assert runtime.max_batches() is None and runtime.limits(5, 40) == (5, 40)
    assert runtime.limit_steps(500) == 500 and not runtime.is_cut()
    monkeypatch.setenv("DLCV_SCALE", "smoke")
    assert runtime.max_batches() == runtime.SMOKE_BATCHES and runtime.limit_steps(500) == 20
    monkeypatch.setenv(runtime.MAX_BATCHES_VARIABLE, "zero")
    with pytest.raises(ValueError, match="DLCV_MAX_BATCHES must be a positive whole number"):
        runtime.max_batches()


def test_the_hand_written_classifier_honours_the_cut(monkeypatch):
    """SoftmaxClassifier.fit updates its weights by hand (no optimiser to count): one loss a
    epoch, at most SMOKE_EPOCHS of them."""
    monkeypatch.setenv("DLCV_SCALE", "small")
    monkeypatch.setenv(runtime.MAX_BATCHES_VARIABLE, "1")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 20, generator=g), torch.randint(0, 3, (300,), generator=g)
    clf = linear.SoftmaxClassifier(20, 3, generator=g)
    assert len(clf.fit(x, y, epochs=6, batch_size=10)) == runtime.SMOKE_EPOCHS
