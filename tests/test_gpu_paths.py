"""The fake CUDA device (tools/fake_cuda.py) catches what a real GPU would reject.

The published book executes on a GPU; the machines that test it mostly have none. Every chapter
runs under a fake CUDA device that enforces a real GPU's device rules, as the fresh reader's
notebooks do in tests/test_notebooks.py. This test shows that the fake device catches each kind
of mistake, and lets correct code through, so that a chapter passing under it means something.
It runs in its own process (the fake changes torch for the rest of the process).
"""
from __future__ import annotations

import subprocess
import sys

from test_site import ROOT

TOOLS = ROOT / "tools"

CATCHES = r'''
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np, torch
import fake_cuda
fake_cuda.install()
import dlcv.runtime as rt
from dlcv.models import SmallConvNet
from dlcv.training import TensorData, fit

device = rt.get_device(verbose=False)
assert device.type == "cuda", device
x = torch.randn(64, 1, 28, 28, device=device)
y = torch.randint(0, 10, (64,)).to(device)
assert x.device.type == "cuda" and y.is_cuda and not x.cpu().is_cuda

def fails(what, expected, f):
    try:
        f()
    except (RuntimeError, TypeError) as e:
        assert expected in str(e) and fake_cuda.MARK in str(e), (what, str(e))
    else:
        raise AssertionError(f"the fake GPU did not catch: {what}")

net = SmallConvNet().to(device)
fails("a CPU batch into a CUDA model", "same device", lambda: net(torch.randn(2, 1, 28, 28)))
fails("a CUDA batch into a CPU model", "same device", lambda: SmallConvNet()(x[:2]))
fails(".numpy() of a CUDA tensor", "numpy", lambda: x.numpy())
fails("np.asarray of a CUDA tensor", "numpy", lambda: np.asarray(y))
fails("a CPU generator for CUDA numbers", "generator",
      lambda: torch.randn(3, generator=torch.Generator(), device=device))
fails("CPU tensor indexed by CUDA indices", "indices", lambda: torch.arange(64)[y])
fails("adding CPU labels to CUDA ones", "same device", lambda: y + torch.arange(64))

# what a real GPU allows passes: training, CPU indices, 0-dim CPU tensors, .cpu().numpy(), deepcopy
history = fit(net, TensorData(x, y), TensorData(x, y), epochs=2, batch_size=32, restore_best=True)
assert all(p.is_cuda for p in net.parameters()) and next(net.parameters()).grad.is_cuda
assert x[torch.tensor([0, 1])].is_cuda and (x * torch.tensor(2.0)).is_cuda
assert net(x).argmax(1).cpu().numpy().shape == (64,)
import copy
assert next(copy.deepcopy(net).parameters()).is_cuda
print("ok")
'''


def test_the_fake_gpu_catches_device_mistakes():
    proc = subprocess.run([sys.executable, "-c", CATCHES, str(TOOLS)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
