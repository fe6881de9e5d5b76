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
