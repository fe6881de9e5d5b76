"""dlcv.linear against torch.nn.functional and torch.autograd."""
import pytest
import torch
import torch.nn.functional as F

from dlcv import linear


def problem(n=7, d=5, c=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=dtype), torch.randn(c, d, generator=g, dtype=dtype),
            torch.randn(c, generator=g, dtype=dtype), torch.randint(0, c, (n,), generator=g))


def test_scores_match_nn_linear():
    x, W, b, _ = problem()
    assert torch.allclose(linear.linear_scores(x, W, b), F.linear(x, W, b))


def test_softmax_and_cross_entropy_match_torch_even_for_huge_scores():
    x, W, b, y = problem()
    s = linear.linear_scores(x, W, b) * 1000  # exp would overflow without the max shift
    assert torch.allclose(linear.softmax(s), F.softmax(s, dim=1))
    assert torch.allclose(linear.cross_entropy(s, y), F.cross_entropy(s, y))
    assert torch.isfinite(linear.cross_entropy(s, y))


def test_kl_divergence_matches_torch_and_equals_cross_entropy_for_one_hot():
    x, W, b, y = problem()
    q = linear.softmax(linear.linear_scores(x, W, b))
    p = torch.softmax(torch.randn_like(q), dim=1)
    torch_kl = F.kl_div(q.log(), p, reduction="none").sum(dim=1)
    assert torch.allclose(linear.kl_divergence(p, q), torch_kl)
    onehot = linear.one_hot(y, W.shape[0]).to(q.dtype)
    assert torch.allclose(linear.kl_divergence(onehot, q).mean(), F.nll_loss(q.log(), y))


def test_hand_derived_gradient_matches_autograd():
    x, W, b, y = problem()
    W_, b_ = W.clone().requires_grad_(), b.clone().requires_grad_()
    F.cross_entropy(F.linear(x, W_, b_), y).backward()
    loss, dW, db = linear.softmax_cross_entropy_grad(x, W, b, y)
    assert torch.allclose(dW, W_.grad) and torch.allclose(db, b_.grad)


def test_numerical_gradient_agrees_with_autograd_and_gradcheck():
    x, W, b, y = problem(n=4, d=3, c=3)
    num = linear.numerical_gradient(lambda w: linear.cross_entropy(linear.linear_scores(x, w, b), y), W.clone())
    _, dW, _ = linear.softmax_cross_entropy_grad(x, W, b, y)
    assert torch.allclose(num, dW, atol=1e-8)
    assert torch.autograd.gradcheck(lambda w: linear.cross_entropy(linear.linear_scores(x, w, b), y),
                                    (W.clone().requires_grad_(),))
    with pytest.raises(TypeError, match="float64"):
        linear.numerical_gradient(lambda w: w.sum(), torch.ones(3))


def test_squared_loss_matches_mse_over_two():
    p, t = torch.randn(10), torch.randn(10)
    assert torch.allclose(linear.squared_loss(p, t), F.mse_loss(p, t) / 2)


def test_classifier_equals_nn_linear_trained_with_torch_sgd():
    x, W, b, y = problem(n=32, d=6, c=3, seed=1)
    clf = linear.SoftmaxClassifier(6, 3, dtype=torch.float64)
    clf.W, clf.b = W.clone(), b.clone()
    layer = torch.nn.Linear(6, 3).double()
    with torch.no_grad():
        layer.weight.copy_(W), layer.bias.copy_(b)
    # the L2 penalty l2 * ||W||^2 is weight decay 2 * l2 on W only (not on the bias)
    opt = torch.optim.SGD([{"params": [layer.weight], "weight_decay": 2 * 0.01},
                           {"params": [layer.bias], "weight_decay": 0.0}], lr=0.5)
    clf.fit(x, y, lr=0.5, epochs=20, l2=0.01)  # full batch: same steps as the torch loop
    for _ in range(20):
        opt.zero_grad()
        F.cross_entropy(layer(x), y).backward()
        opt.step()
    assert torch.allclose(clf.W, layer.weight.detach()) and torch.allclose(clf.b, layer.bias.detach())


@pytest.mark.parametrize("bad, match", [
    (lambda x, W, b, y: linear.linear_scores(x[0], W, b), "x must be"),
    (lambda x, W, b, y: linear.linear_scores(x, W[:, :2], b), "W must be"),
    (lambda x, W, b, y: linear.linear_scores(x, W, b[:2]), "b must be"),
    (lambda x, W, b, y: linear.cross_entropy(x @ W.T, y + 10), "labels must lie"),
    (lambda x, W, b, y: linear.cross_entropy(x @ W.T, y.double()), "integers"),
    (lambda x, W, b, y: linear.cross_entropy(x @ W.T, y[:3]), r"labels y must be \[N\]"),
])
def test_bad_input_is_named(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        bad(*problem())


def test_soft_threshold_is_the_l1_proximal_step():
    w = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5])
    assert torch.equal(linear.soft_threshold(w, 0.5), torch.tensor([-1.5, 0.0, 0.0, 0.0, 1.0]))
    # prox minimises 1/2 (z - w)^2 + t |z| coordinate-wise: compare with a brute-force search
    z = torch.linspace(-3, 3, 60001)
    for wi in w:
        best = z[(0.5 * (z - wi) ** 2 + 0.5 * z.abs()).argmin()]
        assert abs(best - linear.soft_threshold(wi[None], 0.5)[0]) < 1e-3
    with pytest.raises(ValueError):
        linear.soft_threshold(w, -1)


def test_train_linear_l2_penalty_equals_sgd_weight_decay_and_l1_gives_zeros():
    x, _, _, y = problem(n=64, d=10, c=3, seed=2, dtype=torch.float32)
    a, _ = linear.train_linear(x, y, lr=0.1, steps=30, l2=0.05)
    b, _ = linear.train_linear(x, y, lr=0.1, steps=30, weight_decay=0.1)
    assert torch.allclose(a.weight, b.weight, atol=1e-6) and torch.allclose(a.bias, b.bias, atol=1e-6)
    sparse, hist = linear.train_linear(x, y, lr=0.1, steps=100, l1=0.05, x_val=x, y_val=y)
    assert (sparse.weight == 0).float().mean() > 0.2
    assert hist["train_loss"][-1] < hist["train_loss"][0] and len(hist["val_acc"]) == len(hist["step"])
    with pytest.raises(ValueError, match="L1"):
        linear.train_linear(x, y, lr=0.1, steps=1, l1=0.1, optimizer="adam")
    with pytest.raises(ValueError, match="unknown optimizer"):
        linear.train_linear(x, y, lr=0.1, steps=1, optimizer="lbfgs")
