"""The generated notebooks run by a fresh reader on a (fake) GPU, at the smoke scale: the runs
that ``tests/test_notebooks.py`` checks.

Every notebook, copied out of the repository, executes with nbclient in the fresh reader's
environment (tools/reader_env.py) under the fake CUDA device of tools/fake_cuda.py, with
``DLCV_SCALE=smoke``. That is a kernel importing PyTorch per chapter, a few minutes in all.
``make test`` therefore starts the runs in the background as soon as the book is built
(``python tools/reader_runs.py --background``), one notebook at a time, so that they use the
core that the PDF printer and the browser checks leave idle. The test shares the rest of the
work: each notebook has its own lock and result file (in the reader's folder, with a hash of
the notebook, the package and the fake device), whoever takes a notebook's lock first runs it,
and the test runs the notebooks nobody has started, as many at a time as the build runs
chapters (tools/execute.py), then waits for the ones the background process is running.

Results: ``{page name: (returncode, end of stderr, error outputs, seconds)}``.
Usage: python tools/reader_runs.py [--background]
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import execute  # noqa: E402  (how many at a time, on how many threads, longest first)
import fake_cuda  # noqa: E402
from book_toc import ROOT, toc_pages  # noqa: E402
from reader_env import FreshReader, package_hash  # noqa: E402

EXECUTE = """
import sys, tempfile, nbformat
from nbclient import NotebookClient
from traitlets.config import Config
nb = nbformat.read(sys.argv[1], as_version=4)
nb.cells.insert(0, nbformat.v4.new_code_cell(sys.argv[2]))  # the fake GPU, at the smoke scale
# Unix sockets, not TCP ports, which kernels started side by side can both be given (tools/execute.py)
with tempfile.TemporaryDirectory(prefix="dlcv-kernel-") as folder:
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": "."}},
                   config=Config({"KernelManager": {"transport": "ipc", "ip": folder + "/kernel"}})).execute()
nbformat.write(nb, sys.argv[1])
"""
FAKE_CUDA = Path(fake_cuda.__file__)


def notebooks() -> list[Path]:
    """The generated notebooks of the book's pages, those that exist."""
    return [p for p in (ROOT / f"{page}.ipynb" for page in toc_pages()) if p.is_file()]


# The package's sources are hashed once per process, not once for each notebook and lookup.
_package_key = functools.cache(package_hash)


def run_key(path: Path) -> str:
    """What a notebook's result depends on: the notebook, the package in the wheel, the fake
    device."""
    h = hashlib.sha256(_package_key().encode())
    for p in (path, FAKE_CUDA):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _runs_folder(reader: FreshReader) -> Path:
    return reader.tmp / "runs"


def _lock_path(reader: FreshReader) -> str:
    return f"{reader.tmp}-runs.lock"


def _run_one(reader: FreshReader, path: Path, threads: int, blocking: bool):
    """Run ``path`` unless someone else is running it (``blocking=False``: skip it then) or its
    result for the current notebook is saved already; return that result, or None if skipped.
    One lock per notebook lets the background process and the test share the work."""
    folder = _runs_folder(reader)
    folder.mkdir(parents=True, exist_ok=True)
    result_file = folder / f"{path.stem}.json"
    with open(folder / f"{path.stem}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            return None
        key = run_key(path)
        if result_file.is_file():
            saved = json.loads(result_file.read_text())
            if saved["key"] == key:
                return tuple(saved["result"])
        result = _execute(reader, path, threads)
        result_file.write_text(json.dumps({"key": key, "result": result}))
        return result


def _execute(reader: FreshReader, path: Path, threads: int) -> tuple:
    readers = reader.tmp / "readers"
    readers.mkdir(exist_ok=True)
    shutil.copy(FAKE_CUDA, readers)  # nothing else of the repository comes along
    env = dict(reader.env, DLCV_SCALE="smoke", **{v: str(threads) for v in execute.THREAD_VARIABLES})
    copy = readers / path.name
    shutil.copy(path, copy)
    start = time.time()
    proc = subprocess.run([str(reader.python), "-c", EXECUTE, copy.name, fake_cuda.setup_cell(readers)],
                          cwd=readers, env=env, capture_output=True, text=True)
    errors = []
    if proc.returncode == 0:
        nb = json.loads(copy.read_text())
        errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    return proc.returncode, proc.stderr[-8000:], errors, round(time.time() - start, 1)


def _longest_first(paths: list[Path]) -> list[Path]:
    times = json.loads(execute.TIMES.read_text()) if execute.TIMES.is_file() else {}
    return sorted(paths, key=lambda p: -times.get(p.relative_to(ROOT).with_suffix("").as_posix(), 0))


@contextlib.contextmanager
def locked(reader: FreshReader, fd: int | None = None):
    """Hold the background process's lock (or, with ``fd``, the one a parent took and handed
    over): while anyone holds it, no background runs are going on (the site checks take it to
    remove the environment)."""
    if fd is not None:
        with os.fdopen(fd, "w"):
            yield
        return
    reader.tmp.parent.mkdir(parents=True, exist_ok=True)
    with open(_lock_path(reader), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def background_run(lock_fd: int | None = None) -> None:
    """The background runs: wait for the environment, then run the notebooks one at a time,
    longest first, skipping any that the test is running already."""
    reader = FreshReader()
    with locked(reader, lock_fd):
        reader.ensure()
        ran = [_run_one(reader, p, threads=1, blocking=False) for p in _longest_first(notebooks())]
    print(f"reader_runs: {sum(r is not None for r in ran)} notebooks run in the background")


def results(reader: FreshReader) -> dict:
    """Every notebook's result for the notebooks as they are now: the runs not started yet are
    shared out among as many workers as the build runs chapters (tools/execute.py), beside the
    background process if one is going; then the results of those it was running are waited
    for."""
    paths = _longest_first(notebooks())
    jobs, threads = execute.workers_and_threads(len(paths))
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # each run is its own kernel process
        list(pool.map(lambda p: _run_one(reader, p, threads, blocking=False), paths))
    return {p.stem: _run_one(reader, p, threads, blocking=True) for p in paths}


if __name__ == "__main__":
    if sys.argv[1:] == ["--background"]:  # a process of its own, holding the lock taken here
        reader = FreshReader()
        reader.tmp.parent.mkdir(parents=True, exist_ok=True)
        lock = open(_lock_path(reader), "w")
        fcntl.flock(lock, fcntl.LOCK_EX)
        log_path = f"{reader.tmp}-runs.log"
        with open(log_path, "w") as log:
            subprocess.Popen([sys.executable, __file__, "--holding-lock", str(lock.fileno())], stdout=log,
                             stderr=log, start_new_session=True, pass_fds=(lock.fileno(),))
        print(f"reader_runs: running the notebooks for a fresh reader in the background (log: {log_path})")
    elif sys.argv[1:2] == ["--holding-lock"]:
        background_run(int(sys.argv[2]))
    elif not sys.argv[1:]:
        background_run()
    else:
        raise SystemExit(__doc__.rsplit("Usage: ", 1)[1])
