"""How the pages say they were built (tools/build_notes.py): a note under every chapter's title
that names the device and the scale and links to the build page, and the build page's table of
every executed page, both from the records tools/execute.py stores in the execution cache."""
from __future__ import annotations

import re

import pytest
from bs4 import BeautifulSoup

from test_site import HTML, PAGES, ROOT
import build_notes  # noqa: I001  (tools/, put on the path by test_site)
from execute import commit  # noqa: I001

CHAPTERS = build_notes.CHAPTERS


def soup_of(page: str) -> BeautifulSoup:
    return BeautifulSoup((HTML / f"{page}.html").read_text(encoding="utf-8"), "html.parser")


@pytest.fixture(scope="module")
def records():
    return build_notes.records(ROOT / "_build" / ".jupyter_cache", PAGES)


def test_every_chapter_was_executed_with_a_record(records):
    for page in CHAPTERS:
        r = records.get(page)
        assert r, f"{page}: no execution record in the cache (was it executed by tools/execute.py?)"
        assert r["scale"] in ("small", "large", "smoke") and r["device"] in ("cpu", "cuda", "mps")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", r["date"]) and r["seconds"] > 0
        assert r["commit"] != "unknown" and r["hardware"]


@pytest.mark.parametrize("page", CHAPTERS)
def test_chapter_says_how_it_was_built(records, page):
    soup = soup_of(page)
    notes = soup.select("main .dlcv-build-note")
    assert len(notes) == 1, f"{page}: {len(notes)} build notes"
    note, r = notes[0], records[page]
    # under the chapter's title, before its first section
    assert note.find_previous(["h1", "h2"]).name == "h1"
    text = " ".join(note.get_text().split())
    assert r["hardware"] in text and f"{r['scale']} scale" in text and r["date"] in text
    assert r["commit"] in text
    assert note.find("a", href=re.compile(r"(^|/)build\.html"))


def test_build_page_lists_every_chapter(records):
    soup = soup_of("book/build")
    rows = soup.select("main table tbody tr")
    assert len(rows) == len(records) + 1, "one row per executed page and a total"
    for row, page in zip(rows, [p for p in PAGES if p in records]):
        cells = [c.get_text(" ", strip=True) for c in row.find_all("td")]
        r = records[page]
        assert row.find("a", href=re.compile(re.escape(page.split("/")[1]) + r"\.html"))
        assert cells[1] == r["date"] and cells[3] == r.get("scale", "–")
        assert float(cells[4]) == r["seconds"] and cells[5] == r["commit"]
    total = rows[-1].find_all("td")[4].get_text(strip=True)
    assert float(total) == pytest.approx(sum(r["seconds"] for r in records.values()), abs=1)


def test_note_goes_under_the_title_not_into_code():
    source = "---\nx: 1\n---\n```{code-cell}\n# not a title\n```\n(label)=\n# Title\n\nText.\n"
    out = build_notes.after_title(source, "NOTE\n")
    assert out.index("NOTE") > out.index("# Title") and out.count("NOTE") == 1
    assert out.index("# not a title") < out.index("# Title")
    with pytest.raises(ValueError, match="no top-level title"):
        build_notes.after_title("```\n# only code\n```\n", "NOTE\n")


def test_a_page_without_a_record_says_so():
    assert "outside the book's build" in build_notes.note(None)
    gpu = build_notes.note({"hardware": "an NVIDIA H100 GPU", "device": "cuda", "threads": 8,
                            "scale": "large", "date": "2026-12-05", "commit": "abc"})
    assert "an NVIDIA H100 GPU, at the *large* scale" in gpu and "thread" not in gpu


def test_commit_marks_uncommitted_changes():
    assert re.fullmatch(r"[0-9a-f]{10}\+?|unknown", commit())
