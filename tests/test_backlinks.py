"""Each public function and class of dlcv names the section of the book that first uses it
(tools/backlinks.py, as d2l's functions say where they are defined), and the line stays true
as chapters change."""
from __future__ import annotations

import ast

from test_site import ROOT
import backlinks  # noqa: I001  (tools/, put on the path by test_site)


def test_every_back_link_is_current():
    stale = backlinks.plan()
    assert not stale, (f"stale or missing back-links in {sorted(p.name for p in stale)}: "
                       "run python tools/backlinks.py --write")


def test_back_links_name_real_sections():
    uses = backlinks.first_uses()
    assert uses[("boxes", "batched_nms")].startswith("in section 13.") and \
        uses[("detection_eval", "summarize")].startswith("in section 13.")
    assert uses[("runtime", "setup")] == "at the start of chapter 1"
    doc = ast.get_docstring(next(n for n in ast.parse(
        (ROOT / "code" / "src" / "dlcv" / "boxes.py").read_text()).body
        if isinstance(n, ast.FunctionDef) and n.name == "batched_nms"))
    assert doc.endswith(f"First used {uses[('boxes', 'batched_nms')]}.")


def test_a_moved_first_use_is_caught(tmp_path, monkeypatch):
    """A docstring whose line no longer matches the chapters is reported."""
    module = tmp_path / "m.py"
    module.write_text('__all__ = ["f"]\n\n\ndef f():\n    """Do.\n\n    First used in section 1.1, '
                      '*Old*.\n    """\n')
    fresh = backlinks._docstring_edits(module, {"f": "in section 2.3, *New*"})
    assert "First used in section 2.3, *New*." in fresh and "Old" not in fresh
    assert backlinks._docstring_edits(tmp_path / "m.py", {"f": "in section 1.1, *Old*"}) == \
        module.read_text()
