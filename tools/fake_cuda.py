"""Run the chapters' GPU code paths on a machine without a GPU: a fake CUDA device.

The published book is built on a GPU, but most machines that build and test it have none, so a
chapter could pass every CPU check and still fail on the GPU: a CPU tensor meeting a CUDA one in
one operation, ``.numpy()`` of a CUDA tensor, a CPU random generator asked for CUDA numbers.
This module makes ``torch.cuda.is_available()`` true and keeps every tensor "on cuda" on the CPU
with a tag; a ``TorchFunctionMode`` sees every torch call and enforces the rules a real GPU does:

* an operation may not mix CUDA tensors with CPU tensors, except 0-dim CPU tensors (as PyTorch
  allows), CPU index tensors for a CUDA tensor, and ``copy_``;
* ``.numpy()`` and ``np.asarray`` of a CUDA tensor fail, ``.cpu()`` gives an untagged tensor;
* a factory call with ``device="cuda"`` may not take a CPU ``torch.Generator``.

``.device`` and ``.is_cuda`` report ``cuda:0`` for tagged tensors, ``nn.Module.to`` tags parameters
and buffers, and results of operations on CUDA tensors are CUDA tensors. It does not model CUDA's
kernels (speed, memory, which operations have a deterministic version): that needs a real GPU
(``tools/gpu_build.sh``).

``python tools/fake_cuda.py [PAGE ...]`` executes chapters (default: all in ``_toc.yml``) under the
fake device at the smoke scale (``dlcv.runtime``: training cut to a few batches; the check is
about devices, not results). ``make test`` does the same with the generated notebooks, in a fresh
environment (``tests/test_notebooks.py``), and ``tests/test_gpu_paths.py`` checks that the fake
device catches each kind of mistake. ``DLCV_SCALE=large python tools/fake_cuda.py`` runs what a GPU
would run, the large scale, with ``fit`` and the package's own loops cut to two batches (about a quarter of an hour on two
cores, most of it chapter 2's k-NN on 60,000 images).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

CUDA = torch.device("cuda", 0)
CPU = torch.device("cpu")
MARK = "(fake-CUDA check)"


def is_cuda(t) -> bool:
    return isinstance(t, torch.Tensor) and getattr(t, "_fake_cuda", False)


def _tag(t, on: bool = True):
    if isinstance(t, torch.Tensor):
        try:
            t._fake_cuda = on
        except (AttributeError, RuntimeError):
            pass
    return t


def _wants_cuda(device) -> bool:
    if isinstance(device, str):
        return device.startswith("cuda")
    return isinstance(device, torch.device) and device.type == "cuda"


def _tensors(obj, depth: int = 0):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)) and depth < 3:
        for o in obj:
            yield from _tensors(o, depth + 1)
    elif isinstance(obj, dict) and depth < 3:
        for o in obj.values():
            yield from _tensors(o, depth + 1)


def _alias(t):
    """A new tensor object sharing ``t``'s storage (so that tagging it leaves ``t`` alone)."""
    return t.view_as(t) if isinstance(t, torch.Tensor) else t


T = torch.Tensor
_DEVICE, _IS_CUDA, _GRAD, _DATA = T.device, T.is_cuda, T.grad, T.data   # property descriptors
_INDEXING = {T.__getitem__, T.__setitem__, T.copy_, T.index_put_, T.index_put}
_UNCHECKED = {"_has_compatible_shallow_copy_type", "is_same_size", "_is_view", "set_"}


