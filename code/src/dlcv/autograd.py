"""Backpropagation from scratch (Chapter 6): a scalar autograd engine and matrix gradients.

``Value`` wraps one number and remembers how it was computed. ``backward()`` visits the
graph in reverse topological order and applies, at every node, *downstream gradient =
upstream gradient x local gradient*, adding up the contributions of every path. The design
follows Karpathy's micrograd: a whole engine that fits on a screen.

    >>> x, y, z = Value(-2.0, "x"), Value(5.0, "y"), Value(-4.0, "z")
    >>> f = (x + y) * z
    >>> f.backward()
    >>> x.grad, y.grad, z.grad
    (-4.0, -4.0, 3.0)

``linear_backward`` and ``LinearFunction`` do the same for a fully connected layer with
matrices, and ``draw_graph`` draws a ``Value``'s graph with matplotlib. ``torch_graph`` and
``SavedTensors`` look inside PyTorch's own autograd: the nodes it recorded, and the memory it
keeps for the backward pass.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

__all__ = ["Value", "values", "topological_order", "draw_graph", "linear_backward", "LinearFunction",
           "torch_graph", "SavedTensors"]


class Value:
    """A scalar in a computational graph: ``data``, ``grad`` (dOutput/dThis after backward),
    the ``parents`` it was computed from, the ``op`` that computed it, and a ``label``.

    First used in section 6.2, *Computational graphs and the chain rule*.
    """

    def __init__(self, data: float, label: str = "", parents: tuple["Value", ...] = (), op: str = ""):
        if isinstance(data, Value):
            raise TypeError("Value(Value(...)): pass the number, or use the Value itself")
        self.data = float(data)
        self.grad = 0.0
        self.parents, self.op, self.label = parents, op, label
        self._backward = lambda: None  # adds this node's grad into its parents' grads

    def __repr__(self) -> str:
        name = f"{self.label}=" if self.label else ""
        return f"Value({name}{self.data:.4g}, grad={self.grad:.4g})"

    @staticmethod
    def _wrap(other) -> "Value":
        if isinstance(other, Value):
            return other
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            return Value(other)
        raise TypeError(f"cannot combine a Value with {type(other).__name__}")

    # --- operations: forward value, and the local gradient rule for backward -----------------
    def __add__(self, other):
        other = Value._wrap(other)
        out = Value(self.data + other.data, parents=(self, other), op="+")

        def backward():  # an add gate distributes the upstream gradient unchanged
            self.grad += out.grad
            other.grad += out.grad
        out._backward = backward
        return out

    def __mul__(self, other):
        other = Value._wrap(other)
        out = Value(self.data * other.data, parents=(self, other), op="*")

        def backward():  # a multiply gate swaps: each input gets the other input x upstream
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad
        out._backward = backward
        return out

    def __pow__(self, k):
        if not isinstance(k, (int, float)):
            raise TypeError("only constant powers are supported: Value ** number")
        out = Value(self.data ** k, parents=(self,), op=f"^{k:g}")

        def backward():
            self.grad += k * self.data ** (k - 1) * out.grad
        out._backward = backward
        return out

    def exp(self):
        out = Value(math.exp(self.data), parents=(self,), op="exp")

        def backward():
            self.grad += out.data * out.grad
        out._backward = backward
        return out

    def log(self):
        if self.data <= 0:
            raise ValueError(f"log of a non-positive number ({self.data})")
        out = Value(math.log(self.data), parents=(self,), op="log")

        def backward():
            self.grad += out.grad / self.data
        out._backward = backward
        return out

    def tanh(self):
        t = math.tanh(self.data)
        out = Value(t, parents=(self,), op="tanh")

        def backward():
            self.grad += (1 - t * t) * out.grad
        out._backward = backward
        return out

    def sigmoid(self):
        s = 1 / (1 + math.exp(-self.data)) if self.data >= 0 else math.exp(self.data) / (1 + math.exp(self.data))
        out = Value(s, parents=(self,), op="σ")

        def backward():  # the sigmoid gate's local gradient is s (1 - s)
            self.grad += s * (1 - s) * out.grad
        out._backward = backward
        return out

    def relu(self):
        out = Value(max(0.0, self.data), parents=(self,), op="ReLU")

        def backward():  # a max gate routes the gradient to the input that won
            self.grad += (self.data > 0) * out.grad
        out._backward = backward
        return out

    def __neg__(self):
        return self * -1

    def __sub__(self, other):
        return self + (-Value._wrap(other))

    def __truediv__(self, other):
        return self * Value._wrap(other) ** -1

    def __radd__(self, other):
        return self + other

    def __rmul__(self, other):
        return self * other

    def __rsub__(self, other):
        return Value._wrap(other) - self

    def __rtruediv__(self, other):
        if other == 1:  # 1 / v: a reciprocal gate, without a multiplication by the constant 1
            return self ** -1
        return Value._wrap(other) / self

    # --- backpropagation ----------------------------------------------------------------------
    def backward(self) -> None:
        """Set ``grad`` of every node upstream of this one to d(self)/d(node)."""
        order = topological_order(self)
        for node in order:
            node.grad = 0.0
        self.grad = 1.0
        for node in reversed(order):
            node._backward()


def topological_order(root: Value) -> list[Value]:
    """Every node that ``root`` depends on, each after all of its parents (root last).

    First used in section 6.4, *The sigmoid neuron*.
    """
    order, seen = [], set()
    stack = [(root, False)]
    while stack:  # iterative depth-first search: deep graphs do not hit Python's recursion limit
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((p, False) for p in node.parents if id(p) not in seen)
    return order


def draw_graph(root: Value, ax=None, show_grad=True, highlight: Value | None = None):
    """Draw ``root``'s computational graph left to right: a box per value (label, data, grad)
    and a circle per operation. Returns the matplotlib Figure.

    ``show_grad`` is True (every gradient), False (none), or a collection of the values whose
    gradients are shown (to step through a backward pass); ``highlight`` outlines one value.

    First used in section 6.2, *Computational graphs and the chain rule*.
    """
    import matplotlib.pyplot as plt

    order = topological_order(root)
    depth: dict[int, int] = {}
    for node in order:  # a computed value sits one column right of its deepest input
        if node.parents:
            depth[id(node)] = 1 + max(depth[id(p)] for p in node.parents)
        else:
            depth[id(node)] = 0
    # a leaf sits just left of the first operation that uses it, not far away in column 0
    consumers: dict[int, list[Value]] = {}
    for node in order:
        for p in node.parents:
            consumers.setdefault(id(p), []).append(node)
    for node in order:
        if not node.parents and id(node) in consumers:
            depth[id(node)] = min(depth[id(c)] for c in consumers[id(node)]) - 1
    columns: dict[int, list[Value]] = {}
    for node in order:
        columns.setdefault(depth[id(node)], []).append(node)
    pos = {}
    for d, nodes in columns.items():
        for i, node in enumerate(nodes):
            pos[id(node)] = (2.0 * d, (len(nodes) - 1) / 2 - i)
    if ax is None:
        width = 1.6 * (max(columns) - min(columns) + 1) + 1
        height = 1.0 * max(len(v) for v in columns.values()) + 0.8
        fig, ax = plt.subplots(figsize=(width, height))
    else:
        fig = ax.figure
    for node in order:
        x, y = pos[id(node)]
        if node.op:
            ox, oy = x - 0.9, y
            ax.add_patch(plt.Circle((ox, oy), 0.22, facecolor="#f2f2f2", edgecolor="black", lw=0.8))
            ax.text(ox, oy, node.op, ha="center", va="center", fontsize=9)
            ax.annotate("", xy=(x - 0.28, y), xytext=(ox + 0.22, oy),
                        arrowprops=dict(arrowstyle="->", lw=0.8, shrinkA=0, shrinkB=0))
            for p in node.parents:
                px, py = pos[id(p)]
                ax.annotate("", xy=(ox - 0.22, oy), xytext=(px + 0.28, py),
                            arrowprops=dict(arrowstyle="->", lw=0.8, color="grey", shrinkA=0, shrinkB=0))
        text = (f"{node.label}\n" if node.label else "") + f"{node.data:.3g}"
        lit = highlight is not None and node is highlight
        ax.text(x, y, text, ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round,pad=0.3", facecolor="#fde9d9" if lit else "#e8f0fa",
                          edgecolor="#D55E00" if lit else "#0072B2", lw=2 if lit else 1))
        shown = show_grad if isinstance(show_grad, bool) else any(node is v for v in show_grad)
        if shown:
            ax.text(x, y - 0.36, f"grad {node.grad:.3g}", ha="center", va="top", fontsize=8, color="#D55E00")
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 1.5, max(xs) + 0.8)
    ax.set_ylim(min(ys) - 0.8, max(ys) + 0.6)
    ax.axis("off")
    return fig


def linear_backward(x: torch.Tensor, W: torch.Tensor, dy: torch.Tensor):
    """Gradients of a fully connected layer ``y = x @ W.T + b`` (``x [N, D]``, ``W [M, D]``,
    ``y [N, M]``) given the upstream gradient ``dy = dL/dy [N, M]``:
    ``dx = dy @ W [N, D]``, ``dW = dy.T @ x [M, D]``, ``db = dy.sum(0) [M]``.
    Every gradient has the shape of the thing it is the gradient of.

    First used in section 6.5, *Backpropagation with vectors and matrices*.
    """
    if dy.shape != (x.shape[0], W.shape[0]):
        raise ValueError(f"dy must be [N, M] = [{x.shape[0]}, {W.shape[0]}], got {tuple(dy.shape)}")
    return dy @ W, dy.T @ x, dy.sum(dim=0)


class LinearFunction(torch.autograd.Function):
    """``y = x @ W.T + b`` as a ``torch.autograd.Function`` whose backward is
    ``linear_backward``: ``torch.autograd.gradcheck`` then tests the hand-derived gradients.

    First used in section 6.5, *Backpropagation with vectors and matrices*.
    """

    @staticmethod
    def forward(ctx, x, W, b):
        ctx.save_for_backward(x, W)
        return x @ W.T + b

    @staticmethod
    def backward(ctx, dy):
        x, W = ctx.saved_tensors
        return linear_backward(x, W, dy)


def values(numbers: Iterable[float], prefix: str = "x") -> list[Value]:
    """``[Value(n, f"{prefix}0"), ...]``: labelled leaves for small examples."""
    return [Value(n, f"{prefix}{i}") for i, n in enumerate(numbers)]


def torch_graph(output: torch.Tensor) -> list[str]:
    """The backward nodes PyTorch recorded for ``output`` (the class names of its ``grad_fn``
    graph, such as ``AddmmBackward0``), each once, output first, breadth-first along
    ``next_functions``. ``AccumulateGrad`` nodes are the leaves: where a parameter's ``.grad``
    is written.

    First used in section 6.6, *What an autograd library adds*.
    """
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"output must be a tensor, got {type(output).__name__}")
    if output.grad_fn is None:
        raise ValueError("output has no graph: it does not require grad, or it was computed "
                         "under torch.no_grad() or from .detach()ed tensors")
    names, seen, queue = [], set(), [output.grad_fn]
    while queue:
        fn = queue.pop(0)
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.append(type(fn).__name__)
        queue.extend(next_fn for next_fn, _ in fn.next_functions)
    return names


class SavedTensors:
    """Counts what autograd keeps for the backward pass while the ``with`` block runs:
    ``count`` tensors and ``bytes`` of their data (each storage counted once, so a weight that
    two operations save is counted once), through ``torch.autograd.graph.saved_tensors_hooks``.

        >>> with SavedTensors() as saved:
        ...     loss = model(x).sum()
        >>> saved.bytes

    First used in section 6.6, *What an autograd library adds*.
    """

    def __init__(self):
        self.count, self.bytes, self._seen = 0, 0, set()
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        key = (t.untyped_storage().data_ptr(), t.device)
        if key not in self._seen:
            self._seen.add(key)
            self.count += 1
            self.bytes += t.untyped_storage().nbytes()
        return t

    def __enter__(self) -> "SavedTensors":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
