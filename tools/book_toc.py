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
    return [(None, [toc["root"]])] + [(part.get("caption"), [c["file"] for c in part.get("chapters", [])])
                                      for part in toc.get("parts", [])]


def notebook_pages() -> list[str]:
    """The pages of ``toc_pages`` that are notebooks (MyST Markdown with a kernel), in order;
    a page of plain Markdown (the build page) has no code to run, no notebook and no
    execution record."""
    from myst_nb.core.read import is_myst_markdown_notebook

    return [name for name in toc_pages() if (ROOT / f"{name}.md").is_file()
            and is_myst_markdown_notebook((ROOT / f"{name}.md").read_text(encoding="utf8"))]
