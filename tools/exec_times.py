"""Print a Markdown table of each chapter's execution time, from the build's execution cache.

myst-nb executes chapters through jupyter-cache, which records ``execution_seconds`` for each
notebook it runs. This script reads those records (for the chapters in ``_toc.yml``, in book
order, the entries that match their current code) and prints a table with the hardware the
numbers came from, for docs/budgets.md or a CI run's summary. A chapter taken from an older cache
entry shows the time of the run that made it.
Usage: python tools/exec_times.py [--write] [CACHE_DIR]   (default _build/.jupyter_cache);
``--write`` puts the table into docs/budgets.md, between its markers, instead of printing it.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from book_toc import ROOT, notebook_pages  # noqa: E402


def execution_times(cache_dir: Path) -> dict[str, float]:
    """``{page: seconds}`` of the cache entries that match the pages' current code (the
    records the build page shows, tools/build_notes.py)."""
    from build_notes import records

    if not cache_dir.is_dir():
        raise SystemExit(f"exec_times: no execution cache at {cache_dir}; build the book first (make book)")
    return {page: r["seconds"] for page, r in records(cache_dir, notebook_pages()).items() if "seconds" in r}


def table(times: dict[str, float], hardware: str) -> str:
    lines = [f"Execution time per chapter on {hardware}:", "", "| page | seconds |", "| --- | ---: |"]
    total = 0.0
    for page in notebook_pages():
        if page in times:
            lines.append(f"| `{page}` | {times[page]:.0f} |")
            total += times[page]
        else:
            lines.append(f"| `{page}` | (not in the cache) |")
    lines.append(f"| **total** | **{total:.0f}** |")
    return "\n".join(lines)


BUDGETS = ROOT / "docs" / "budgets.md"
BEGIN, END = "<!-- exec-times: begin (tools/exec_times.py --write) -->", "<!-- exec-times: end -->"


def write(text: str, path: Path = BUDGETS) -> None:
    """Put ``text`` between the markers of ``path`` (docs/budgets.md), with today's date: the
    budgets page's current table is the one the tool measured, not one copied by hand."""
    import datetime

    page = path.read_text(encoding="utf-8")
    if BEGIN not in page or END not in page:
        raise SystemExit(f"exec_times: {path} has no {BEGIN!r} ... {END!r} block to fill")
    head, rest = page.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    dated = f"Measured {datetime.date.today().isoformat()}. {text}"
    path.write_text(f"{head}{BEGIN}\n{dated}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT / "code" / "src"))
    from dlcv.runtime import describe_hardware

    args = [a for a in argv if a != "--write"]
    cache = Path(args[0]) if args else ROOT / "_build" / ".jupyter_cache"
    text = table(execution_times(cache), describe_hardware())
    if "--write" in argv:
        write(text)
        print(f"exec_times: wrote the table into {BUDGETS.relative_to(ROOT)}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
