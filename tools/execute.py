"""Execute the book's chapters in parallel into the execution cache, before Sphinx reads them.

myst-nb executes a notebook when Sphinx reads its page, one page after another. This script
does the same work first, several chapters at a time: for every page of ``_toc.yml`` whose code
cells are not in the jupyter-cache yet, it runs the notebook exactly as myst-nb's ``cache`` mode
would (``jupyter_cache``'s ``single_nb_execution``, in the page's folder, the configured cell
timeout, no errors allowed) and stores the result in the same cache under the same key (a hash
of the code cells and their metadata). ``jupyter-book build`` then finds every page in the cache
and executes nothing. The cache keeps its guarantees: a prose edit changes no key and runs
nothing, a code edit runs only that chapter, and ``tools/cache_key.py`` clears the whole cache
when the package or the requirements change.

Workers and threads. ``DLCV_JOBS`` chapters run at once (default: one per CPU core), and each
kernel gets ``DLCV_THREADS`` PyTorch/BLAS threads (default: the cores divided among the jobs, so
one), through ``OMP_NUM_THREADS`` and its BLAS twins. Chapters start longest first, by the time
their last execution took (``_build/execution-times.json``, which outlives a cleared cache); in
a fresh clone, by the times committed in ``tools/execution-times.json`` (a CPU build's, to be
refreshed when a chapter's time changes much), and a chapter in neither first, by the length
of its code. With the defaults on a 2-core CPU, two chapters
run side by side on one thread each (docs/budgets.md: what that gave). The glued numbers of a
CPU build can depend on the thread count in their last digits (the order of floating-point
sums), so a build is repeatable for a given ``DLCV_THREADS``.

A failing chapter is reported with the end of its traceback, the whole traceback goes to
``_build/html/reports/<page>.err.log`` (where myst-nb puts its own), every other chapter still
runs, and the script exits 1, so that ``make book`` stops before the Sphinx pass.
Usage: python tools/execute.py [PAGE ...]   (default: every page in _toc.yml)
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from book_toc import ROOT, toc_pages  # noqa: E402

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
CACHE = ROOT / CONFIG["execute"]["cache"]
TIMEOUT = CONFIG["execute"].get("timeout", 30)
REPORTS = ROOT / "_build" / "html" / "reports"
# each chapter's last execution time, kept beside the cache (tools/cache_key.py may clear the cache)
TIMES = ROOT / "_build" / "execution-times.json"
SEED_TIMES = ROOT / "tools" / "execution-times.json"  # the order of a fresh clone's first build
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# the reader jupyter-cache registers for MyST notebooks, the one myst-nb hands it
READ_DATA = {"type": "plugin", "name": "myst_nb_md"}


def read_notebook(path: Path):
    """The notebook as myst-nb reads a MyST Markdown page, or None for a page without code."""
    from myst_nb.core.read import is_myst_markdown_notebook, read_myst_markdown_notebook

    text = path.read_text(encoding="utf8")
    if not is_myst_markdown_notebook(text):
        return None
    return read_myst_markdown_notebook(text, add_source_map=True, path=str(path))


def workers_and_threads(n_pages: int) -> tuple[int, int]:
    """``(jobs, threads)`` from ``DLCV_JOBS`` / ``DLCV_THREADS``, or one worker per core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    def setting(name: str, default: int) -> int:
        value = os.environ.get(name, "").strip()
        if not value:
            return default
        if not value.isdigit() or int(value) < 1:
            raise SystemExit(f"execute: {name} must be a positive whole number, got {value!r}")
        return int(value)

    jobs = setting("DLCV_JOBS", cores)
    # threads depend on the settings, not on how many chapters wait: a chapter gives the same
    # numbers whether it runs alone (after an edit) or in a full build
    threads = setting("DLCV_THREADS", max(1, cores // jobs))
    return min(jobs, n_pages), threads


@contextlib.contextmanager
def ipc_config():
    """nbclient configuration for a kernel that talks to its client over Unix sockets in a folder of
    its own. With TCP, kernels started at the same moment from two processes each ask the system
    for a free port and can be told the same one. The socket path is absolute because the kernel
    runs in the page's folder and the client does not."""
    from traitlets.config import Config

    with tempfile.TemporaryDirectory(prefix="dlcv-kernel-") as folder:
        yield Config({"KernelManager": {"transport": "ipc", "ip": f"{folder}/kernel"}})


def commit() -> str:
    """The repository's commit, short, with "+" when the chapters, the package or the
    requirements differ from it (what a page was executed from)."""
    import subprocess

    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short=10", "HEAD")
    if not head:
        return "unknown"
    changed = git("status", "--porcelain", "--", "book", "code", "requirements.txt")
    return head + ("+" if changed else "")


def _execute(path: str, nb) -> tuple[str, object, float, str | None, dict]:
    """Run one notebook in a worker process, as myst-nb's cache mode does. The kernel writes its
    device and scale to the file that ``DLCV_BUILD_RECORD`` names (``dlcv.runtime.setup``);
    returned with the date, for the page's build note (tools/build_notes.py)."""
    from jupyter_cache.executors.utils import single_nb_execution

    start = time.time()
    with tempfile.TemporaryDirectory(prefix="dlcv-record-") as folder:
        os.environ["DLCV_BUILD_RECORD"] = record_file = f"{folder}/record.json"
        try:
            with ipc_config() as config:
                result = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=TIMEOUT,
                                             allow_errors=False, meta_override=True, config=config)
        except Exception:  # noqa: BLE001  (a dead kernel, say: report it like a cell error)
            import traceback

            return path, nb, time.time() - start, traceback.format_exc(), {}
        finally:
            del os.environ["DLCV_BUILD_RECORD"]
        record = json.loads(Path(record_file).read_text()) if Path(record_file).is_file() else {}
    record["date"] = time.strftime("%Y-%m-%d", time.gmtime(start))
    error = result.exc_string if result.err is not None else None
    return path, result.nb, result.time, error, record


def main(argv: list[str]) -> int:
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn
    from jupyter_cache.cache.db import NbProjectRecord

    cache = get_cache(str(CACHE))
    last_time: dict[str, float] = json.loads((TIMES if TIMES.is_file() else SEED_TIMES).read_text())

    todo = {}
    for page in argv or toc_pages():
        path = ROOT / f"{page}.md"
        if not path.is_file():
            raise SystemExit(f"execute: no page {path.relative_to(ROOT)}")
        nb = read_notebook(path)
        if nb is None:
            continue
        try:
            cache.match_cache_notebook(nb)
        except KeyError:
            todo[str(path)] = nb
    if not todo:
        print("execute: every chapter is in the execution cache; nothing to run")
        return 0

    jobs, threads = workers_and_threads(len(todo))
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})  # inherited by the kernels
    page_of = {path: Path(path).relative_to(ROOT).with_suffix("").as_posix() for path in todo}
    # longest first: by the last execution's time, and chapters never timed (first, as they may be
    # long) by the length of their code
    code_length = {p: sum(len(c.source) for c in nb.cells if c.cell_type == "code") for p, nb in todo.items()}
    order = sorted(todo, key=lambda p: (page_of[p] in last_time, -last_time.get(page_of[p], code_length[p])))
    print(f"execute: {len(todo)} chapter(s), {jobs} at a time, {threads} thread(s) each", flush=True)
    start, failed = time.time(), []
    import multiprocessing

    source = commit()
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_execute, path, todo[path]) for path in order]
        for future in as_completed(futures):
            path, nb, seconds, error, build = future.result()
            page = page_of[path]
            record = cache.add_nb_to_project(path, read_data=READ_DATA)
            if error is None:
                build.update(commit=source, seconds=round(seconds, 1))
                cache.cache_notebook_bundle(
                    CacheBundleIn(nb, path, data={"execution_seconds": seconds, "dlcv_build": build}),
                    check_validity=False, overwrite=True)
                last_time[page] = round(seconds, 1)
                TIMES.write_text(json.dumps(last_time, indent=1, sort_keys=True) + "\n")
                print(f"execute: {page} in {seconds:.1f} s", flush=True)
                continue
            failed.append(page)
            report = REPORTS.joinpath(*f"{page}.err.log".split("/"))
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(error)
            NbProjectRecord.set_traceback(record.uri, error, cache.db)
            print(f"execute: {page} FAILED after {seconds:.1f} s (whole traceback: "
                  f"{report.relative_to(ROOT)})\n{error[-3000:]}", file=sys.stderr, flush=True)
    print(f"execute: {len(todo) - len(failed)} of {len(todo)} chapter(s) in {time.time() - start:.0f} s wall",
          flush=True)
    if failed:
        print(f"execute: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
