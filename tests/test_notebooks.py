"""The generated notebooks (tools/notebooks.py), as Colab, Binder and download readers get them.

* Each reads as plain Jupyter Markdown: no MyST syntax left, figures embedded as attachments,
  and a first cell that installs the package, pinned to the build's commit, only in Colab.
* A fresh reader: the package is built as a wheel and installed (not editable) into a new
  virtual environment outside the repository, and every notebook, copied out of the
  repository, executes there with nbclient. Run after `make book`, as `make test` does.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from test_site import PAGES, ROOT

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


@pytest.fixture(scope="module")
def fresh_reader(tmp_path_factory):
    """A new virtual environment with the package installed from a wheel, and no repository."""
    tmp = tmp_path_factory.mktemp("reader")
    # build the wheel from a copy, so that setuptools' build/ folder never lands in the repository
    source = tmp / "dlcv-source"
    shutil.copytree(ROOT / "code", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__",
                                                                          ".pytest_cache", "tests"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", source],
                   check=True)
    wheel = next((tmp / "dist").glob("dlcv-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    py = venv / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", str(wheel), "nbclient", "ipykernel"], check=True,
                   cwd=tmp)
    # The kernel must be this environment's Python, whatever kernels the user has installed.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "JUPYTER_PATH")}
    env.update(JUPYTER_DATA_DIR=str(tmp / "jupyter-data"), JUPYTER_CONFIG_DIR=str(tmp / "jupyter-config"),
               DLCV_NO_PROGRESS="1")
    subprocess.run([py, "-m", "ipykernel", "install", "--prefix", str(venv), "--name", "python3"],
                   check=True, env=env, capture_output=True)
    where = subprocess.run([py, "-c", "import dlcv, sys; print(dlcv.__file__)"], check=True, cwd=tmp,
                           env=env, capture_output=True, text=True).stdout.strip()
    assert not Path(where).resolve().is_relative_to(ROOT), f"dlcv imported from the repository: {where}"
    readers = tmp / "readers"
    readers.mkdir()
    return py, readers, env


EXECUTE = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": "."}}).execute()
nbformat.write(nb, sys.argv[1])
"""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_for_a_fresh_reader(fresh_reader, path):
    py, readers, env = fresh_reader
    copy = readers / path.name
    shutil.copy(path, copy)
    proc = subprocess.run([py, "-c", EXECUTE, copy.name], cwd=readers, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{path.name} failed for a fresh reader:\n{proc.stderr[-4000:]}"
    nb = json.loads(copy.read_text())
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


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
