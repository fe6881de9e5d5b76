"""Where the code runs and how big it runs: device choice, seeding, and the scale setting.

Every chapter starts with ``device = dlcv.runtime.setup()``. It picks the best device
(CUDA, then Apple MPS, then the CPU), says so once, seeds every random number generator,
and makes CPU results deterministic. The *scale* lets the same chapter code run small on
a laptop CPU (the build must finish in minutes on two cores) and larger on a GPU:

>>> n_train = pick(small=10_000, large=60_000)   # doctest: +SKIP

The scale is ``"large"`` on a CUDA GPU and ``"small"`` everywhere else; set the
environment variable ``DLCV_SCALE`` to ``small`` or ``large`` to override it.

A third scale, ``"smoke"``, is for checking that a chapter runs from top to bottom, not for
reading its results: ``pick`` returns its ``smoke`` value (the ``small`` one where a chapter
gives none), the package's training loops stop after a few batches (``SMOKE_EPOCHS``,
``SMOKE_BATCHES``, ``SMOKE_STEPS``) and interactive figures draw two frames. The book's tests
execute every generated notebook this way (``DLCV_SCALE=smoke``); it is never chosen by default.
The same cut, at any scale, where ``DLCV_MAX_BATCHES`` is set (``max_batches``): every loop
reads it here, through ``limits``, ``limit_steps`` or ``epoch_batches``.
"""
from __future__ import annotations

import itertools
import math
import os
import platform
import random
from typing import TypeVar

import numpy as np
import torch

__all__ = ["get_device", "device_of", "seed_everything", "scale", "is_smoke", "pick", "max_batches", "is_cut", "limits", "limit_steps", "epoch_batches", "setup", "build_record", "synchronize", "timed", "describe_hardware"]

T = TypeVar("T")
SCALES = ("smoke", "small", "large")
# what the package's training loops (training.fit, linear.train_linear, SoftmaxClassifier.fit) run
# at the smoke scale: at most this many epochs, batches per epoch, steps
SMOKE_EPOCHS, SMOKE_BATCHES, SMOKE_STEPS = 2, 2, 20
MAX_BATCHES_VARIABLE = "DLCV_MAX_BATCHES"
_announced: set[str] = set()


def get_device(verbose: bool = True) -> torch.device:
    """The best available device: CUDA, then Apple MPS, then CPU (announced once per process)."""
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        name = torch.cuda.get_device_name(0)
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        dev, name = torch.device("mps"), "Apple GPU (MPS)"
    else:
        threads = torch.get_num_threads()
        dev, name = torch.device("cpu"), f"CPU, {threads} thread{'s' if threads > 1 else ''}"
    if verbose and dev.type not in _announced:
        _announced.add(dev.type)
        print(f"dlcv: running on {dev.type} ({name}), scale '{scale()}'")
    return dev


