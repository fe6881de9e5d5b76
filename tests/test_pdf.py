"""The PDF edition (`make pdf`, tools/pdf.py): opened with pypdf and checked for what a reader of
it needs: every page of the book in order, a cover, an outline by part, chapter and section, the
chapters' figures, no raw TeX (math typeset by MathJax before printing), the glued numbers, the
solutions unfolded; and the site links to it. Run after `make pdf` (as `make test` does)."""
from __future__ import annotations

import re
import sys

import pytest
import yaml
from bs4 import BeautifulSoup

from test_site import HTML, PAGES, ROOT

sys.path.insert(0, str(ROOT / "tools"))
from book_toc import section_numbers, toc_parts  # noqa: E402

PDF = ROOT / "_build" / "pdf" / "book.pdf"
RAW_TEX = re.compile(r"\\(frac|sum|mathbf|mathrm|left|right|begin|end)\b|\$\$|\\\(|\\\[")


def raw_tex(text: str) -> list[str]:
    return [m.group(0) for m in RAW_TEX.finditer(text)]


@pytest.fixture(scope="module")
def book():
    from pypdf import PdfReader

    assert PDF.is_file(), "no PDF edition: run `make pdf`"
    reader = PdfReader(PDF)
    texts = [page.extract_text() or "" for page in reader.pages]
    return reader, texts


def outline_tree(reader):
    """[(title, page, [(title, page, [...]), ...]), ...] from pypdf's nested outline."""
    def walk(items):
        out = []
        for item in items:
            if isinstance(item, list):
                out[-1][2].extend(walk(item))
            else:
                out.append((item.title, reader.get_destination_page_number(item), []))
        return out
    return walk(reader.outline)


def page_title(page: str) -> str:
    soup = BeautifulSoup((HTML / f"{page}.html").read_text(encoding="utf-8"), "html.parser")
    h1 = soup.select_one("main h1")
    for link in h1.select(".headerlink"):
        link.decompose()
    return " ".join(h1.get_text().split())


def test_outline_has_every_part_and_chapter_in_order(book):
    reader, _ = book
    tree = outline_tree(reader)
    parts = toc_parts()
    captions = [c for c, _ in parts if c]
    top = [t for t, _, _ in tree]
    assert top[0] == page_title(parts[0][1][0]), "the book's first page (the introduction) comes first"
    assert top[1:] == captions, f"the parts in the outline: {top[1:]}"
    pages_seen = []
    numbers = section_numbers()
    for (caption, pages), (title, first, chapters) in zip(parts[1:], tree[1:]):
        # a chapter split into section pages (16.1, 16.2, ...) has them nested under its title
        chapter_pages = [p for p in pages if "." not in numbers.get(p, "")]
        assert len(chapters) == len(chapter_pages), f"{caption}: {len(chapters)} chapters in the outline"
        for page, (chapter, start, sections) in zip(chapter_pages, chapters):
            assert chapter.endswith(page_title(page)), f"{chapter!r} is not {page}"
            assert sections, f"{chapter}: no sections in the outline"
            own = [p for p in pages if numbers.get(p, "").startswith(f"{numbers.get(page)}.")]
            for sub in own:
                assert any(t.endswith(page_title(sub)) for t, _, _ in sections), \
                    f"{sub} is not under {chapter!r} in the outline"
            pages_seen.append(start)
        assert first == chapters[0][1]
    assert pages_seen == sorted(pages_seen), "chapters out of order"


def test_every_chapter_is_printed_with_its_numbers(book):
    reader, texts = book
    title = yaml.safe_load((ROOT / "_config.yml").read_text())["title"]
    assert re.sub(r"\s+", "", texts[0]).startswith(re.sub(r"\s+", "", title)), "no cover"
    assert len(reader.pages) >= 5 * len(PAGES), f"only {len(reader.pages)} pages"
    text = "\n".join(texts)
    squeezed = re.sub(r"\s+", "", text)  # a value may be broken across lines
    for page in PAGES:
        soup = BeautifulSoup((HTML / f"{page}.html").read_text(encoding="utf-8"), "html.parser")
        # every glued number of the page is printed (a sample: the first three)
        for glued in soup.select("main span.pasted-text")[:3]:
            value = glued.get_text(strip=True)
            assert re.sub(r"\s+", "", value) in squeezed, f"{page}: glued {value!r} is not in the PDF"
    assert "Show code cell content" not in text, "a folded cell's button was printed"


def test_no_raw_tex_and_figures_present(book):
    reader, texts = book
    found = [(i, raw_tex(t)) for i, t in enumerate(texts) if raw_tex(t)]
    assert not found, f"raw TeX on pages {found[:5]}"
    with_images = sum(1 for page in reader.pages
                      if any(x.get_object().get("/Subtype") == "/Image"
                             for x in (page["/Resources"].get("/XObject") or {}).values()))
    assert with_images >= 3 * (len(PAGES) - 2), f"only {with_images} pages have images"


def test_raw_tex_check_can_fail():
    assert raw_tex(r"where $$\frac{a}{b}$$ and \(x\)") == ["$$", r"\frac", "$$", r"\("]
    assert raw_tex("a = b / c, 10 $ each") == []


def test_site_links_to_the_pdf():
    assert (HTML / "book.pdf").is_file()
    soup = BeautifulSoup((HTML / "book" / "intro.html").read_text(encoding="utf-8"), "html.parser")
    assert soup.find("a", href="../book.pdf"), "the introduction does not link to the PDF"
