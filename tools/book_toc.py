"""The book's pages in reading order, from _toc.yml (shared by the build tools)."""
from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def toc_pages() -> list[str]:
    """``["book/intro", "book/ch01_history", ...]``: the root, then every part's chapters."""
    return [page for _, pages in toc_parts() for page in pages]


def toc_parts() -> list[tuple[str | None, list[str]]]:
    """``[(None, ["book/intro"]), ("I. Foundations", ["book/ch01_history", ...]), ...]``: the
    root alone, then each part's caption and pages, in reading order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [(None, [toc["root"]])] + [(part.get("caption"), _files(part.get("chapters", [])))
                                      for part in toc.get("parts", [])]


def _files(entries: list[dict]) -> list[str]:
    """Each entry's file, then its ``sections``' files (a chapter split into pages), in order."""
    return [f for e in entries for f in [e["file"], *_files(e.get("sections", []))]]


def section_numbers() -> dict[str, str]:
    """``{"book/ch01_history": "1", ..., "book/ch16a_translation": "16.1", ...}``: the number
    each numbered chapter's page, and each of its section pages, carries in the book (a chapter
    split into pages has no ``##`` sections of its own, so its pages are sections 16.1, 16.2...)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    out, chapter = {}, 0
    for part in toc.get("parts", []):
        if not part.get("numbered"):
            continue
        for entry in part.get("chapters", []):
            chapter += 1
            out[entry["file"]] = str(chapter)
            for k, sub in enumerate(entry.get("sections", []), start=1):
                out[sub["file"]] = f"{chapter}.{k}"
    return out


def notebook_pages() -> list[str]:
    """The pages of ``toc_pages`` that are notebooks (MyST Markdown with a kernel), in order;
    a page of plain Markdown (the build page) has no code to run, no notebook and no
    execution record."""
    from myst_nb.core.read import is_myst_markdown_notebook

    return [name for name in toc_pages() if (ROOT / f"{name}.md").is_file()
            and is_myst_markdown_notebook((ROOT / f"{name}.md").read_text(encoding="utf8"))]
