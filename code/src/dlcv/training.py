"""A small, honest training loop used by every chapter that trains a network.

Small datasets are held on the device as tensors (``TensorData``), so an epoch is a
loop over index slices with no DataLoader workers and no host copies. The loop never
calls ``.item()`` inside an epoch: losses and correct counts are summed on the device
and read once per epoch, so a GPU is not forced to wait for the host every step.
"""
from __future__ import annotations

import math
import os

from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from . import runtime

__all__ = ["TensorData", "History", "fit", "evaluate", "predict", "run_epochs"]


@dataclass
class TensorData:
    """Inputs ``x [N, ...]`` and integer labels ``y [N]``, kept together on one device.

    First used in section 2.8, *Nearest neighbours on learned features*.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self):
        if not isinstance(self.x, torch.Tensor) or not isinstance(self.y, torch.Tensor):
            raise TypeError("TensorData needs torch tensors for x and y")
        if self.y.ndim != 1 or len(self.x) != len(self.y):
            raise ValueError(f"x [N, ...] and y [N] must agree in N; got x {tuple(self.x.shape)}, "
                             f"y {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device) -> "TensorData":
        return TensorData(self.x.to(device), self.y.to(device))

    def batches(self, batch_size: int, shuffle: bool = False,
                generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)`` minibatches; with ``shuffle`` a fresh permutation each call."""
        n = len(self)
        if shuffle:
            order = torch.randperm(n, generator=generator).to(self.x.device)
            for i in range(0, n, batch_size):
                idx = order[i:i + batch_size]
                yield self.x[idx], self.y[idx]
        else:
            for i in range(0, n, batch_size):
                yield self.x[i:i + batch_size], self.y[i:i + batch_size]


