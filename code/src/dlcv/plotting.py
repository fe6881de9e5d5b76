"""Figures in one consistent style: image grids, training curves, confusion matrices.

Call ``use_book_style()`` once (``dlcv.runtime.setup`` does not, so that plain scripts keep
matplotlib's defaults). Every helper returns the matplotlib ``Figure`` it drew.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["use_book_style", "image_grid", "image_row", "row_label", "plot_curves", "plot_confusion", "glue_figure", "PALETTE",
           "LINESTYLES", "MARKERS"]

# Okabe–Ito colours: distinguishable with the common forms of colour blindness.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
# No series is told apart by colour alone: the style cycles a line style with each colour, and
# scatter plots of classes take a marker per class from MARKERS (WCAG 1.4.1, use of colour).
LINESTYLES = ["-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 1)),
              (0, (8, 2, 2, 2))]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]


def use_book_style() -> None:
    """Set the book's matplotlib style: readable sizes, light grid, colour-blind-safe palette,
    and a line style that changes with the colour, so that lines differ by more than colour.

    First used at the start of chapter 1.
    """
    mpl.rcParams.update({
        "figure.figsize": (6.4, 4.0), "figure.dpi": 100, "savefig.dpi": 100,
        "figure.constrained_layout.use": True,
        "axes.prop_cycle": mpl.cycler(color=PALETTE) + mpl.cycler(linestyle=LINESTYLES), "axes.grid": True,
        "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
        "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
        "legend.frameon": False, "image.cmap": "gray",
    })


def _to_hwc(img) -> np.ndarray:
    """Accept ``[H, W]``, ``[H, W, C]`` or ``[C, H, W]`` arrays or tensors; return HW or HWC."""
    a = img.detach().cpu().numpy() if hasattr(img, "detach") else np.asarray(img)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3):
        raise ValueError(f"an image must be [H, W], [H, W, C] or [C, H, W]; got shape {a.shape}")
    return a


def image_grid(images, titles: Sequence[str] | None = None, ncols: int = 8,
               size: float = 1.2, cmap: str = "gray", suptitle: str | None = None):
    """Show images in a grid with optional titles; ``images`` is a sequence or an ``[N, ...]`` array.

    First used in section 1.6, *A first taste: a pretrained network on real photographs*.
    """
    images = list(images)
    if not images:
        raise ValueError("image_grid needs at least one image")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"got {len(titles)} titles for {len(images)} images")
    ncols = min(ncols, len(images))
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * (1.25 if titles else 1)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            a = _to_hwc(images[i])
            ax.imshow(a, cmap=cmap if a.ndim == 2 else None, interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def plot_curves(curves: dict[str, Sequence[float]], xlabel: str = "epoch", ylabel: str = "",
                title: str | None = None, ax=None, x=None, **kwargs):
    """Plot named curves (e.g. ``history.as_dict()``) on one axis; returns the figure."""
    if not curves:
        raise ValueError("plot_curves needs at least one named curve")
    fig = ax.figure if ax is not None else plt.figure()
    ax = ax or fig.gca()
    for name, ys in curves.items():
        xs = x if x is not None else np.arange(1, len(ys) + 1)
        ax.plot(xs, ys, label=name, **kwargs)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    return fig


def plot_confusion(y_true, y_pred, classes: Sequence[str], normalize: bool = True, ax=None,
                   title: str | None = None):
    """Confusion matrix (rows: true class, columns: predicted), row-normalised by default.

    First used in section 2.6, *Setting hyperparameters*.
    """
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.shape} vs {y_pred.shape}")
    k = len(classes)
    if len(y_true) and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= k):
        raise ValueError(f"labels must lie in 0..{k - 1} for {k} classes")
    cm = np.zeros((k, k))
    np.add.at(cm, (y_true, y_pred), 1)
    if normalize:
        cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig = ax.figure if ax is not None else plt.figure(figsize=(0.45 * k + 2, 0.45 * k + 1.5))
    ax = ax or fig.gca()
    im = ax.imshow(cm, cmap="Blues", vmin=0)
    ax.grid(False)
    ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            v = cm[i, j]
            if v:
                ax.text(j, i, f"{v:.2f}" if normalize else f"{int(v)}", ha="center", va="center",
                        fontsize=6, color="white" if v > cm.max() / 2 else "black")
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def image_row(ax_row, images, titles: Sequence[str] | None = None) -> None:
    """Draw grey images ``[N, 1, H, W]`` in [0, 1] along a row of axes, dark on light, without
    ticks or frames; ``titles`` (optional) above them. Chapters 15 and 16 show samples so.

    First used in section 15.2, *Autoregressive models: PixelCNN*.
    """
    for k, ax in enumerate(ax_row):
        ax.imshow(images[k, 0].detach().cpu(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
        if titles is not None:
            ax.set_title(titles[k], fontsize=8)


def row_label(ax, text: str) -> None:
    """Name a row of images at its left (the axes' y label, so that the layout makes room).

    First used in section 15.4, *Variational autoencoders*.
    """
    ax.set_ylabel(text, rotation=0, ha="right", va="center", fontsize=8)


def glue_figure(name: str, fig) -> None:
    """Glue ``fig`` under ``name`` for a ``{glue:figure}`` directive, then close it.

    Closing matters: an open figure is also drawn at the end of its cell, so a page would
    show it twice.

    First used in section 1.2, *Two threads: seeing and learning*.
    """
    from dlcv.book import HAVE_MYST_NB, glue

    # Without myst-nb (a reader's Colab or fresh kernel) no page will show the glued figure,
    # so show it under the cell instead.
    glue(name, fig, display=not HAVE_MYST_NB)
    plt.close(fig)
