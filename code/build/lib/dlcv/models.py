"""Small networks the early chapters train (their layers are explained in Chapters 5–8)."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmallConvNet"]


class SmallConvNet(nn.Module):
    """Two conv–ReLU–pool stages and a two-layer classifier for ``[N, 1, 28, 28]`` images.

    ``features(x)`` returns the ``[N, feature_dim]`` activations of the next-to-last layer,
    the learned representation that Chapter 2 uses for nearest-neighbour search.
    """

    def __init__(self, num_classes: int = 10, width: int = 16, feature_dim: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),          # [N, w, 14, 14]
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # [N, 2w, 7, 7]
            nn.Flatten(), nn.Linear(2 * width * 49, feature_dim), nn.ReLU(),        # [N, feature_dim]
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"SmallConvNet expects images [N, 1, 28, 28], got {tuple(x.shape)}")
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