def device_of(model: torch.nn.Module) -> torch.device:
    """The device a model lives on: that of its first parameter, else of its first buffer,
    else the CPU (a model with neither, such as ``nn.ReLU()``, runs wherever its input is)."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (all devices), and make results repeatable.

    On the CPU, PyTorch's deterministic mode is switched on, so a CPU build gives the same
    numbers every time. On a GPU only cuDNN's convolutions are made deterministic: several CUDA
    kernels the chapters need (the backward pass of adaptive average pooling, in ResNet's and
    EfficientNet's heads) have no deterministic version, and the global mode would print a
    warning for each into the pages. GPU results can therefore differ in the last digits from
    run to run.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA and MPS generators
    torch.backends.cudnn.benchmark = False
    if get_device(verbose=False).type != "cpu":
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = True
    else:
        torch.use_deterministic_algorithms(True, warn_only=True)


def scale() -> str:
    """``"large"`` on a CUDA GPU, else ``"small"``; the ``DLCV_SCALE`` variable overrides it
    (``small``, ``large``, or ``smoke`` for a quick check that code runs).

    First used in section 16.2.3, *Latent diffusion*.
    """
    forced = os.environ.get("DLCV_SCALE", "").strip().lower()
    if forced:
        if forced not in SCALES:
            raise ValueError(f"DLCV_SCALE must be one of {SCALES}, got {forced!r}")
        return forced
    return "large" if torch.cuda.is_available() else "small"


def pick(small: T, large: T, smoke: T | None = None) -> T:
    """Choose a setting by scale: ``small`` on a CPU, ``large`` on a GPU, and at the smoke
    scale ``smoke`` (``small`` when not given).

    First used in section 2.5, *Nearest neighbour, then k nearest neighbours*.
    """
    current = scale()
    if current == "large":
        return large
    if current == "smoke" and smoke is not None:
        return smoke
    return small


def max_batches() -> int | None:
    """How many batches an epoch may run, or None for no cut: ``SMOKE_BATCHES`` at the smoke
    scale, else the whole number that ``DLCV_MAX_BATCHES`` gives where it is set (the fake GPU
    of the book's tests, ``tools/fake_cuda.py``, sets it to check the device paths of the small
    and large scales quickly). The one cut every loop of the package reads."""
    value = os.environ.get(MAX_BATCHES_VARIABLE, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{MAX_BATCHES_VARIABLE} must be a positive whole number, got {value!r}")
        return int(value)
    return SMOKE_BATCHES if is_smoke() else None


def is_cut() -> bool:
    """True when training is cut short (``max_batches``): code paths are checked, results
    mean nothing."""
    return max_batches() is not None


def limits(epochs: int, steps: int) -> tuple[int, int]:
    """``(epochs, steps per epoch)``, cut to ``SMOKE_EPOCHS`` and ``max_batches()`` when
    training is cut, unchanged otherwise: the limit every training loop applies."""
    cut = max_batches()
    if cut is not None:
        return min(epochs, SMOKE_EPOCHS), min(steps, cut)
    return epochs, steps


def limit_steps(steps: int) -> int:
    """A loop counted in steps rather than epochs (or a sampler's steps): at most
    ``SMOKE_STEPS`` when training is cut."""
    return min(steps, SMOKE_STEPS) if is_cut() else steps


def epoch_batches(n: int, batch_size: int, epochs: int, generator: torch.Generator):
    """``(epoch, index tensor)`` for every batch of a hand-written loop over ``n`` examples: a
    fresh permutation from ``generator`` at the start of each epoch, cut by ``limits``.
    The loop may draw from the same generator between batches (noise, crops): the
    permutations are drawn lazily, so the stream is the one a loop written out would draw."""
    epochs, steps = limits(epochs, math.ceil(n / batch_size))
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator)
        for s in range(steps):
            yield epoch, order[s * batch_size:(s + 1) * batch_size]


def is_smoke() -> bool:
    """True at the smoke scale: code paths are checked, results mean nothing.

    First used in section 8.7, *A small ResNet on real images*.
    """
    return scale() == "smoke"


def synchronize(device: torch.device) -> None:
    """Wait until the device has finished its queued work (a no-op on the CPU). GPU kernels run
    asynchronously, so a timing without this measures only how long it took to queue them."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device=None):
    """Run ``fn()`` and return ``(its result, the seconds it took)``, waiting for ``device``'s
    queued work before and after (GPU kernels run asynchronously: without the waits a timing
    measures only how long they took to queue).

    First used in section 2.5, *Nearest neighbour, then k nearest neighbours*.
    """
    import time

    if device is not None:
        synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device is not None:
        synchronize(device)
    return out, time.perf_counter() - start


def setup(seed: int = 0) -> torch.device:
    """Seed everything and return the device; the one line every chapter starts with.

    Where ``DLCV_BUILD_RECORD`` names a file (the book's build sets it for each chapter it
    executes, ``tools/execute.py``), the device, the scale and the versions are written there as
    JSON, for the page's note on how it was built.

    First used at the start of chapter 1.
    """
    seed_everything(seed)
    device = get_device()
    record = os.environ.get("DLCV_BUILD_RECORD")
    if record:
        import json

        with open(record, "w", encoding="utf-8") as f:
            json.dump(build_record(device), f)
    return device


def build_record(device: torch.device) -> dict:
    """What a page's results depend on: the hardware, the device type, its PyTorch threads (on
    a CPU), the scale, and the versions of Python and PyTorch."""
    return {"hardware": describe_hardware(), "device": torch.device(device).type,
            "threads": torch.get_num_threads(), "scale": scale(),
            "python": platform.python_version(), "torch": torch.__version__}


def describe_hardware() -> str:
    """One line naming the machine the code ran on, e.g. for the introduction's build note."""
    if torch.cuda.is_available():
        return f"an NVIDIA {torch.cuda.get_device_name(0).removeprefix('NVIDIA ')} GPU"
    cores = os.cpu_count() or 1
    cpu = platform.processor() or platform.machine()
    return f"a {cores}-core {cpu} CPU (no GPU)"
