"""Transformers and vision transformers from scratch (Chapter 12).

Shapes: a batch of sets of ``N`` vectors of width ``D`` is ``x [B, N, D]``.

* ``MultiHeadAttention(D, H)``: ``H`` heads, each attending with queries, keys and values of width
  ``D / H``; their outputs are concatenated and mixed by an output projection. ``forward(x)`` is
  self-attention; ``forward(x, context)`` is cross-attention (queries from ``x [B, N, D]``, keys
  and values from ``context [B, M, D]``). ``load_torch(mha)`` copies the weights of an
  ``nn.MultiheadAttention(D, H, batch_first=True)``, which the tests compare it with.
* ``TransformerBlock(D, H, mlp_ratio)``: the pre-norm block of ViT and GPT-2,
  ``x = x + MHA(LN(x))``, then ``x = x + MLP(LN(x))``; the MLP is ``Linear(D, rD)``, GELU,
  ``Linear(rD, D)``. It matches ``nn.TransformerEncoderLayer(norm_first=True, activation="gelu")``.
* ``patchify(images, p)``: ``[B, C, H, W]`` -> ``[B, (H/p)(W/p), C p p]``, the patches in
  row-major order, each flattened channel by channel (the layout of a ``p x p`` convolution
  with stride ``p``, so that a linear layer on patches equals that convolution).
* ``ViT``: patch embedding, a learned class token, learned positional embeddings, ``depth``
  blocks, a final layer norm and a linear head on the class token (Dosovitskiy et al., 2021).
  ``ViT(224, 16, 3, 1000, dim=768, depth=12, heads=12, mlp_ratio=4)`` is ViT-B/16.
"""
from __future__ import annotations

import torch
from torch import nn

from .attention import attention

__all__ = ["MultiHeadAttention", "TransformerBlock", "patchify", "ViT"]


class MultiHeadAttention(nn.Module):
    """``heads`` attention heads of width ``dim / heads``, concatenated and projected.

    First used in section 12.1, *The transformer block*.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim must be divisible by heads, got dim={dim}, heads={heads}")
        self.dim, self.heads = dim, heads
        self.q, self.k, self.v = (nn.Linear(dim, dim) for _ in range(3))
        self.proj = nn.Linear(dim, dim)
        self.last_attention: torch.Tensor | None = None      # [B, heads, N, M], for figures

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context           # self- or cross-attention
        b, n, d = x.shape
        if d != self.dim or context.shape[-1] != self.dim:
            raise ValueError(f"expected inputs of width {self.dim}, got {d} and {context.shape[-1]}")
        split = lambda t: t.unflatten(-1, (self.heads, d // self.heads)).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(context)), split(self.v(context))  # [B, H, N, D/H]
        y, a = attention(q, k, v)                    # every head at once: [B, H, N, D/H], [B, H, N, M]
        self.last_attention = a.detach()
        y = y.transpose(1, 2).reshape(b, n, d)                 # heads side by side: [B, N, D]
        return self.proj(y)

    @torch.no_grad()
    def load_torch(self, mha: nn.MultiheadAttention) -> "MultiHeadAttention":
        """Copy the weights of ``nn.MultiheadAttention`` (which stacks W_Q, W_K, W_V in one
        ``in_proj_weight [3D, D]``)."""
        for layer, w, b in zip((self.q, self.k, self.v), mha.in_proj_weight.chunk(3),
                               mha.in_proj_bias.chunk(3)):
            layer.weight.copy_(w)
            layer.bias.copy_(b)
        self.proj.weight.copy_(mha.out_proj.weight)
        self.proj.bias.copy_(mha.out_proj.bias)
        return self


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: self-attention is the only place where the vectors of a
    set interact; layer norm and the MLP act on each vector on its own.

    First used in section 12.1, *The transformer block*.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))                       # [B, N, D]
        return x + self.mlp(self.norm2(x))

    @torch.no_grad()
    def load_torch(self, layer: nn.TransformerEncoderLayer) -> "TransformerBlock":
        """Copy an ``nn.TransformerEncoderLayer(D, H, 4D, norm_first=True, activation="gelu")``."""
        self.attn.load_torch(layer.self_attn)
        for ours, theirs in ((self.norm1, layer.norm1), (self.norm2, layer.norm2),
                             (self.mlp[0], layer.linear1), (self.mlp[2], layer.linear2)):
            ours.load_state_dict(theirs.state_dict())
        return self


def patchify(images: torch.Tensor, p: int) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, (H/p)(W/p), C*p*p]``: non-overlapping ``p x p`` patches, row by
    row, each flattened as ``(channel, row, column)``.

    First used in section 12.2, *Vision transformers*.
    """
    b, c, h, w = images.shape
    if h % p or w % p:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {p}")
    x = images.reshape(b, c, h // p, p, w // p, p)            # [B, C, H/p, p, W/p, p]
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // p) * (w // p), c * p * p)


class ViT(nn.Module):
    """A vision transformer: patches -> linear embedding, plus a class token and learned
    positional embeddings, through ``depth`` blocks; the class token's output is classified.

    First used in section 12.2, *Vision transformers*.
    """

    def __init__(self, image_size: int, patch: int, channels: int, num_classes: int,
                 dim: int = 64, depth: int = 4, heads: int = 4, mlp_ratio: float = 4.0):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch}")
        self.patch = patch
        n = (image_size // patch) ** 2
        self.embed = nn.Linear(channels * patch * patch, dim)   # the patch embedding
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))          # the learned class token
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)   # one learned vector per position
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> the final tokens ``[B, 1 + N, D]`` (class token first)."""
        x = self.embed(patchify(images, self.patch))                      # [B, N, D]
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1) + self.pos   # [B, 1 + N, D]
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.tokens(images)[:, 0])                       # [B, classes]
