"""Nearest-neighbour classification, written out (chapter 2).

Everything works on flattened images: ``X`` is a float tensor ``[N, D]`` (one row per image)
and ``y`` an int64 tensor ``[N]``. Distances are computed for a whole block of test images
at once (a ``[M, N]`` matrix), never with a Python loop over test images; the slide's loop
version is kept as ``nearest_neighbor_loop`` to check against.
"""
from __future__ import annotations

import torch

__all__ = ["l1_distances", "l2_distances", "DISTANCES", "KNearestNeighbor",
           "nearest_neighbor_loop", "knn_vote", "cross_validate_k"]


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected [M, D] and [N, D] with the same D; got {tuple(a.shape)} and "
                         f"{tuple(b.shape)} (flatten images with x.flatten(1) first)")


def l1_distances(a: torch.Tensor, b: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """All L1 distances ``d[i, j] = sum_p |a[i, p] - b[j, p]|``: ``[M, D], [N, D] → [M, N]``.

    Broadcasting ``a[:, None] - b[None]`` needs an ``[M, N, D]`` temporary, so rows of ``a``
    are taken ``chunk`` at a time to bound memory.
    """
    _check_pair(a, b)
    return torch.cat([(a[i:i + chunk, None, :] - b[None]).abs().sum(-1)
                      for i in range(0, len(a), chunk)]) if len(a) else a.new_zeros(0, len(b))


def l2_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All L2 distances ``[M, D], [N, D] → [M, N]``, from ``|a−b|² = |a|² + |b|² − 2 a·b``.

    The expansion turns the work into one matrix product. Rounding can make the squared
    distance slightly negative for near-identical rows, so it is clamped at zero.

    First used in section 2.4, *Distances between images*.
    """
    _check_pair(a, b)
    sq = (a * a).sum(1, keepdim=True) + (b * b).sum(1) - 2 * a @ b.T
    return sq.clamp_min_(0).sqrt_()


DISTANCES = {"L1": l1_distances, "L2": l2_distances}


def knn_vote(sorted_labels: torch.Tensor, k: int, num_classes: int) -> torch.Tensor:
    """Majority vote among the first ``k`` columns of ``[M, N]`` neighbour labels → ``[M]``.

    Ties go to the smallest class index (as in scikit-learn).

    First used in section 2.5, *Nearest neighbour, then k nearest neighbours*.
    """
    votes = torch.zeros(len(sorted_labels), num_classes, device=sorted_labels.device)
    votes.scatter_add_(1, sorted_labels[:, :k], torch.ones_like(sorted_labels[:, :k], dtype=votes.dtype))
    return votes.argmax(1)  # argmax returns the first maximum: the smallest tied label


class KNearestNeighbor:
    """k-NN with the data-driven API of the slides: ``train`` memorises, ``predict`` votes.

    First used in section 2.5, *Nearest neighbour, then k nearest neighbours*.
    """

    def __init__(self, k: int = 1, distance: str = "L2"):
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {list(DISTANCES)}, got {distance!r}")
        self.k, self.distance = k, distance

    def train(self, X: torch.Tensor, y: torch.Tensor) -> "KNearestNeighbor":
        """Remember the training data: ``X [N, D]`` float, ``y [N]`` int64. O(1) work."""
        if X.ndim != 2 or y.shape != (len(X),):
            raise ValueError(f"train needs X [N, D] and y [N]; got {tuple(X.shape)} and {tuple(y.shape)}")
        if self.k > len(X):
            raise ValueError(f"k = {self.k} exceeds the {len(X)} training examples")
        self.X, self.y = X, y.long()
        self.num_classes = int(self.y.max()) + 1
        return self

    fit = train  # scikit-learn's name for the same step

    def predict(self, X: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Labels ``[M]`` for ``X [M, D]``: O(M·N·D) work, done a block of test rows at a time."""
        if not hasattr(self, "X"):
            raise RuntimeError("call train(X, y) before predict")
        out = []
        for i in range(0, len(X), batch_size):
            d = DISTANCES[self.distance](X[i:i + batch_size], self.X)   # [B, N]
            idx = d.topk(self.k, dim=1, largest=False).indices          # [B, k]
            out.append(knn_vote(self.y[idx], self.k, self.num_classes))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def nearest_neighbor_loop(X_train: torch.Tensor, y_train: torch.Tensor, X: torch.Tensor,
                          distance: str = "L1") -> torch.Tensor:
    """The slide's 1-NN: a Python loop over test images. Slow; kept to test the fast version.

    First used in section 2.5, *Nearest neighbour, then k nearest neighbours*.
    """
    dist = DISTANCES[distance]
    preds = torch.empty(len(X), dtype=torch.long)
    for i in range(len(X)):
        preds[i] = y_train[dist(X[i:i + 1], X_train)[0].argmin()]
    return preds


def cross_validate_k(X: torch.Tensor, y: torch.Tensor, ks: list[int], folds: int = 5,
                     distance: str = "L2") -> torch.Tensor:
    """Accuracy ``[len(ks), folds]`` of k-NN for each k and each held-out fold.

    The data are split into ``folds`` contiguous folds (shuffle beforehand); for each fold,
    distances to the other folds are computed once and sorted once, then every k is scored.

    First used in section 2.6, *Setting hyperparameters*.
    """
    if folds < 2 or folds > len(X):
        raise ValueError(f"folds must lie in 2..{len(X)}, got {folds}")
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive ints, got {ks}")
    num_classes = int(y.max()) + 1
    bounds = torch.linspace(0, len(X), folds + 1).long().tolist()
    acc = torch.zeros(len(ks), folds)
    for f in range(folds):
        val = torch.zeros(len(X), dtype=torch.bool, device=X.device)
        val[bounds[f]:bounds[f + 1]] = True
        d = DISTANCES[distance](X[val], X[~val])
        if max(ks) > d.shape[1]:
            raise ValueError(f"k = {max(ks)} exceeds the {d.shape[1]} training examples of a fold")
        nearest = y[~val][d.topk(max(ks), dim=1, largest=False).indices]
        for j, k in enumerate(ks):
            acc[j, f] = (knn_vote(nearest, k, num_classes) == y[val]).float().mean().item()
    return acc
