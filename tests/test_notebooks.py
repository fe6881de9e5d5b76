"""The generated notebooks (tools/notebooks.py), as Colab, Binder and download readers get them.

* Each reads as plain Jupyter Markdown: no MyST syntax left, figures embedded as attachments,
  and a first cell that installs the package, pinned to the build's commit, only in Colab.
* A fresh reader on a GPU runtime, as in Colab: the package is built as a wheel and installed
  (not editable) into a new virtual environment outside the repository (tools/reader_env.py;
  make test makes it in the background), and every notebook, copied out of the repository,
  executes there with nbclient under the fake CUDA device of tools/fake_cuda.py, at the smoke
  scale (dlcv.runtime: training cut to a few batches). So each chapter's code runs for a reader
  with only the wheel, and its GPU code path runs, without repeating the book's training; the
  numbers themselves come from the build. Run after `make book`, as `make test` does.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from test_site import PAGES, ROOT

sys.path.insert(0, str(ROOT / "tools"))
import execute  # noqa: E402  (how many notebooks at a time, on how many threads, in which order)
import fake_cuda  # noqa: E402  (its setup cell; the module itself is not installed here)

NOTEBOOKS = [ROOT / f"{p}.ipynb" for p in PAGES]
MYST_LEFTOVERS = re.compile(r"\{(glue|glue:text|glue:figure|numref|eq|ref|doc|footcite|footbibliography)\}"
                            r"|^:::|^```\{|^\([\w-]+\)=\s*$", re.M)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_reads_as_plain_jupyter(path):
    assert path.is_file(), f"{path.name} was not generated (make book runs tools/notebooks.py)"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "code" and '"google.colab" in sys.modules' in first.source
    assert re.search(r"@[0-9a-f]{40}#subdirectory=code", first.source), "install is not pinned to a commit"
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = MYST_LEFTOVERS.search(cell.source)
            assert m is None, f"{path.name}: MyST syntax {m.group(0)!r} left in: {cell.source[:120]!r}"
            for ref in re.findall(r"\(attachment:([^)]+)\)", cell.source):
                assert ref in cell.get("attachments", {}), f"{path.name}: attachment {ref} missing"
        else:
            assert not cell.get("outputs"), f"{path.name}: code cells should carry no outputs"
    source = (ROOT / f"{path.with_suffix('.md').relative_to(ROOT)}").read_text()
    n_figures = source.count("```{glue:figure}")
    n_attached = sum(len(c.get("attachments", {})) for c in nb.cells if c.cell_type == "markdown")
    assert n_attached == n_figures, f"{path.name}: {n_figures} glued figures, {n_attached} attached"


EXECUTE = """
import sys, tempfile, nbformat
from nbclient import NotebookClient
from traitlets.config import Config
nb = nbformat.read(sys.argv[1], as_version=4)
nb.cells.insert(0, nbformat.v4.new_code_cell(sys.argv[2]))  # the fake GPU, at the smoke scale
# Unix sockets, not TCP ports, which kernels started side by side can both be given (tools/execute.py)
with tempfile.TemporaryDirectory(prefix="dlcv-kernel-") as folder:
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": "."}},
                   config=Config({"KernelManager": {"transport": "ipc", "ip": folder + "/kernel"}})).execute()
