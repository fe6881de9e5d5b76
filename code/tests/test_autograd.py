"""dlcv.autograd: the scalar engine against torch.autograd on random expressions, and the
matrix gradients of a linear layer against torch.autograd.gradcheck."""
import math
import random

import pytest
import torch

from dlcv.autograd import (LinearFunction, SavedTensors, Value, draw_graph, linear_backward,
                           topological_order, torch_graph)

UNARY = ["tanh", "sigmoid", "relu", "exp", "square"]
BINARY = ["+", "-", "*", "/"]


def random_expression(rng: random.Random, leaves_ours, leaves_torch, depth: int):
    """Build the same random expression twice, with Values and with torch scalars."""
    if depth == 0 or rng.random() < 0.2:
        i = rng.randrange(len(leaves_ours))
        return leaves_ours[i], leaves_torch[i]
    if rng.random() < 0.4:
        a, ta = random_expression(rng, leaves_ours, leaves_torch, depth - 1)
        op = rng.choice(UNARY)
        if op == "square":
            return a ** 2, ta ** 2
        if op == "exp":  # keep exponentials tame
            return (a * 0.3).exp(), torch.exp(ta * 0.3)
        return getattr(a, op)(), getattr(torch, op)(ta)
    (a, ta), (b, tb) = (random_expression(rng, leaves_ours, leaves_torch, depth - 1) for _ in range(2))
    op = rng.choice(BINARY)
    if op == "/":  # divide by something safely away from 0
        return a / (b * b + 1.0), ta / (tb * tb + 1.0)
    return {"+": (a + b, ta + tb), "-": (a - b, ta - tb), "*": (a * b, ta * tb)}[op]


@pytest.mark.parametrize("seed", range(40))
def test_random_expressions_match_torch_autograd(seed):
    rng = random.Random(seed)
    nums = [rng.uniform(-2, 2) for _ in range(4)]
    ours = [Value(v, f"x{i}") for i, v in enumerate(nums)]
    theirs = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in nums]
    f, tf = random_expression(rng, ours, theirs, depth=5)
    f = f + 0.0 * sum(ours, Value(0.0))  # every leaf in the graph, so every grad is defined
    tf = tf + 0.0 * sum(theirs)
    f.backward()
    tf.backward()
    assert math.isclose(f.data, tf.item(), rel_tol=1e-12, abs_tol=1e-12)
    for a, b in zip(ours, theirs):
        assert math.isclose(a.grad, b.grad.item(), rel_tol=1e-9, abs_tol=1e-12)


def test_slide_example_and_reused_nodes():
    x, y, z = Value(-2.0), Value(5.0), Value(-4.0)
    f = (x + y) * z
    f.backward()
    assert (f.data, x.grad, y.grad, z.grad) == (-12.0, -4.0, -4.0, 3.0)
    a = Value(3.0)
    g = a * a + a  # a is used three times: gradients add up
    g.backward()
    assert g.data == 12.0 and a.grad == 7.0
    g.backward()  # a second backward starts afresh
    assert a.grad == 7.0


def test_topological_order_puts_parents_first_and_handles_deep_graphs():
    v = Value(1.0)
    for _ in range(5000):  # deeper than Python's recursion limit
        v = v * 1.0
    order = topological_order(v)
    assert order[-1] is v and len(order) == 10001
    v.backward()


def test_bad_input_is_named():
    with pytest.raises(TypeError, match="combine"):
        Value(1.0) + "2"
    with pytest.raises(ValueError, match="non-positive"):
        Value(-1.0).log()


def test_draw_graph_returns_a_figure():
    x, y = Value(1.0, "x"), Value(2.0, "y")
    f = (x * y).sigmoid()
    f.backward()
    fig = draw_graph(f)
    assert len(fig.axes) == 1 and len(fig.axes[0].texts) >= 3
    grads = lambda fig: [t.get_text() for t in fig.axes[0].texts if t.get_text().startswith("grad")]
    assert len(grads(fig)) == 4                                      # x, y, x*y and f
    assert len(grads(draw_graph(f, show_grad=[f]))) == 1             # a backward pass one node in
    assert grads(draw_graph(f, show_grad=False)) == []


def test_linear_backward_passes_gradcheck_and_matches_autograd():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    W = torch.randn(3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(LinearFunction.apply, (x, W, b))
    dy = torch.randn(5, 3, dtype=torch.float64, generator=g)
    (torch.nn.functional.linear(x, W, b) * dy).sum().backward()
    dx, dW, db = linear_backward(x.detach(), W.detach(), dy)
    assert torch.allclose(dx, x.grad) and torch.allclose(dW, W.grad) and torch.allclose(db, b.grad)
    with pytest.raises(ValueError, match="dy must be"):
        linear_backward(x.detach(), W.detach(), dy.T)


def test_torch_graph_lists_the_recorded_nodes():
    lin1, lin2 = torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)
    out = lin2(torch.relu(lin1(torch.randn(5, 4)))).sum()
    names = torch_graph(out)
    assert names[0] == "SumBackward0"
    assert names.count("AddmmBackward0") == 2 and names.count("ReluBackward0") == 1
    assert names.count("AccumulateGrad") == 4  # two weights and two biases
    with pytest.raises(ValueError, match="no graph"):
        torch_graph(out.detach())
    with torch.no_grad():
        with pytest.raises(ValueError, match="no_grad"):
            torch_graph(lin1(torch.randn(1, 4)))
    with pytest.raises(TypeError):
        torch_graph(3.0)


def test_saved_tensors_counts_what_backward_needs():
    x = torch.randn(64, 100)
    w = torch.randn(100, 50, requires_grad=True)
    with SavedTensors() as saved:
        y = torch.relu(x @ w)  # mm saves x (for dL/dw; no dL/dx is needed); relu its output
    assert saved.count == 2
    assert saved.bytes == 4 * (64 * 100 + 64 * 50)
    with SavedTensors() as both:
        torch.relu(x.requires_grad_() @ w)  # now dL/dx is needed too, so w is saved as well
    assert both.count == 3 and both.bytes == 4 * (64 * 100 + 100 * 50 + 64 * 50)
    x.requires_grad_(False)
    with SavedTensors() as nothing, torch.no_grad():
        torch.relu(x @ w)
    assert nothing.count == 0 and nothing.bytes == 0
    y.sum().backward()  # the hooks left the graph usable
    assert torch.allclose(w.grad, x.T @ (y > 0).float())
