"""Stored models: the few networks whose demonstration a CPU cannot train while a page builds.

The book trains its models live, on the page. Where a result needs more training than a
chapter's budget on a 2-core CPU allows (about a minute and a half), the page loads a model
from this zoo for its figures and still trains the same recipe for a short while in front of
the reader. Every stored model is made by the package's own code,

    python -m dlcv.zoo train NAME        # deterministic on one CPU thread; prints its time

is shipped inside the package (``dlcv/weights/NAME.pt``, a ``state_dict`` written by
``torch.save``; at most 2 MB each, 10 MB in all) and is checked by its SHA-256 when loaded.
``python -m dlcv.zoo list`` names them and ``python -m dlcv.zoo check`` checks every file.
On a GPU (the large scale) the chapters train the recipe live instead of loading it.

A retrained file has the stored hash only where the arithmetic is bit for bit the same: the
same PyTorch, one thread, the same CPU kind. Elsewhere it is another good model, not a copy.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import math
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import torch
from torch import nn

__all__ = ["Entry", "ENTRIES", "names", "path", "sha256", "load", "train", "trained", "save"]

WEIGHTS = "weights"
MAX_BYTES = 2_000_000


@dataclass(frozen=True)
class Entry:
    """One stored model: how to build it, how to train it, and what the stored file holds.

    ``build()`` returns the untrained network; ``fit(model, device)`` trains it in place by the
    recipe and returns a short dict of what it did (``steps``). ``sha256`` is the stored file's
    hash; ``seconds`` and ``machine`` record how long ``python -m dlcv.zoo train`` took to make
    it, and where."""

    name: str
    summary: str
    build: Callable[[], nn.Module]
    fit: Callable[[nn.Module, torch.device], dict]
    steps: int
    sha256: str
    seconds: float
    machine: str


def _digit_diffusion() -> nn.Module:
    from .diffusion import DenoisingUNet

    torch.manual_seed(0)
    return DenoisingUNet(in_channels=1, width=24, classes=10, time_dim=64)


DIGIT_DIFFUSION_EPOCHS, DIGIT_DIFFUSION_BATCH = 16, 128


def digit_diffusion_schedule():
    """The noise schedule the stored digit diffusion model was trained with: cosine, T = 1000."""
    from .diffusion import NoiseSchedule

    return NoiseSchedule.cosine(1000)


def _fit_digit_diffusion(model: nn.Module, device: torch.device, epochs: int | None = None) -> dict:
    """The recipe: the first 8,000 digits of ``mnist-10k`` made 16 x 16 (``small_digits``), with
    labels, one in ten dropped; AdamW with a one-cycle learning rate peaking at 2e-3, batches of
    128, an EMA of the weights (decay 0.995), ``epochs`` epochs (16: 1,008 steps)."""
    from . import data
    from .diffusion import small_digits, train_diffusion

    mnist = data.load_dataset("mnist-10k")
    images, labels = data.as_tensors(mnist.x_train[:8000], mnist.y_train[:8000])
    epochs = epochs or DIGIT_DIFFUSION_EPOCHS
    log = train_diffusion(model, digit_diffusion_schedule(), small_digits(images), labels=labels,
                          epochs=epochs, batch_size=DIGIT_DIFFUSION_BATCH, lr=2e-3, p_uncond=0.1,
                          seed=0, one_cycle=True, ema=0.995)
    return {"steps": epochs * math.ceil(len(images) / DIGIT_DIFFUSION_BATCH), "loss": log}


def _scene_unet() -> nn.Module:
    from .segmentation import SegmentationNet

    torch.manual_seed(0)
    return SegmentationNet(9, width=12, skips=True, stride=2)


SCENE_UNET_EPOCHS, SCENE_UNET_BATCH = 40, 16


def _fit_scene_unet(model: nn.Module, device: torch.device, epochs: int | None = None) -> dict:
    """Chapter 14's recipe, trained longer: the 1,200 training scenes' semantic labels, each
    class's pixels weighted by ``1 / sqrt(share)`` (normalised so the average pixel weighs 1),
    random 64 x 64 windows, AdamW with a one-cycle rate peaking at 3e-3, batches of 16,
    ``epochs`` epochs (40: 3,000 steps)."""
    from .scenes import load_scenes
    from .segmentation import semantic_labels, train_segmenter

    train = load_scenes("train")
    labels = torch.stack([semantic_labels(t, 128, 128) for t in train.targets])
    share = torch.bincount(labels.flatten(), minlength=9).double() / labels.numel()
    weights = 1 / share.sqrt()
    weights = (weights / (weights * share).sum()).float()
    epochs = epochs or SCENE_UNET_EPOCHS
    log = train_segmenter(model, train.images, labels, epochs=epochs, batch_size=SCENE_UNET_BATCH,
                          lr=3e-3, class_weights=weights, crop=64)
    return {"steps": epochs * math.ceil(len(labels) / SCENE_UNET_BATCH), "loss": log}


ENTRIES: dict[str, Entry] = {e.name: e for e in [
    Entry(
        name="digit-diffusion",
        summary="class-conditional DDPM U-Net for 16 x 16 digits (chapter 16)",
        build=_digit_diffusion, fit=_fit_digit_diffusion,
        steps=DIGIT_DIFFUSION_EPOCHS * math.ceil(8000 / DIGIT_DIFFUSION_BATCH),
        sha256="a78112ec56d4a2d33e12963deaa285c186cc07b777a0a453804614e5ca1d2bb7",
        seconds=224, machine="a 2-core x86_64 CPU (no GPU), one thread, PyTorch 2.14.1",
    ),
    Entry(
        name="scene-unet",
        summary="U-Net labelling every pixel of the 128 x 128 scenes (chapter 14)",
        build=_scene_unet, fit=_fit_scene_unet,
        steps=SCENE_UNET_EPOCHS * math.ceil(1200 / SCENE_UNET_BATCH),
        sha256="6d184e13f322c8f46eab2e49df3c176d007a91191cb6452f179719536016e2b8",
        seconds=218, machine="a 2-core x86_64 CPU (no GPU), one thread, PyTorch 2.14.1",
    ),
]}


def names() -> list[str]:
    """The stored models' names."""
    return list(ENTRIES)


