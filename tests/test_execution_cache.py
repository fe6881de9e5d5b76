"""The parallel execution (tools/execute.py) keeps the execution cache's guarantees. Run after
`make book`: every page Sphinx read was found in the cache under the key myst-nb computes, a
prose edit keeps a chapter's key (nothing re-executes) and a code edit changes it (only that
chapter re-executes)."""
from __future__ import annotations

import sys

import pytest

from test_site import ROOT
from book_toc import notebook_pages  # noqa: I001  (tools/, put on the path by test_site)

sys.path.insert(0, str(ROOT / "tools"))
import execute  # noqa: E402


@pytest.fixture(scope="module")
def cache():
    from jupyter_cache import get_cache

    assert execute.CACHE.is_dir(), "no execution cache: run `make book` first"
    return get_cache(str(execute.CACHE))


@pytest.mark.parametrize("page", notebook_pages())
def test_every_page_is_in_the_cache_under_myst_nbs_key(cache, page):
    nb = execute.read_notebook(ROOT / f"{page}.md")
    assert nb is not None, f"{page} is not a MyST notebook"
    cache.match_cache_notebook(nb)  # KeyError: Sphinx would have executed this page again


def test_a_prose_edit_keeps_the_key_and_a_code_edit_changes_it(cache, tmp_path):
    source = (ROOT / "book" / "ch06_backpropagation.md").read_text()
    prose = tmp_path / "prose.md"
    prose.write_text(source.replace("\n## ", "\nA sentence added to the prose.\n\n## ", 1))
    cache.match_cache_notebook(execute.read_notebook(prose))
    code = tmp_path / "code.md"
    code.write_text(source.replace("```{code-cell} ipython3\n", "```{code-cell} ipython3\nx_edit = 1\n", 2))
    with pytest.raises(KeyError):
        cache.match_cache_notebook(execute.read_notebook(code))


def test_threads_do_not_depend_on_how_many_chapters_wait(monkeypatch):
    monkeypatch.delenv("DLCV_JOBS", raising=False)
    monkeypatch.delenv("DLCV_THREADS", raising=False)
    alone, full = execute.workers_and_threads(1), execute.workers_and_threads(16)
    assert alone[0] == 1 and alone[1] == full[1]
    monkeypatch.setenv("DLCV_JOBS", "1")
    assert execute.workers_and_threads(16) == (1, execute.workers_and_threads(16)[1])
    monkeypatch.setenv("DLCV_JOBS", "two")
    with pytest.raises(SystemExit, match="DLCV_JOBS must be a positive whole number"):
        execute.workers_and_threads(3)