@dataclass
class History:
    """Per-epoch records: ``history.train_loss[e]``, ``history.val_acc[e]`` and so on."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    best_epoch: int | None = None

    def as_dict(self) -> dict[str, list[float]]:
        return {k: v for k, v in vars(self).items() if isinstance(v, list) and v}


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorData, loss_fn: Callable = nn.functional.cross_entropy,
             batch_size: int = 1024) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``data`` (evaluation mode, no gradients).

    First used in section 8.7, *A small ResNet on real images*.
    """
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), device=data.x.device)
    correct = torch.zeros((), device=data.x.device, dtype=torch.long)
    for x, y in data.batches(batch_size):
        logits = model(x)
        total_loss += loss_fn(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    n = len(data)
    return total_loss.item() / n, correct.item() / n


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Class predictions ``[N]`` for inputs ``x [N, ...]``, in evaluation mode."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def fit(model: nn.Module, train: TensorData, val: TensorData | None = None, *, epochs: int,
        optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3, batch_size: int = 128,
        loss_fn: Callable = nn.functional.cross_entropy, scheduler=None, seed: int = 0,
        progress: bool | None = None, augment: Callable | None = None, patience: int | None = None,
        restore_best: bool = False) -> History:
    """Train ``model`` for a fixed number of ``epochs``; returns a ``History`` for plotting.

    ``optimizer`` defaults to Adam with learning rate ``lr``. ``scheduler`` (optional) is
    stepped once per epoch. ``progress`` shows a tqdm bar; by default it is on unless the
    environment variable ``DLCV_NO_PROGRESS`` is set (the book's build sets it, so that
    the published pages carry no dead progress bars). Shuffling uses its own generator seeded by ``seed``, so a run is
    repeatable on the CPU whatever else drew random numbers before it.

    ``augment(x, y, generator) -> (x, y)`` transforms each training batch (augmentation, or mixup,
    whose soft targets ``[B, C]`` ``F.cross_entropy`` accepts). With validation data,
    ``restore_best`` keeps a copy of the weights of the epoch with the lowest validation loss and
    loads it at the end, and ``patience`` stops early after that many epochs without a new best
    (early stopping); ``history.best_epoch`` records it (0-based).

    When training is cut (the smoke scale, or ``DLCV_MAX_BATCHES``: ``runtime.limits``) it
    trains at most ``runtime.SMOKE_EPOCHS`` epochs of ``runtime.max_batches()`` batches, and
    validates on as many examples: every step of the loop runs, in seconds.

    First used in section 2.8, *Nearest neighbours on learned features*.
    """
    from tqdm.auto import tqdm

    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if progress is None:
        progress = not os.environ.get("DLCV_NO_PROGRESS")
    device = runtime.device_of(model)
    if train.x.device != device:
        raise ValueError(f"training data is on {train.x.device} but the model is on {device}; "
                         "move one of them with .to(device)")
    if (restore_best or patience is not None) and val is None:
        raise ValueError("restore_best and patience need validation data (val=...)")
    if patience is not None and patience < 1:
        raise ValueError(f"patience must be a positive number of epochs, got {patience}")
    if runtime.is_cut():
        epochs, steps = runtime.limits(epochs, math.ceil(len(train) / batch_size))
        n = steps * batch_size
        train = TensorData(train.x[:n], train.y[:n])
        val = None if val is None else TensorData(val.x[:n], val.y[:n])
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    history = History()
    best_loss, best_state, waited = float("inf"), None, 0
    bar = tqdm(range(epochs), desc="epochs", disable=not progress, leave=False)
    for _ in bar:
        model.train()
        total_loss = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for x, y in train.batches(batch_size, shuffle=True, generator=generator):
            if augment is not None:
                x, y = augment(x, y, generator)
            logits = model(x)
            loss = loss_fn(logits, y)
            if y.ndim == 2:  # soft targets (mixup): count the larger share as the label
                y = y.argmax(1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
        if scheduler is not None:
            scheduler.step()
        history.train_loss.append(total_loss.item() / len(train))  # one sync per epoch
        history.train_acc.append(correct.item() / len(train))
        if val is not None:
            vl, va = evaluate(model, val, loss_fn)
            history.val_loss.append(vl)
            history.val_acc.append(va)
        bar.set_postfix(loss=f"{history.train_loss[-1]:.3f}",
                        **({"val_acc": f"{history.val_acc[-1]:.3f}"} if val is not None else {}))
        if val is not None and history.val_loss[-1] < best_loss:
            best_loss, waited = history.val_loss[-1], 0
            history.best_epoch = len(history.val_loss) - 1
            if restore_best:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif val is not None:
            waited += 1
            if patience is not None and waited >= patience:
                break
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
    return history


def run_epochs(models: nn.Module | Sequence[nn.Module], n: int, *, batch_size: int, epochs: int,
               generator: torch.Generator, step: Callable[[int, torch.Tensor], dict],
               per: str = "batch", on_epoch: Callable[[int], None] | None = None) -> list[dict]:
    """The epoch loop of the package's hand-written training loops (generative models,
    translation, diffusion, detection's second stage, segmentation, Mask R-CNN's heads).

    It owns what they share: shuffled batches of ``n`` examples (``runtime.epoch_batches``: a
    fresh permutation from ``generator`` at each epoch's start, drawn when the epoch's first
    batch is, so that ``step`` may draw from the same generator; cut by ``runtime.limits``), the
    ``models`` in training mode during an epoch and in evaluation mode after it (while
    ``on_epoch(epoch)`` runs, to record samples, and at the end), and the bookkeeping:
    ``step(epoch, idx)`` does one batch's work (forward, losses, optimiser steps: a GAN's two
    updates stay visible in its ``step``) and returns ``{name: value}``; the loop returns, per
    epoch, each value summed over the epoch's batches and divided by the number of batches
    (``per="batch"``: ``step`` returns batch means) or of examples (``per="example"``: ``step``
    returns totals over its batch)."""
    if isinstance(models, nn.Module):
        models = [models]
    if per not in ("batch", "example"):
        raise ValueError(f"per must be 'batch' or 'example', got {per!r}")
    log: list[dict] = []
    sums: dict[str, float] = {}
    count, current = 0, None

    def close(epoch: int) -> None:
        log.append({k: v / count for k, v in sums.items()})
        for m in models:
            m.eval()
        if on_epoch is not None:
            on_epoch(epoch)

    for epoch, idx in runtime.epoch_batches(n, batch_size, epochs, generator):
        if epoch != current:
            if current is not None:
                close(current)
            sums, count, current = {}, 0, epoch
            for m in models:
                m.train()
        for k, v in step(epoch, idx).items():
            sums[k] = sums.get(k, 0.0) + (v.item() if isinstance(v, torch.Tensor) else float(v))
        count += len(idx) if per == "example" else 1
    if current is not None:
        close(current)
    for m in models:
        m.eval()
    return log
