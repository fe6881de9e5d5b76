"""Checks of the built site in _build/html: run after `make book` (as `make test` does)."""
from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
sys.path.insert(0, str(ROOT / "tools"))
from book_toc import toc_pages  # noqa: E402  (the same reader the build tools use)

PAGES = toc_pages()


@pytest.fixture(scope="module", params=PAGES)
def page(request):
    path = HTML / f"{request.param}.html"
    assert path.is_file(), f"no page built for {request.param} (run `make book`)"
    return path, BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def test_site_was_built():
    assert (HTML / "index.html").is_file(), "run `make book` first"


def test_every_chapter_source_is_in_the_toc():
    chapters = {f"book/{p.stem}" for p in (ROOT / "book").glob("*.md")}
    assert chapters <= set(PAGES), f"pages missing from _toc.yml: {chapters - set(PAGES)}"


def test_no_error_output_or_traceback(page):
    path, soup = page
    main = soup.find("main") or soup
    for cls in ("traceback", "stderr"):
        assert not main.select(f".output.{cls}, .cell_output .{cls}"), f"{path.name}: {cls} output"
    text = main.get_text()
    assert "Traceback (most recent call last)" not in text, f"{path.name}: a traceback is shown"
    assert not re.search(r"\w+Error: ", "\n".join(o.get_text() for o in main.select(".cell_output"))), \
        f"{path.name}: an exception message is shown"


def test_glued_values_and_figures_are_filled_in(page):
    path, soup = page
    text = (soup.find("main") or soup).get_text()
    assert "{glue:" not in text and "{glue}" not in text, f"{path.name}: unresolved glue"
    assert not re.search(r"<Figure size \d+x\d+", text), f"{path.name}: a figure rendered as text"
    for fig in soup.select("figure, div.figure"):
        if fig.find(class_="dlcv-interactive") is None and fig.find("img") is None:
            assert False, f"{path.name}: a figure without an image: {fig.get_text()[:80]!r}"


def test_every_widget_is_a_numbered_figure_marked_interactive(page):
    """The intro promises that figures with a knob are marked *interactive*: each widget sits in a
    numbered figure whose caption starts with "Interactive."."""
    path, soup = page
    for widget in soup.select("main .dlcv-interactive"):
        fig = widget.find_parent("figure") or widget.find_parent("div", class_="figure")
        assert fig is not None, f"{path.name}: a widget outside a figure"
        caption = fig.find("figcaption") or fig.find(class_="caption")
        assert caption is not None and fig.get("id"), f"{path.name}: a widget figure without a caption or a label"
        assert re.match(r"\s*Fig\. \d+\.\d+\s+Interactive\.", caption.get_text()), \
            f"{path.name}: caption {caption.get_text()[:60]!r} is not numbered and marked interactive"


def test_images_exist_and_have_alt_text(page):
    path, soup = page
    for img in soup.select("main img"):
        src = img.get("src", "")
        assert src, f"{path.name}: <img> without src"
        if not src.startswith("data:"):
            target = (path.parent / unquote(urlsplit(src).path)).resolve()
            assert target.is_file(), f"{path.name}: missing image {src}"
        alt = img.get("alt", "").strip()
        assert alt, f"{path.name}: image {src[:60]} has no alt text"
        # myst-nb's default alt text for a cell output is the image's own path: not a description
        assert alt != src and not alt.startswith("../_images/"), (
            f"{path.name}: image {src[:60]} has only its file name as alt text; set the cell's "
            "mystnb.image.alt metadata or glue the figure with a {glue:figure} :alt:")


def test_local_links_and_anchors_resolve(page):
    path, soup = page
    ids = {t.get("id") for t in soup.find_all(id=True)}
    for a in soup.select("main a[href]"):
        href = a["href"]
        parts = urlsplit(href)
        if parts.scheme or href.startswith("//") or href.startswith("mailto:"):
            continue
        if parts.path:
            target = (path.parent / unquote(parts.path)).resolve()
            assert target.exists(), f"{path.name}: broken link {href}"
            if parts.fragment and target.suffix == ".html":
                other = BeautifulSoup(target.read_text(encoding="utf-8"), "html.parser")
                assert other.find(id=parts.fragment), f"{path.name}: missing anchor {href}"
        elif parts.fragment:
            assert parts.fragment in ids, f"{path.name}: missing anchor #{parts.fragment}"


