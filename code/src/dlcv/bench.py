"""How fast is ``dlcv.training.fit``? The same model on the same data, trained three ways.

``python -m dlcv.bench`` trains ``SmallConvNet`` on Fashion-MNIST images with SGD (momentum
0.9, batch 128) and prints images per second for

* ``fit``: the book's loop (``dlcv.training``), data held on the device as tensors;
* a bare PyTorch loop: a shuffled permutation each epoch, then forward, loss, backward, step,
  and nothing else (no loss or accuracy bookkeeping): the ceiling ``fit`` is measured against;
* a DataLoader loop as most tutorials write it: ``DataLoader(TensorDataset(x, y),
  batch_size=128, shuffle=True)`` over CPU tensors, each batch moved to the device.

Each way runs one untimed warm-up epoch, then ``--repeats`` timed rounds of ``--epochs`` epochs,
interleaved with the other ways so that a busy machine slows all three alike; the median round
counts. On a CUDA GPU the timings synchronise the device. It runs on the CPU and, where present,
on CUDA (``--device`` chooses one). This is a measurement, not a test: it asserts nothing, and its
table is in docs/budgets.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from torch import nn

from . import data, runtime
from .models import SmallConvNet
from .training import TensorData, fit

__all__ = ["bench", "main"]

BATCH, LR = 128, 0.05


def _model(device):
    torch.manual_seed(0)
    model = SmallConvNet().to(device)
    return model, torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)


def _fit_way(x, y, device):
    model, opt = _model(device)
    train = TensorData(x.to(device), y.to(device))
    return lambda epochs: fit(model, train, epochs=epochs, optimizer=opt, batch_size=BATCH, progress=False)


def _bare_way(x, y, device):
    model, opt = _model(device)
    x, y = x.to(device), y.to(device)
    gen = torch.Generator().manual_seed(0)
    loss_fn = nn.functional.cross_entropy

    def run(epochs):
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(y), generator=gen).to(device)
            for i in range(0, len(y), BATCH):
                idx = order[i:i + BATCH]
                loss = loss_fn(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return run


def _dataloader_way(x, y, device):
    from torch.utils.data import DataLoader, TensorDataset

    model, opt = _model(device)
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True,
                        generator=torch.Generator().manual_seed(0))

    def run(epochs):
        model.train()
        for _ in range(epochs):
            for xb, yb in loader:
                xb, yb = xb.to(device), yb.to(device)
                loss = nn.functional.cross_entropy(model(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
    return run


WAYS = {"fit (dlcv.training)": _fit_way, "bare PyTorch loop": _bare_way, "DataLoader loop": _dataloader_way}


def bench(device: torch.device | str = "cpu", n: int = 8192, epochs: int = 1, repeats: int = 3) -> dict[str, float]:
    """Images per second of each way (``WAYS``) on ``device``: the median of ``repeats`` rounds."""
    device = torch.device(device)
    if n < BATCH or epochs < 1 or repeats < 1:
        raise ValueError(f"need n >= {BATCH}, epochs >= 1 and repeats >= 1; got {n}, {epochs}, {repeats}")
    ds = data.load_dataset("fashion-mnist", verbose=False)
    x, y = data.as_tensors(ds.x_train[:n], ds.y_train[:n])
    runs = {name: make(x, y, device) for name, make in WAYS.items()}
    for run in runs.values():          # warm-up: allocations, kernels, caches
        run(1)
    rounds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            runtime.synchronize(device)
            start = time.perf_counter()
            run(epochs)
            runtime.synchronize(device)
            rounds[name].append(len(x) * epochs / (time.perf_counter() - start))
    return {name: statistics.median(r) for name, r in rounds.items()}


def table(results: dict[str, float], where: str) -> str:
    bare = results["bare PyTorch loop"]
    lines = [f"Training throughput on {where} (SmallConvNet, Fashion-MNIST, batch {BATCH}, SGD):", "",
             "| loop | images/s | of the bare loop |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {ips:,.0f} | {ips / bare:.0%} |" for name, ips in results.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], action="append",
                        help="where to run (default: the CPU, and CUDA where present)")
    parser.add_argument("--n", type=int, default=8192, help="training images (default 8192)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per timed round (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; the median counts (default 3)")
    args = parser.parse_args(argv)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cuda" in devices and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU here")
    for name in devices:
        runtime.seed_everything(0)
        where = (f"a {os.cpu_count()}-core {platform.machine()} CPU ({torch.get_num_threads()} threads)"
                 if name == "cpu" else runtime.describe_hardware())
        print(table(bench(name, args.n, args.epochs, args.repeats), where), end="\n\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
