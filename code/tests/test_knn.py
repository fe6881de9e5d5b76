"""k-NN from scratch against its library twins: torch.cdist and scikit-learn."""
import numpy as np
import pytest
import torch
from sklearn.model_selection import KFold
from sklearn.neighbors import KNeighborsClassifier

from dlcv import knn


@pytest.fixture
def blobs():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 20, generator=g) * 3
    y = torch.randint(0, 4, (400,), generator=g)
    X = centers[y] + torch.randn(400, 20, generator=g) * 2.5
    return X.double(), y


@pytest.mark.parametrize("p, fn", [(1, knn.l1_distances), (2, knn.l2_distances)])
def test_distances_match_cdist(p, fn):
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(37, 13, generator=g, dtype=torch.float64), torch.randn(53, 13, generator=g, dtype=torch.float64)
    torch.testing.assert_close(fn(a, b), torch.cdist(a, b, p=p))


def test_l2_of_identical_rows_is_zero_not_nan():
    # |a|^2 + |a|^2 - 2 a.a cancels to a few float32 ulps of |a|^2, of either sign, whose exact
    # value depends on the CPU's matmul kernel: the clamp keeps them from becoming NaN, and the
    # distance left over is about sqrt(ulps) * |a| (0.0135 for |a| = 19.6 on an AVX-512 CPU).
    a = torch.full((3, 784), 0.7)
    d = knn.l2_distances(a, a)
    bound = 4 * torch.finfo(torch.float32).eps ** 0.5 * a.norm(dim=1).max()
    assert torch.isfinite(d).all() and d.max() < bound, (d.max(), bound)


def test_slide_example_l1_is_456():
    test = torch.tensor([[56, 32, 10, 18], [90, 23, 128, 133], [24, 26, 178, 200], [2, 0, 255, 220.]])
    train = torch.tensor([[10, 20, 24, 17], [8, 10, 89, 100], [12, 16, 178, 170], [4, 32, 233, 112.]])
    assert knn.l1_distances(test.reshape(1, -1), train.reshape(1, -1)).item() == 456


@pytest.mark.parametrize("k", [1, 3, 7])
@pytest.mark.parametrize("distance, metric", [("L2", "euclidean"), ("L1", "manhattan")])
def test_knn_matches_scikit_learn(blobs, k, distance, metric):
    X, y = blobs
    Xtr, ytr, Xte = X[:300], y[:300], X[300:]
    ours = knn.KNearestNeighbor(k=k, distance=distance).train(Xtr, ytr).predict(Xte, batch_size=33)
    sk = KNeighborsClassifier(n_neighbors=k, metric=metric, algorithm="brute").fit(Xtr.numpy(), ytr.numpy())
    np.testing.assert_array_equal(ours.numpy(), sk.predict(Xte.numpy()))


def test_loop_version_matches_vectorised(blobs):
    X, y = blobs
    for distance in ("L1", "L2"):
        fast = knn.KNearestNeighbor(k=1, distance=distance).train(X[:300], y[:300]).predict(X[300:])
        slow = knn.nearest_neighbor_loop(X[:300], y[:300], X[300:], distance=distance)
        assert torch.equal(fast, slow)


def test_vote_breaks_ties_towards_smallest_label():
    labels = torch.tensor([[3, 1, 1, 3, 0]])
    assert knn.knn_vote(labels, k=4, num_classes=4).item() == 1


def test_cross_validation_matches_scikit_learn(blobs):
    X, y = blobs
    ks = [1, 5, 15]
    ours = knn.cross_validate_k(X, y, ks, folds=5)
    for j, k in enumerate(ks):
        for f, (tr, va) in enumerate(KFold(5).split(X.numpy())):
            sk = KNeighborsClassifier(n_neighbors=k, algorithm="brute").fit(X[tr].numpy(), y[tr].numpy())
            assert ours[j, f].item() == pytest.approx(sk.score(X[va].numpy(), y[va].numpy()))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="flatten"):
        knn.l2_distances(torch.zeros(2, 1, 28, 28), torch.zeros(3, 784))
    with pytest.raises(ValueError, match="k must be"):
        knn.KNearestNeighbor(k=0)
    with pytest.raises(ValueError, match="distance must be"):
        knn.KNearestNeighbor(distance="cosine")
    with pytest.raises(ValueError, match="exceeds"):
        knn.KNearestNeighbor(k=5).train(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(RuntimeError, match="train"):
        knn.KNearestNeighbor().predict(torch.zeros(1, 2))