def test_citations_resolve(page):
    path, soup = page
    main = soup.find("main") or soup
    for ref in main.select("a.footnote-reference"):
        frag = urlsplit(ref["href"]).fragment
        note = soup.find(id=frag)
        assert note is not None and note.get_text().strip(), f"{path.name}: citation {ref.get_text()} unresolved"
    assert "??" not in main.get_text(), f"{path.name}: an unresolved reference (??)"


def test_page_weighs_under_3_mb(page):
    """A chapter page with its images (interactive frames are inline) stays under 3 MB."""
    path, soup = page
    total = path.stat().st_size
    for src in {img.get("src", "") for img in soup.select("img")}:
        if src and not src.startswith("data:") and not urlsplit(src).scheme:
            target = (path.parent / unquote(urlsplit(src).path)).resolve()
            if target.is_file():
                total += target.stat().st_size
    assert total < 3_000_000, f"{path.name} weighs {total / 1e6:.1f} MB with its images"


CODE_COLUMNS = 88  # black's default; 88 columns fit the column at 1280 px (_static/dlcv.css)


def displayed_code_lines(source: str):
    """(line number, line) of every code line a reader sees: the cells of a MyST chapter that
    are not removed (remove-cell, remove-input), without their YAML or option header."""
    lines = source.split("\n")
    i = 0
    while i < len(lines):
        if lines[i].startswith("```{code-cell}"):
            end = lines.index("```", i + 1)
            cell, start = lines[i + 1 : end], 0
            if cell and cell[0] == "---":
                start = cell.index("---", 1) + 1
            while start < len(cell) and re.match(r":(?!:)", cell[start]):
                start += 1
            if not re.search(r"remove-(cell|input)", "\n".join(cell[:start])):
                for k in range(start, len(cell)):
                    yield i + 2 + k, cell[k]
            i = end
        i += 1


def test_displayed_code_fits_88_columns():
    long = [f"{p.name}:{n} ({len(line)} columns)"
            for p in sorted((ROOT / "book").glob("*.md"))
            for n, line in displayed_code_lines(p.read_text(encoding="utf-8"))
            if len(line) > CODE_COLUMNS]
    assert not long, f"code lines over {CODE_COLUMNS} columns (black-format the cell): {long[:10]}"


def test_the_column_check_sees_long_lines():
    chapter = ("```{code-cell} ipython3\nx = 1  " + "#" * 90 + "\n```\n"
               "```{code-cell} ipython3\n:tags: [remove-cell]\ny = 2  " + "#" * 90 + "\n```\n")
    assert [n for n, line in displayed_code_lines(chapter) if len(line) > CODE_COLUMNS] == [2]


def test_accessibility_mends_still_apply():
    """tools/sphinx_site.py mends the theme's markup by string replacement; if a theme upgrade
    changes the markup, a mend stops matching and this says which (the axe check in
    test_browser.py would then show the violation it was for)."""
    import sphinx_site

    pages = [HTML / f"{p}.html" for p in PAGES]
    texts = [p.read_text(encoding="utf-8") for p in pages]
    for theirs, ours in sphinx_site.ACCESSIBILITY_MENDS:
        assert not any(theirs in t for t in texts), f"left unmended: {theirs}"
        assert any(ours in t for t in texts), f"this mend no longer matches the theme: {theirs}"


def test_entry_page_is_an_accessible_redirect():
    soup = BeautifulSoup((HTML / "index.html").read_text(encoding="utf-8"), "html.parser")
    first = PAGES[0]
    assert soup.html.get("lang") == "en" and soup.title.get_text(strip=True)
    assert soup.find("meta", attrs={"http-equiv": "Refresh"})["content"].endswith(f"{first}.html")
    assert soup.main.h1 and soup.main.find("a", href=f"{first}.html")
