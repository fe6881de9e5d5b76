"""What a network costs, layer by layer (Chapters 7 and 8): output sizes, memory, parameters
and multiply-adds, computed from the model itself.

``layer_table(model, (C, H, W))`` runs one forward pass with hooks on the layers that matter
(convolutions, linear layers, pooling, flatten) and returns a row per layer. Counts follow the
lecture's tables: *memory* is the layer's output for one image in float32 (KB = 1024 bytes);
*params* include biases; *MACs* (multiply-adds) are ``out_elements * C_in/G * K^2`` for a
convolution and ``in * out`` for a linear layer. Pooling multiplies nothing: its cost,
``out_elements * K^2`` comparisons (max) or additions (average), is kept apart in ``other_ops``,
where the lecture's tables count it among the "flops". ``count_flops`` asks PyTorch's own counter (``torch.utils.flop_counter``), which
counts a multiply-add as two floating-point operations; the tests check that the two agree.
Pass a model built on the ``meta`` device to count a large network without computing anything.
"""
from __future__ import annotations

import contextlib
import html
from dataclasses import dataclass

import torch
from torch import nn

from . import runtime

__all__ = ["Layer", "layer_table", "count_flops", "count_params", "table_html", "totals", "meta_model",
           "torchvision_complexity"]

COUNTED = (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten)


@dataclass
class Layer:
    """One row of a cost table."""
    name: str
    kind: str
    out_shape: tuple[int, ...]
    weight_shape: tuple[int, ...] | None
    memory_kb: float
    params: int
    macs: int
    other_ops: int = 0      # comparisons (max pooling) or additions (average pooling); no multiplies


def _kernel_elems(k) -> int:
    k = (k, k) if isinstance(k, int) else tuple(k)
    return int(k[0]) * int(k[1])


def _forward_once(model: nn.Module, input_shape: tuple[int, ...], context=None) -> None:
    """One forward pass on a zero input of ``input_shape`` (plus the batch axis) on the model's
    device, in evaluation mode and without gradients, inside ``context`` if given; the model's
    training mode is restored afterwards."""

    was_training = model.training
    model.eval()
    try:
        with context or contextlib.nullcontext(), torch.no_grad():
            model(torch.zeros(1, *input_shape, device=runtime.device_of(model)))
    finally:
        model.train(was_training)


def layer_table(model: nn.Module, input_shape: tuple[int, ...], kinds=COUNTED) -> list[Layer]:
    """Run ``model`` on one input of ``input_shape`` (without the batch axis) and return a
    ``Layer`` for every module of the given ``kinds``, in the order they ran.

    First used in section 7.5, *Pooling*.
    """
    if len(input_shape) < 1:
        raise ValueError(f"input_shape is the shape of one input without the batch axis, got {input_shape}")
    rows: list[Layer] = []
    names = {m: n for n, m in model.named_modules()}

    def hook(module, inputs, output):
        out = output[0] if isinstance(output, tuple) else output
        out_shape = tuple(out.shape[1:])
        n_out = out[0].numel()
        x = inputs[0]
        other = 0
        if isinstance(module, nn.Conv2d):
            macs = n_out * (module.in_channels // module.groups) * _kernel_elems(module.kernel_size)
            kind = "conv"
        elif isinstance(module, nn.Linear):
            macs, kind = module.in_features * module.out_features, "linear"
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            macs, other = 0, n_out * _kernel_elems(module.kernel_size)
            kind = "maxpool" if isinstance(module, nn.MaxPool2d) else "avgpool"
        elif isinstance(module, nn.AdaptiveAvgPool2d):
            macs, other, kind = 0, x[0].numel(), "avgpool"
        else:
            macs, kind = 0, type(module).__name__.lower()
        weight = getattr(module, "weight", None)
        rows.append(Layer(names.get(module, type(module).__name__), kind, out_shape,
                          tuple(weight.shape) if isinstance(weight, torch.Tensor) else None,
                          n_out * 4 / 1024, sum(p.numel() for p in module.parameters(recurse=False)), int(macs),
                          int(other)))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    try:
        _forward_once(model, input_shape)
    finally:
        for h in handles:
            h.remove()
    return rows


def totals(rows: list[Layer]) -> dict[str, float]:
    """Sums over a table: ``memory_kb``, ``params``, ``macs`` and ``other_ops``.

    First used in section 7.5, *Pooling*.
    """
    return {"memory_kb": sum(r.memory_kb for r in rows), "params": sum(r.params for r in rows),
            "macs": sum(r.macs for r in rows), "other_ops": sum(r.other_ops for r in rows)}


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Floating-point operations of one forward pass on one input, by PyTorch's
    ``FlopCounterMode`` (a multiply-add counts 2). Works for models on the ``meta`` device.

    First used in section 7.3, *Spatial dimensions*.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    _forward_once(model, input_shape, counter)
    return int(counter.get_total_flops())


def count_params(model: nn.Module) -> int:
    """Number of learnable parameters.

    First used in section 8.4, *GoogLeNet: an aggressive stem and no big FC layers*.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def table_html(header: list[str], rows: list[list], align: str | None = None) -> str:
    """A small HTML table (for ``IPython.display.HTML``): ``align`` is one letter per column,
    ``l`` or ``r`` (default: numbers right, text left). Every column needs a header: an empty
    one fails WCAG (a screen reader announces nothing for the column).

    First used in section 7.3, *Spatial dimensions*.
    """
    if any(not str(h).strip() for h in header):
        raise ValueError(f"every column needs a header (screen readers announce it), got {header}")

    def cell(v, a):
        return f'<td style="text-align:{"right" if a == "r" else "left"}">{html.escape(str(v))}</td>'
    if align is None:
        align = "".join("r" if isinstance(v, (int, float)) else "l" for v in rows[0]) if rows else ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v, a) for v, a in zip(r, align)) + "</tr>" for r in rows)
    return f'<table class="table dlcv-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def meta_model(name: str, **kwargs) -> nn.Module:
    """A torchvision architecture built on the ``meta`` device: shapes only, no weights, no
    arithmetic, so even VGG-16 costs nothing to measure.

    First used in section 8.2, *AlexNet, layer by layer*.
    """
    import torchvision

    with torch.device("meta"):
        return torchvision.models.get_model(name, weights=None, **kwargs)


def torchvision_complexity(name: str, input_shape=(3, 224, 224), weights: str = "IMAGENET1K_V1", **kwargs) -> dict:
    """Measure a torchvision architecture (built on the ``meta`` device: no weights, no
    download, no arithmetic) and put it beside torchvision's published figures for
    ``weights``: returns ``params``, ``gmacs`` (our count, multiply-adds / 1e9), and
    ``published_params``, ``published_gmacs`` (torchvision's ``_ops``, which counts
    multiply-adds), ``acc1``, ``acc5`` (ImageNet-1k validation, from the weights' metadata).

    First used in section 8.6, *Comparing complexity*.
    """
    import torchvision

    try:
        meta = getattr(torchvision.models.get_model_weights(name), weights).meta
    except (ValueError, AttributeError) as e:
        raise ValueError(f"torchvision has no weights {weights!r} for a model named {name!r}") from e
    model = meta_model(name, **kwargs)
    return {"name": name, "params": count_params(model), "gmacs": count_flops(model, input_shape) / 2e9,
            "published_params": meta["num_params"], "published_gmacs": meta["_ops"],
            "acc1": meta["_metrics"]["ImageNet-1K"]["acc@1"], "acc5": meta["_metrics"]["ImageNet-1K"]["acc@5"]}
