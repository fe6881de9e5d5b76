"""How each page was built: a note under every chapter's title and the table of the build page.

A chapter's numbers depend on where it ran: a CPU builds it at the "small" scale, a GPU at the
"large" one, and the two print different results. ``tools/execute.py`` stores, with each
executed notebook in the execution cache, what its kernel reported (``dlcv.runtime.setup``
writes the hardware, the PyTorch threads, the scale and the versions), the date, the commit it
was executed from and its execution time. This local Sphinx extension reads those records for
the notebooks the site shows (the cache entry that matches each page's code, as myst-nb's cache
mode takes it), and, before MyST parses a page:

- puts an admonition under the title of every chapter (``book/chNN_*``), naming the device,
  the scale, the date and the commit, and linking to the build page;
- replaces the line ``% dlcv:build-table`` of the build page (``book/build.md``) with the table
  of every executed page, as QuantEcon's lectures print their execution statistics.

A page without a record (executed by myst-nb itself, not by ``tools/execute.py``) says so.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from book_toc import ROOT, notebook_pages, toc_pages  # noqa: E402

PLACEHOLDER = "% dlcv:build-table"
BUILD_PAGE = "book/build"


def records(cache_dir: Path, pages: list[str]) -> dict[str, dict]:
    """``{page: record}`` for the pages whose current code is in the cache: the record
    ``tools/execute.py`` stored (``dlcv_build``), with ``seconds`` from the cache entry."""
    from jupyter_cache import get_cache

    from execute import read_notebook

    if not cache_dir.is_dir():
        return {}
    cache, out = get_cache(str(cache_dir)), {}
    for page in pages:
        nb = read_notebook(ROOT / f"{page}.md")
        if nb is None:
            continue
        try:
            entry = cache.match_cache_notebook(nb)
        except KeyError:
            continue
        data = entry.data or {}
        record = dict(data.get("dlcv_build") or {})
        if data.get("execution_seconds") is not None:
            record["seconds"] = round(float(data["execution_seconds"]), 1)
        out[page] = record
    return out


def _device(record: dict) -> str:
    """"a 2-core x86_64 CPU (no GPU), 1 thread" or "an NVIDIA H100 GPU"."""
    hardware = record.get("hardware", "an unrecorded machine")
    if record.get("device") == "cpu" and record.get("threads"):
        n = record["threads"]
        return f"{hardware}, {n} PyTorch thread{'s' if n > 1 else ''}"
    return hardware


def note(record: dict | None) -> str:
    """The admonition under a chapter's title (MyST)."""
    if not record or "scale" not in record:
        body = ("This page was executed outside the book's build, which records the device "
                "and scale; {doc}`build` lists the pages it executed.")
    else:
        other = "large" if record["scale"] != "large" else "small"
        body = (f"The results on this page were computed on {_device(record)}, at the "
                f"*{record['scale']}* scale, on {record.get('date', 'an unrecorded date')} from "
                f"commit `{record.get('commit', 'unknown')}`. At the *{other}* scale the same "
                "code runs at another size and prints other numbers; {doc}`build` lists every "
                "chapter's device, scale and time.")
    return (":::{admonition} How this page was built\n:class: note dlcv-build-note\n"
            f"{body}\n:::\n")


def _short_device(record: dict) -> str:
    """The table's device column: "CPU, 1 thread", "NVIDIA H100 GPU", or a dash for a page
    that never asked for a device."""
    if "device" not in record:
        return "–"
    if record["device"] == "cpu":
        n = record.get("threads", 1)
        return f"CPU, {n} thread{'s' if n > 1 else ''}"
    return re.sub(r"^an? ", "", record.get("hardware", record["device"]))


def table(recs: dict[str, dict], pages: list[str]) -> str:
    """The build page's table (MyST): the machines, then one row per executed page, in book
    order, and a total."""
    machines = sorted({r["hardware"] for r in recs.values() if "hardware" in r})
    lines = [f"Executed on {' and on '.join(machines) or 'an unrecorded machine'}:", "",
             "| page | executed | device | scale | seconds | commit |",
             "| --- | --- | --- | --- | ---: | --- |"]
    total = 0.0
    for page in pages:
        if page not in recs:
            continue
        r = recs[page]
        seconds = r.get("seconds")
        total += seconds or 0.0
        lines.append(f"| {{doc}}`{Path(page).name}` | {r.get('date', '?')} | {_short_device(r)} | "
                     f"{r.get('scale', '–')} | {seconds if seconds is not None else '?'} | "
                     f"`{r.get('commit', '?')}` |")
    lines.append(f"| **total** | | | | **{total:.0f}** | |")
    return "\n".join(lines) + "\n"


def after_title(source: str, text: str) -> str:
    """``source`` with ``text`` inserted after its first ``# `` heading (outside code fences)."""
    lines, fence = source.splitlines(keepends=True), None
    for i, line in enumerate(lines):
        m = re.match(r"^(`{3,}|:{3,}|~{3,})", line)
        if m:
            fence = None if fence and m.group(1).startswith(fence) else (fence or m.group(1))
            continue
        if fence is None and line.startswith("# "):
            return "".join(lines[:i + 1]) + "\n" + text + "".join(lines[i + 1:])
    raise ValueError("no top-level title (a line starting with '# ') to put the build note under")


def _source_read(app, docname: str, source: list[str]) -> None:
    recs = app.env.dlcv_build_records
    if docname == BUILD_PAGE:
        if PLACEHOLDER not in source[0]:
            raise ValueError(f"{docname}.md has no line {PLACEHOLDER!r} for the build table")
        source[0] = source[0].replace(PLACEHOLDER, table(recs, toc_pages()))
    elif docname in CHAPTERS:
        source[0] = after_title(source[0], note(recs.get(docname)))


CHAPTERS = [p for p in notebook_pages() if re.match(r"book/ch\d\d[a-z]?_", p)]   # the pages with a note


def _load(app) -> None:
    cache = ROOT / app.config.nb_execution_cache_path if app.config.nb_execution_cache_path else None
    app.env.dlcv_build_records = records(cache, toc_pages()) if cache else {}


def setup(app):
    app.connect("builder-inited", _load)
    app.connect("source-read", _source_read)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
