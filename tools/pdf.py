"""The PDF edition: ``make pdf`` writes ``_build/pdf/book.pdf`` (and a copy in the site,
``_build/html/book.pdf``, which the introduction links to).

Route: Chromium prints each built page of the site (``tools/print_pages.mjs``: the same
executed outputs, no second execution, no second Sphinx build), and pypdf binds the pages in
the order of ``_toc.yml`` behind a cover, with a PDF outline (bookmarks) by part, chapter and
section. No TeX installation is needed, and the pages look as the site does: MathJax's math,
numbered figures and equations, glued numbers, tables, the widgets' default frames, and every
collapsed cell and solution opened. Links within the book point at the published site.
Run after ``make book``.
"""
from __future__ import annotations

import datetime
import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from pypdf import PdfReader, PdfWriter

sys.path.insert(0, str(Path(__file__).resolve().parent))
import repo_links  # noqa: E402
from book_toc import ROOT, section_numbers, toc_parts  # noqa: E402
from site_server import serve  # noqa: E402

SITE = ROOT / "_build" / "html"
OUT = ROOT / "_build" / "pdf"
COVER = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:0;height:100vh;display:flex;flex-direction:column;
justify-content:center;align-items:center;text-align:center;color:#222}}
h1{{font-size:34pt;margin:0 0 .4em}} p{{font-size:13pt;margin:.3em}} .small{{font-size:10pt;color:#555}}
</style></head><body><h1>{title}</h1><p>{author}</p>
<p class="small">The PDF edition of <a href="{site}">{site}</a>, built {date} from commit {commit}.</p>
<p class="small">Text and figures CC BY-SA 4.0; code MIT.</p></body></html>"""


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _flatten(items, depth: int = 0) -> list[tuple[int, object]]:
    """A pypdf outline (items, with a list after an item for its children) in document order."""
    out = []
    for item in items:
        if isinstance(item, list):
            out += _flatten(item, depth + 1)
        else:
            out.append((depth, item))
    return out


def bind(printed: list[tuple[str | None, list[Path]]], cover: Path, target: Path, config: dict,
         levels: int = 2, sections: frozenset = frozenset()) -> int:
    """One PDF from the cover and the printed pages, by part, with an outline: parts, each
    page's title (its h1), and ``levels`` levels of its sections below it. The titles are the
    headings' texts as the page shows them (``NNN.json`` beside each ``NNN.pdf``). A file in
    ``sections`` is a section page of the chapter printed before it (``sections:`` in
    _toc.yml): its outline nests under that chapter's title. Returns the page count.
    ``config``: _config.yml, for the title and author."""
    writer = PdfWriter()
    writer.append(PdfReader(cover), import_outline=False)
    for caption, files in printed:
        part = None
        chapter = None          # the outline entry of the last chapter's title
        for i, f in enumerate(files):
            reader = PdfReader(f)
            start = len(writer.pages)
            writer.append(reader, import_outline=False)
            if caption and part is None:   # a part starts at its first chapter's first page
                part = writer.add_outline_item(title=caption, page_number=start)
            headings = json.loads(f.with_suffix(".json").read_text())
            entries = _flatten(reader.outline)
            if len(entries) != len(headings):  # cannot pair them: keep Chromium's own titles
                headings = [{"level": d + 1, "text": e.title} for d, e in entries]
            top = min(h["level"] for h in headings) if headings else 1
            # a chapter's title gets its number, which the page shows only in its sections'
            # (or, for a chapter split into section pages, in its first section page's title)
            numbers = [re.match(r"^(\d+)\.1\. ", h["text"]) for h in headings]
            if i + 1 < len(files) and files[i + 1] in sections:
                first = json.loads(files[i + 1].with_suffix(".json").read_text())
                numbers += [re.match(r"^(\d+)\.1\. ", h["text"]) for h in first[:1]]
            number = next((m[1] for m in numbers if m), None)
            if f in sections:
                number = None    # its title carries its own number, 16.1.
            parents = {top - 1: chapter if f in sections and chapter is not None else part}
            for (_, entry), heading in zip(entries, headings):
                depth = heading["level"] - top
                if depth > levels or heading["level"] - 1 not in parents or heading["text"] == "Contents":
                    continue
                if depth == 0 and number and not heading["text"].startswith(f"{number}."):
                    heading = {**heading, "text": f"{number}. {heading['text']}"}
                page = start + (reader.get_destination_page_number(entry) or 0)
                parents[heading["level"]] = writer.add_outline_item(
                    title=heading["text"], page_number=page, parent=parents[heading["level"] - 1])
                if depth == 0 and f not in sections:
                    chapter = parents[heading["level"]]
                for deeper in [k for k in parents if k > heading["level"]]:
                    del parents[deeper]
    writer.add_metadata({"/Title": config["title"], "/Author": config.get("author", "")})
    writer.page_mode = "/UseOutlines"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as fh:
        writer.write(fh)
    return len(writer.pages)


def main() -> int:
    if not (SITE / "index.html").is_file():
        raise SystemExit("pdf: no built site in _build/html: run `make book` first")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    parts = toc_parts()
    pages = [p for _, ps in parts for p in ps]
    work = OUT / "pages"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    site_url = repo_links.site_url(config)
    cover = work / "cover.html"
    cover.write_text(COVER.format(title=html.escape(config["title"]),
                                  author=html.escape(config.get("author", "")), site=site_url,
                                  date=datetime.date.today().isoformat(), commit=_commit()))
    server = serve(SITE)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        subprocess.run(["node", str(ROOT / "tools" / "print_pages.mjs"), base, site_url, str(work),
                        str(cover), *pages], check=True, cwd=ROOT, timeout=900)
    finally:
        server.shutdown()
    numbered = iter(sorted(work.glob("[0-9][0-9][0-9].pdf")))
    printed = [(caption, [next(numbered) for _ in ps]) for caption, ps in parts]
    numbers = section_numbers()
    section_files = frozenset(f for (_, ps), (_, fs) in zip(parts, printed) for p, f in zip(ps, fs)
                              if "." in numbers.get(p, ""))
    book = OUT / repo_links.PDF_NAME
    count = bind(printed, work / "000-cover.pdf", book, config, sections=section_files)
    shutil.copy(book, SITE / repo_links.PDF_NAME)
    print(f"pdf: {book} ({count} pages), copied to _build/html/{repo_links.PDF_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