def _entry(name: str) -> Entry:
    if name not in ENTRIES:
        raise KeyError(f"no stored model named {name!r}; the zoo holds {', '.join(ENTRIES)}")
    return ENTRIES[name]


def path(name: str) -> Path:
    """Where the stored file of model ``name`` lies inside the installed package."""
    _entry(name)
    return Path(str(resources.files("dlcv") / WEIGHTS / f"{name}.pt"))


def sha256(file: str | Path) -> str:
    """The SHA-256 of a file, in hex."""
    return hashlib.sha256(Path(file).read_bytes()).hexdigest()


def load(name: str, device=None) -> nn.Module:
    """The stored model ``name``, built, filled with its stored weights (after checking the
    file's SHA-256 against the one recorded here), in evaluation mode, on ``device``."""
    entry = _entry(name)
    file = path(name)
    if not file.exists():
        raise FileNotFoundError(f"the stored model {name!r} is missing from the package ({file}); "
                                f"reinstall the package, or make it with: python -m dlcv.zoo train {name}")
    found = sha256(file)
    if found != entry.sha256:
        raise ValueError(f"{file} has SHA-256 {found}, not the recorded {entry.sha256}: the file is "
                         f"damaged or from another version; reinstall the package, or remake it with "
                         f"python -m dlcv.zoo train {name}")
    model = entry.build()
    model.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
    return model.to(device or "cpu").eval()


def train(name: str, device=None, **options) -> tuple[nn.Module, dict]:
    """Train model ``name`` by its recipe, live: ``(model, what it did)``. On one CPU thread it
    is what ``python -m dlcv.zoo train`` stores; cut at the smoke scale like every loop."""
    entry = _entry(name)
    device = torch.device(device or "cpu")
    model = entry.build().to(device)
    info = entry.fit(model, device, **options)
    return model.eval(), info


def trained(name: str, device=None) -> tuple[nn.Module, str]:
    """``(model, what it is)``: at the large scale (a GPU) the recipe trained live, elsewhere the
    stored model; the second item says which, how many steps it trained and how long it took,
    for the page to print.

    First used in section 14.5, *Training: with and without skips*.
    """
    from . import runtime

    entry = _entry(name)
    if runtime.scale() == "large":
        (model, info), seconds = runtime.timed(lambda: train(name, device), device)
        return model, f"trained here, {info['steps']:,} steps in {seconds:.0f} s"
    return load(name, device), (f"stored in the book's package: {entry.steps:,} steps, "
                                f"{entry.seconds:.0f} s on {entry.machine}")


def save(model: nn.Module, file: str | Path) -> str:
    """Write ``model``'s weights (on the CPU) to ``file``; returns its SHA-256. The archive is
    written to memory first: ``torch.save`` names the records inside after the file, so the
    same weights saved under two names would hash differently."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    Path(file).parent.mkdir(parents=True, exist_ok=True)
    Path(file).write_bytes(buffer.getvalue())
    return sha256(file)


def main(argv: list[str] | None = None) -> int:
    from . import runtime

    parser = argparse.ArgumentParser(prog="python -m dlcv.zoo", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("train", help="train a stored model by its recipe and write its file")
    make.add_argument("name", choices=names())
    make.add_argument("--out", type=Path, help="where to write the file (default: the package's own)")
    sub.add_parser("list", help="name the stored models")
    sub.add_parser("check", help="check every stored file's size and SHA-256")
    args = parser.parse_args(argv)
    if args.command == "list":
        for e in ENTRIES.values():
            print(f"{e.name}: {e.summary}; {e.steps:,} steps, {e.seconds:.0f} s on {e.machine}")
        return 0
    if args.command == "check":
        bad = 0
        for name in names():
            file = path(name)
            ok = file.exists() and file.stat().st_size <= MAX_BYTES and sha256(file) == ENTRIES[name].sha256
            bad += not ok
            print(f"{name}: {'ok' if ok else 'MISMATCH or missing'} ({file})")
        return 1 if bad else 0
    torch.set_num_threads(1)
    runtime.seed_everything(0)
    (model, info), seconds = runtime.timed(lambda: train(args.name))
    out = args.out or path(args.name)
    digest = save(model, out)
    print(f"{args.name}: {info['steps']:,} steps in {seconds:.0f} s on {runtime.describe_hardware()}, "
          f"one thread; wrote {out} ({out.stat().st_size:,} bytes), SHA-256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