class FakeCudaMode(TorchFunctionMode):
    """Checks every torch call against the device rules of a real GPU (module docstring)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        owner = getattr(func, "__self__", None)        # a property getter's descriptor
        if owner is _DEVICE:
            return CUDA if is_cuda(args[0]) else func(*args, **kwargs)
        if owner is _IS_CUDA:
            return is_cuda(args[0])
        if owner is _GRAD or owner is _DATA:
            out = func(*args, **kwargs)
            return _tag(out) if out is not None and is_cuda(args[0]) else out
        if getattr(func, "__name__", "") in _UNCHECKED:
            return func(*args, **kwargs)
        if func in (T.numpy, T.__array__) and is_cuda(args[0]):
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy "
                            f"the tensor to host memory first. {MARK}")
        if func is T.cpu:
            return _tag(_alias(func(*args, **kwargs)), False)
        if func is T.cuda:
            return _tag(_alias(func(*args, **kwargs)))
        if func is T.to:
            return self._to(func, args, kwargs)
        if _wants_cuda(kwargs.get("device")):           # a factory: torch.zeros(..., device="cuda")
            generator = kwargs.get("generator")
            if generator is not None and generator.device.type == "cpu":
                raise RuntimeError(f"Expected a 'cuda' device type for generator but found 'cpu' {MARK}")
            out = func(*args, **dict(kwargs, device=CPU))
            for t in _tensors(out):
                _tag(t)
            return out
        inputs = list(_tensors(args)) + list(_tensors(kwargs))
        on_cuda = any(is_cuda(t) for t in inputs)
        if on_cuda and func in _INDEXING:
            if not is_cuda(args[0]) and func in (T.__getitem__, T.__setitem__) \
                    and any(is_cuda(t) for t in _tensors(args[1])):
                raise RuntimeError("indices should be either on cpu or on the same device as the indexed "
                                   f"tensor (cpu) {MARK}")
        elif on_cuda:
            on_cpu = [tuple(t.shape) for t in inputs if not is_cuda(t) and t.dim() > 0]
            if on_cpu:
                raise RuntimeError("Expected all tensors to be on the same device, but found at least two "
                                   f"devices, cuda:0 and cpu! {MARK} in {getattr(func, '__qualname__', func)}, "
                                   f"CPU tensors of shapes {on_cpu}")
        out = func(*args, **kwargs)
        if on_cuda and func is not T.__setitem__ and (func not in _INDEXING or is_cuda(args[0])):
            for t in _tensors(out):
                _tag(t)
        return out

    @staticmethod
    def _to(func, args, kwargs):
        others = [a for a in list(args[1:]) + list(kwargs.values()) if isinstance(a, torch.Tensor)]
        if others:                                      # x.to(other): other's device
            return _tag(_alias(func(*args, **kwargs)), is_cuda(others[0]))
        device = torch._C._nn._parse_to(*args[1:], **kwargs)[0]
        if device is None:                              # a dtype only: the device stays
            out = func(*args, **kwargs)
            return out if out is args[0] else _tag(out, is_cuda(args[0]))
        real_args = [CPU if _wants_cuda(a) else a for a in args]
        real_kwargs = {k: (CPU if k == "device" else v) for k, v in kwargs.items()}
        return _tag(_alias(func(*real_args, **real_kwargs)), device.type == "cuda")


def install() -> FakeCudaMode:
    """Pretend a GPU is there, for the rest of this process; returns the active mode."""
    torch.cuda.is_available = lambda: True
    torch.cuda.get_device_name = lambda *a: "Fake CUDA device (CPU)"
    torch.cuda.synchronize = lambda *a: None                     # nothing runs asynchronously here
    torch.cuda.manual_seed_all = torch.cuda.manual_seed = lambda *a: None
    # the optimisers ask the CUDA runtime whether a graph is being captured
    for name in ("_accelerator_graph_capture_health_check", "_cuda_graph_capture_health_check"):
        if hasattr(torch.optim.Optimizer, name):
            setattr(torch.optim.Optimizer, name, lambda self: None)

    module_to = nn.Module.to

    def to(self, *args, **kwargs):
        out = module_to(self, *args, **kwargs)
        device = torch._C._nn._parse_to(*args, **kwargs)[0]
        if device is not None:
            for t in [*self.parameters(), *self.buffers()]:
                _tag(t, device.type == "cuda")
        return out

    nn.Module.to = to
    nn.Module.cuda = lambda self, device=None: to(self, CUDA)
    param_deepcopy, param_new = nn.Parameter.__deepcopy__, nn.Parameter.__new__
    nn.Parameter.__deepcopy__ = lambda self, memo: _tag(param_deepcopy(self, memo), is_cuda(self))
    nn.Parameter.__new__ = lambda cls, data=None, requires_grad=True: \
        _tag(param_new(cls, data, requires_grad), is_cuda(data))
    mode = FakeCudaMode()
    mode.__enter__()
    return mode


def setup_cell(folder: str | Path) -> str:
    """The first cell of a notebook run under the fake device, with this file in ``folder``.

    At the smoke scale (the default here, and what ``tests/test_notebooks.py`` runs) the package
    cuts training short itself; at the small or large scale ``DLCV_MAX_BATCHES=2`` makes every
    loop of the package cut the same way (``dlcv.runtime.max_batches``): the check is about
    devices, not results. Nothing of the package is replaced.
    """
    return f'''
import os, sys
os.environ.setdefault("DLCV_SCALE", "smoke")
os.environ.setdefault("DLCV_MAX_BATCHES", "2")
sys.path.insert(0, {str(folder)!r})
import fake_cuda
fake_cuda.install()
'''


def run_chapter(page: str, root: Path, timeout: int = 600) -> None:
    """Execute ``root/page.md`` (a MyST notebook) under the fake device; raises on a cell error."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    path = root / f"{page}.md"
    nb = jupytext.read(path)
    nb.cells.insert(0, nbformat.v4.new_code_cell(setup_cell(Path(__file__).resolve().parent)))
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from book_toc import ROOT, toc_pages

    failed = 0
    for page in argv or toc_pages():
        start = time.time()
        try:
            run_chapter(page, ROOT)
            print(f"{page}: runs on the fake GPU ({time.time() - start:.0f} s)", flush=True)
        except Exception as e:  # noqa: BLE001  (report every chapter, then fail)
            failed += 1
            print(f"{page}: FAILED\n{str(e)[-3000:]}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
