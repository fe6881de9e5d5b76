"""dlcv.mlp against torch.nn and torch.autograd."""
import numpy as np
import pytest
import torch

from dlcv import mlp

X = torch.linspace(-6, 6, 241, dtype=torch.float64)


@pytest.mark.parametrize("name", list(mlp.ACTIVATIONS))
def test_activation_matches_torch_module_and_autograd(name):
    act = mlp.ACTIVATIONS[name]
    x = X.clone().requires_grad_()
    y = act(x)
    assert torch.allclose(y, act.torch_module()(X), atol=1e-12)
    y.sum().backward()
    mask = X != 0  # ReLU-like kinks: autograd picks one side at exactly 0
    assert torch.allclose(act.df(X)[mask], x.grad[mask], atol=1e-10)


def test_sigmoid_and_tanh_gradients_vanish_for_large_inputs():
    for name in ("sigmoid", "tanh"):
        d = mlp.ACTIVATIONS[name].df(torch.tensor([0.0, 10.0], dtype=torch.float64))
        assert d[1] < 1e-3 * d[0]
    assert mlp.ACTIVATIONS["sigmoid"].df(torch.tensor(0.0)) == 0.25


def test_mlp_forward_equals_torch_sequential_and_trains_the_same():
    g = torch.Generator().manual_seed(0)
    params = mlp.init_mlp([12, 8, 3], scale=0.5, generator=g)
    net = mlp.mlp_to_torch(params)
    x, y = torch.randn(20, 3, 4, generator=g), torch.randint(0, 3, (20,), generator=g)
    assert torch.allclose(mlp.mlp_forward(params, x), net(x), atol=1e-6)
    opt_a, opt_b = torch.optim.SGD(params, lr=0.1), torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(10):
        for opt, f in ((opt_a, lambda: mlp.mlp_forward(params, x)), (opt_b, lambda: net(x))):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(f(), y).backward()
            opt.step()
    assert torch.allclose(params[0].detach().T, net[1].weight.detach(), atol=1e-6)


def test_bad_mlp_arguments_are_named():
    with pytest.raises(ValueError, match="sizes"):
        mlp.init_mlp([5])
    params = mlp.init_mlp([4, 2])
    with pytest.raises(ValueError, match="features"):
        mlp.mlp_forward(params, torch.zeros(3, 5))


def test_relu_units_fit_matches_numpy_lstsq_and_improves_with_n():
    x = torch.linspace(-2, 2, 400, dtype=torch.float64)
    y = torch.sin(3 * x)
    errors = []
    for n in (2, 8, 32):
        predict, coef = mlp.fit_relu_units(x, y, n)
        ref = np.linalg.lstsq(mlp.relu_features(x, predict.knots).numpy(), y.numpy(), rcond=None)[0]
        assert np.allclose(coef.numpy(), ref, atol=1e-8)
        errors.append(float((predict(x) - y).abs().max()))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.02


def test_relu_bump_is_a_trapezoid():
    x = torch.tensor([-1.0, 0.0, 0.05, 0.5, 0.95, 1.0, 2.0])
    b = mlp.relu_bump(x, 0.0, 1.0, height=2.0, ramp=0.1)
    assert torch.allclose(b, torch.tensor([0.0, 0.0, 1.0, 2.0, 1.0, 0.0, 0.0]), atol=1e-6)
    with pytest.raises(ValueError):
        mlp.relu_bump(x, 0.0, 0.1, ramp=0.1)
