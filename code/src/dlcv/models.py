"""Small networks the early chapters train (their layers are explained in Chapters 5–8)."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmallConvNet", "SmallResNet"]


class SmallConvNet(nn.Module):
    """Two conv–ReLU–pool stages and a two-layer classifier for ``[N, 1, 28, 28]`` images.

    ``features(x)`` returns the ``[N, feature_dim]`` activations of the next-to-last layer,
    the learned representation that Chapter 2 uses for nearest-neighbour search.

    First used in section 2.8, *Nearest neighbours on learned features*.
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


class SmallResNet(nn.Module):
    """A small residual network for ``[N, C, 28, 28]`` images (Chapter 8): a 3x3 stem, one
    stage of ``blocks`` basic residual blocks per width in ``widths`` (every stage after the
    first halves the resolution with a stride-2 block and a 1x1 projection shortcut, as in
    ResNet), global average pooling and one linear layer. Blocks are torchvision's own
    ``BasicBlock``, the block of ResNet-18 and ResNet-34, unless ``block`` names another class
    with the same constructor (an exercise removes the skip connection this way).

    First used in section 8.5, *Residual networks*.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, widths=(16, 32, 64), blocks: int = 1,
                 block=None):
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        block = block or BasicBlock
        if not widths or blocks < 1:
            raise ValueError(f"need at least one stage and one block per stage, got widths={widths}, blocks={blocks}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        c_in = widths[0]
        for i, c in enumerate(widths):
            for j in range(blocks):
                stride = 2 if i > 0 and j == 0 else 1
                down = None
                if stride != 1 or c_in != c:
                    down = nn.Sequential(nn.Conv2d(c_in, c, 1, stride=stride, bias=False), nn.BatchNorm2d(c))
                layers.append(block(c_in, c, stride=stride, downsample=down))
                c_in = c
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
