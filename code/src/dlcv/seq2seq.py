"""Reading a strip of handwritten digits with an encoder-decoder (Chapter 11).

The task: an image ``[1, 28, W]`` holds ``L`` MNIST digits side by side; the network must emit the
``L`` digits, left to right, then an end token. ``digit_strips`` builds such strips from real
digits. The encoder turns the image into a sequence of column features with two small
convolutions (each step covers 4 pixel columns) and runs a GRU over them. The decoder is a GRU
that emits one token per step, fed the previous token:

* ``Seq2Seq(attention=False)``: the plain encoder-decoder of Sutskever et al. (2014): the encoder's
  last state is the decoder's initial state and the context vector ``c``, the same at every step
  (``s_t = g(y_{t-1}, s_{t-1}, c)``);
* ``Seq2Seq(attention=True)``: Bahdanau et al.'s (2015) decoder: at every step a new context
  ``c_t = sum_j a_tj h_j`` from additive attention over all encoder states.

Tokens: 0-9 are digits, ``END = 10``, ``START = 11`` (input only). Shapes: images ``[B, 1, 28, W]``,
encoder states ``[B, T, H]`` with ``T = W / 4``, targets ``[B, L + 1]`` (digits then END), logits
``[B, L + 1, 11]``, attention weights ``[B, L + 1, T]``.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .attention import AdditiveAttention

__all__ = ["END", "START", "DIGIT_WIDTH", "digit_strips", "Seq2Seq", "sequence_accuracy"]

END, START = 10, 11
DIGIT_WIDTH = 20      # the central 20 of MNIST's 28 columns: the digits' ink lies within them


def digit_strips(images, labels, n: int, length: int, generator: torch.Generator | None = None):
    """``n`` strips of ``length`` random digits drawn from ``images [N, 28, 28]`` (uint8 or
    float in [0, 1]) with ``labels [N]``: returns ``x [n, 1, 28, DIGIT_WIDTH * length]`` in
    [0, 1] and the targets ``y [n, length + 1]`` (the digits, then ``END``).

    First used in section 11.2, *Sequence to sequence*.
    """
    images = torch.as_tensor(images)
    labels = torch.as_tensor(labels)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"expected images of shape [N, 28, 28], got {tuple(images.shape)}")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if length < 1 or n < 1:
        raise ValueError(f"need n >= 1 strips of length >= 1, got n={n}, length={length}")
    idx = torch.randint(len(images), (n, length), generator=generator)       # [n, L]
    lo = (28 - DIGIT_WIDTH) // 2
    digits = images[idx][..., lo:lo + DIGIT_WIDTH]                           # [n, L, 28, 20]
    digits = digits.float() / 255 if digits.dtype == torch.uint8 else digits.float()
    x = digits.permute(0, 2, 1, 3).reshape(n, 1, 28, length * DIGIT_WIDTH)  # side by side
    y = torch.cat([labels[idx].long(), torch.full((n, 1), END)], dim=1)
    return x, y


class Seq2Seq(nn.Module):
    """Convolutional column encoder + GRU, and a GRU decoder, with or without attention.

    First used in section 11.2, *Sequence to sequence*.
    """

    def __init__(self, hidden: int = 128, attention: bool = False, embed: int = 32):
        super().__init__()
        self.attention = attention
        # [B, 1, 28, W] -> [B, 32, 7, W/4]. Pooling before the ReLU gives the same numbers as
        # after it (both keep the order of values). Channels-last memory (the channels of a
        # pixel side by side) makes the CPU's convolutions and pooling about twice as fast,
        # and they are half of a training step's time.
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(),
        ).to(memory_format=torch.channels_last)
        self.encoder = nn.GRU(32 * 7, hidden, batch_first=True)
        self.embed = nn.Embedding(12, embed)
        self.decoder = nn.GRUCell(embed + hidden, hidden)
        self.attend = AdditiveAttention(hidden, hidden, hidden) if attention else None
        self.out = nn.Linear(hidden + hidden + embed, 11)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, 1, 28, W]`` -> encoder states ``[B, W/4, H]`` and the last state ``[B, H]``."""
        f = self.features(x.contiguous(memory_format=torch.channels_last))   # [B, 32, 7, T]
        cols = f.permute(0, 3, 1, 2).flatten(2)                               # [B, T, 224]: one vector per column
        h, last = self.encoder(cols)
        return h, last[0]

    def forward(self, x, y=None, steps=None):
        """Teacher forcing when targets ``y [B, L+1]`` are given (the decoder is fed the
        true previous token), greedy decoding for ``steps`` otherwise. Returns logits
        ``[B, S, 11]`` and attention weights ``[B, S, T]`` (None without attention)."""
        h, s = self.encode(x)                           # [B, T, H] and the last state [B, H]
        steps = y.shape[1] if y is not None else steps
        if steps is None:
            raise ValueError("give the targets y (training) or a number of steps (decoding)")
        uh = self.attend.U(h) if self.attention else None        # once per strip [B, T, A]
        token = torch.full((x.shape[0],), START, dtype=torch.long, device=x.device)
        c, logits, weights = s, [], []                  # plain: c = the last encoder state
        for t in range(steps):
            e = self.embed(token)                                          # [B, E]
            if self.attention:
                c, a = self.attend(s, h, uh)            # this step's context [B, H]
                weights.append(a)
            s = self.decoder(torch.cat([e, c], dim=1), s)                  # [B, H]
            step_logits = self.out(torch.cat([s, c, e], dim=1))            # [B, 11]
            logits.append(step_logits)
            token = y[:, t] if y is not None else step_logits.argmax(1)
        return torch.stack(logits, 1), (torch.stack(weights, 1) if weights else None)

    def loss(self, x, y):
        logits, _ = self(x, y)
        return F.cross_entropy(logits.flatten(0, 1), y.flatten())


@torch.no_grad()
def sequence_accuracy(model: Seq2Seq, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """The fraction of strips read exactly right: every digit and the end token, greedy decoding.

    First used in section 11.2, *Sequence to sequence*.
    """
    was_training = model.training
    model.eval()
    right = 0
    for i in range(0, len(x), batch_size):
        logits, _ = model(x[i:i + batch_size], steps=y.shape[1])
        right += (logits.argmax(-1) == y[i:i + batch_size]).all(1).sum().item()
    model.train(was_training)
    return right / len(x)
