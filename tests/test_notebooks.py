"""The generated notebooks (tools/notebooks.py), as Colab, Binder and download readers get them.

* Each reads as plain Jupyter Markdown: no MyST syntax left, figures embedded as attachments,
  and a first cell that installs the package, pinned to the build's commit, only in Colab.
* A fresh reader on a GPU runtime, as in Colab: the package is built as a wheel and installed
  (not editable) into a new virtual environment outside the repository (tools/reader_env.py;
  make test makes it in the background), and every notebook, copied out of the repository,
  executes there with nbclient under the fake CUDA device of tools/fake_cuda.py, at the smoke
  scale (dlcv.runtime: training cut to a few batches). So each chapter's code runs for a reader
  with only the wheel, and its GPU code path runs, without repeating the book's training; the
  numbers themselves come from the build. Run after `make book`, as `make test` does; it starts
  these runs in the background once the book is built (tools/reader_runs.py).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from test_site import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import reader_runs as reader_runs_tool  # noqa: E402
from book_toc import notebook_pages  # noqa: E402

NOTEBOOKS = [ROOT / f"{p}.ipynb" for p in notebook_pages()]
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
def reader_runs(fresh_reader):
    """Every generated notebook executed by the fresh reader on the fake GPU at the smoke scale
    (tools/reader_runs.py): the runs ``make test`` started in the background once the book was
    built, or, when those ran other notebooks or none ran, runs made here.
    Returns ``{name: (returncode, stderr, error outputs, seconds)}``."""
    return reader_runs_tool.results(fresh_reader)


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
    assert "python -m dlcv fetch" in post.read_text()