nbformat.write(nb, sys.argv[1])
"""


@pytest.fixture(scope="module")
def reader_runs(fresh_reader):
    """Every generated notebook, copied out of the repository, executed in the fresh reader's
    environment under the fake CUDA device (tools/fake_cuda.py) at the smoke scale, as many at a
    time and on as many threads as the build runs chapters (tools/execute.py: by default one per
    core, one thread each). Returns ``{name: (returncode, stderr, error outputs, seconds)}``."""
    readers = fresh_reader.tmp / "readers"
    readers.mkdir(exist_ok=True)
    shutil.copy(ROOT / "tools" / "fake_cuda.py", readers)  # nothing else of the repository comes along
    setup = fake_cuda.setup_cell(readers)
    notebooks = [p for p in NOTEBOOKS if p.is_file()]
    jobs, threads = execute.workers_and_threads(len(notebooks))
    env = dict(fresh_reader.env, DLCV_SCALE="smoke", **{v: str(threads) for v in execute.THREAD_VARIABLES})

    def run(path: Path):
        copy = readers / path.name
        shutil.copy(path, copy)
        start = time.time()
        proc = subprocess.run([fresh_reader.python, "-c", EXECUTE, copy.name, setup], cwd=readers, env=env,
                              capture_output=True, text=True)
        errors = []
        if proc.returncode == 0:
            nb = json.loads(copy.read_text())
            errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        return path.stem, (proc.returncode, proc.stderr, errors, time.time() - start)

    # longest first (by the build's execution times), so that the last one to start is short
    times = json.loads(execute.TIMES.read_text()) if execute.TIMES.is_file() else {}
    order = sorted(notebooks, key=lambda p: -times.get(p.relative_to(ROOT).with_suffix("").as_posix(), 0))
    with ThreadPoolExecutor(max_workers=jobs) as pool:   # each run is its own kernel process
        return dict(pool.map(run, order))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_for_a_fresh_reader_on_a_gpu(reader_runs, path):
    """A reader with only the wheel, on a (fake) GPU: every cell runs, nothing mixes devices."""
    assert path.stem in reader_runs, f"{path.name} was not generated (make book runs tools/notebooks.py)"
    returncode, stderr, errors, _ = reader_runs[path.stem]
    assert returncode == 0, f"{path.name} failed for a fresh reader on the fake GPU:\n{stderr[-4000:]}"
    assert not errors


def test_where_the_fresh_reader_imports_the_package_from(fresh_reader):
    where = subprocess.run([fresh_reader.python, "-c", "import dlcv; print(dlcv.__file__)"], check=True,
                           cwd=fresh_reader.tmp, env=fresh_reader.env, capture_output=True, text=True).stdout
    assert not Path(where.strip()).resolve().is_relative_to(ROOT), f"dlcv imported from the repository: {where}"


def test_binder_environment_is_complete():
    """repo2docker builds Binder from binder/ (and then ignores the root's files): its
    requirements.txt takes the book's requirements (with the package and jupytext, which opens
    the .md chapters as notebooks) and PyTorch's CPU wheels, runtime.txt names the Python
    version and postBuild fetches the data."""
    binder = ROOT / "binder"
    runtime = (binder / "runtime.txt").read_text().strip()
    m = re.fullmatch(r"python-3\.(\d+)", runtime)
    assert m, f"binder/runtime.txt should read python-3.X, not {runtime!r}"
    pyproject = (ROOT / "code" / "pyproject.toml").read_text()
    minimum = int(re.search(r'requires-python = ">=3\.(\d+)"', pyproject).group(1))
    assert int(m.group(1)) >= minimum, "binder/runtime.txt is older than the package's requires-python"
    for stray in ("runtime.txt", "postBuild", "environment.yml"):
        assert not (ROOT / stray).exists(), f"{stray} at the root is ignored by Binder once binder/ exists"
    lines = [r.strip() for r in (binder / "requirements.txt").read_text().splitlines()]
    assert "-r ../requirements.txt" in lines, "Binder must install the book's own requirements"
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines, "Binder has no GPU: CPU wheels"
    requirements = (ROOT / "requirements.txt").read_text().split("\n")
    assert any(re.match(r"(-e\s+)?\./code\b", r.strip()) for r in requirements), "the package is not installed"
    assert any(r.startswith("jupytext") for r in requirements)
    post = binder / "postBuild"
    assert os.access(post, os.X_OK), "postBuild must be executable"
    assert "python -m dlcv.data fetch" in post.read_text()
