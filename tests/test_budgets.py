"""Each chapter executes within the book's budget, as recorded by the build's execution cache
(tools/exec_times.py reads the same records). Run after `make book`.

The budget is 90 s per chapter on an idle 2-core CPU, as the build executes it (tools/execute.py:
two chapters side by side, one thread each; docs/budgets.md lists the measured times). Wall
time on a shared machine varies, so the test fails only beyond a tolerance, twice the budget
by default (``DLCV_BUDGET_TOLERANCE``): it catches a chapter that has grown, not a busy machine."""
from __future__ import annotations

import importlib.util
import os

import pytest

from test_site import ROOT
from book_toc import notebook_pages  # noqa: I001  (tools/, put on the path by test_site)

spec = importlib.util.spec_from_file_location("exec_times", ROOT / "tools" / "exec_times.py")
exec_times = importlib.util.module_from_spec(spec)
spec.loader.exec_module(exec_times)
BUDGET_S = 90
TOLERANCE = float(os.environ.get("DLCV_BUDGET_TOLERANCE", "2"))


@pytest.fixture(scope="module")
def times():
    return exec_times.execution_times(ROOT / "_build" / ".jupyter_cache")


@pytest.mark.parametrize("page", notebook_pages())
def test_chapter_executes_within_budget(times, page):
    assert page in times, f"{page} has no execution record (make book)"
    assert times[page] < TOLERANCE * BUDGET_S, \
        f"{page} took {times[page]:.0f} s, over {TOLERANCE:g} x the {BUDGET_S} s budget"


def test_table_lists_every_page(times):
    text = exec_times.table(times, "test hardware")
    assert all(f"`{p}`" in text for p in notebook_pages()) and "**total**" in text


def test_the_budgets_page_takes_the_measured_table(tmp_path):
    """tools/exec_times.py --write fills docs/budgets.md between its markers, and refuses a
    page without them."""
    page = tmp_path / "budgets.md"
    page.write_text(f"# Budgets\n{exec_times.BEGIN}\nold\n{exec_times.END}\nafter\n")
    exec_times.write("| page | seconds |", page)
    text = page.read_text()
    assert "old" not in text and "| page | seconds |" in text and text.endswith("after\n")
    assert exec_times.BEGIN in (ROOT / "docs" / "budgets.md").read_text()
    page.write_text("no markers")
    with pytest.raises(SystemExit, match="no"):
        exec_times.write("x", page)
