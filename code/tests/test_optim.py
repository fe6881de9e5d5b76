"""dlcv.optim: every optimiser written from scratch against its torch.optim twin, step for step."""
import numpy as np
import pytest
import torch

from dlcv import optim

CASES = [
    (optim.SGD, dict(lr=0.1)),
    (optim.SGD, dict(lr=0.05, momentum=0.9)),
    (optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=0.1)),
    (optim.AdaGrad, dict(lr=0.1)),
    (optim.AdaGrad, dict(lr=0.1, weight_decay=0.05, eps=1e-6)),
    (optim.RMSProp, dict(lr=0.01)),
    (optim.RMSProp, dict(lr=0.01, alpha=0.9, weight_decay=0.1)),
    (optim.Adam, dict(lr=0.05)),
    (optim.Adam, dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.1)),
    (optim.AdamW, dict(lr=0.05, weight_decay=0.1)),
]


def loss_fn(params, x, y):
    w1, b1, w2 = params
    return ((torch.tanh(x @ w1 + b1) @ w2 - y) ** 2).mean()


@pytest.mark.parametrize("cls, hyper", CASES, ids=lambda c: getattr(c, "__name__", str(c)))
def test_matches_torch_optim_step_for_step(cls, hyper):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, generator=g, dtype=torch.float64), torch.randn(16, 2, generator=g, dtype=torch.float64)
    init = [torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64),
            torch.randn(4, 2, generator=g, dtype=torch.float64)]
    ours = [p.clone().requires_grad_() for p in init]
    theirs = [p.clone().requires_grad_() for p in init]
    opt_ours, opt_theirs = cls(ours, **hyper), optim.TORCH_TWINS[cls](theirs, **hyper)
    for step in range(25):
        for opt, params in ((opt_ours, ours), (opt_theirs, theirs)):
            opt.zero_grad()
            loss_fn(params, x, y).backward()
            opt.step()
        for a, b in zip(ours, theirs):
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), f"{cls.__name__} differs at step {step + 1}"
    assert not torch.allclose(ours[0], init[0]), "the parameters did not move"


def test_adam_l2_and_adamw_differ_but_sgd_l2_equals_decay():
    w0 = torch.tensor([1.0, 1.0], dtype=torch.float64)
    scale = torch.tensor([100.0, 0.01], dtype=torch.float64)  # gradients of very different sizes

    def run(cls, **hyper):
        w = w0.clone().requires_grad_()
        opt = cls([w], **hyper)
        for _ in range(50):
            opt.zero_grad()
            (scale * (w - 0.5) ** 2).sum().backward()
            opt.step()
        return w.detach()

    adam_l2, adamw = run(optim.Adam, lr=0.01, weight_decay=1.0), run(optim.AdamW, lr=0.01, weight_decay=1.0)
    assert not torch.allclose(adam_l2, adamw, atol=1e-3)
    # For plain SGD, an L2 penalty lam*||w||^2 and weight decay 2*lam give the same steps.
    sgd_wd = run(optim.SGD, lr=0.001, weight_decay=0.2)
    w = w0.clone().requires_grad_()
    opt = optim.SGD([w], lr=0.001)
    for _ in range(50):
        opt.zero_grad()
        ((scale * (w - 0.5) ** 2).sum() + 0.1 * (w ** 2).sum()).backward()
        opt.step()
    assert torch.allclose(sgd_wd, w.detach())


def test_gradient_descent_on_x_squared_shrinks_geometrically():
    xs = optim.gradient_descent_1d(lambda x: 2 * x, 10.0, 0.2, 10)
    assert len(xs) == 11 and np.allclose(xs, 10 * 0.6 ** np.arange(11))
    diverging = optim.gradient_descent_1d(lambda x: 2 * x, 10.0, 1.1, 10)
    assert abs(diverging[-1]) > 10


@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_trajectories_descend_on_the_surfaces(name):
    lrs = {"SGD": 0.1, "SGD+Momentum": 0.05, "AdaGrad": 1.0, "RMSProp": 0.1, "Adam": 0.2}
    s = optim.SURFACES["valley"]
    path = optim.trajectory(name, s, lr=lrs[name], steps=100)
    start, end = (s(torch.tensor(p)) for p in (path[0], path[-1]))
    assert path.shape == (101, 2) and end < 0.1 * start


def test_bad_arguments_are_named():
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="learning rate"):
        optim.SGD([w], lr=0)
    with pytest.raises(ValueError, match="momentum"):
        optim.SGD([w], lr=0.1, momentum=1.5)
    with pytest.raises(TypeError, match="requires_grad"):
        optim.Adam([torch.zeros(2)], lr=0.1)
    with pytest.raises(RuntimeError, match="backward"):
        optim.Adam([w], lr=0.1).step()
