"""The generated notebooks run by a fresh reader on a (fake) GPU, at the smoke scale: the runs
that ``tests/test_notebooks.py`` checks.

Every notebook, copied out of the repository, executes with nbclient in the fresh reader's
environment (tools/reader_env.py) under the fake CUDA device of tools/fake_cuda.py, with
``DLCV_SCALE=smoke``. That is a kernel importing PyTorch per chapter, a few minutes in all, on
one core at a time per notebook. ``make test`` therefore starts the runs in the background as
soon as the book is built (``python tools/reader_runs.py --background``), one notebook at a
time, so that they use the core that the PDF printer and the browser checks leave idle. They
write ``runs.json`` into the reader's folder with a hash of what they ran (the notebooks, the
package, the fake device); the test waits for them (a file lock, taken before the background
process starts) and takes their results over when the hash still matches, or else runs the
notebooks itself, as many at a time as the build runs chapters (tools/execute.py).

Results: ``{page name: (returncode, end of stderr, error outputs, seconds)}``.
Usage: python tools/reader_runs.py [--background]
"""
from __future__ import annotations

import contextlib
import fcntl
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


def runs_hash(paths: list[Path]) -> str:
    """What the results depend on: the notebooks, the package in the wheel, the fake device."""
    h = hashlib.sha256(package_hash().encode())
    for p in [*paths, FAKE_CUDA]:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _results_file(reader: FreshReader) -> Path:
    return reader.tmp / "runs.json"


def _lock_path(reader: FreshReader) -> str:
    return f"{reader.tmp}-runs.lock"


def run_all(reader: FreshReader, paths: list[Path], jobs: int, threads: int) -> dict:
    """Execute ``paths`` in ``reader``'s environment, ``jobs`` at a time, longest first."""
    readers = reader.tmp / "readers"
    readers.mkdir(exist_ok=True)
    shutil.copy(FAKE_CUDA, readers)  # nothing else of the repository comes along
    setup = fake_cuda.setup_cell(readers)
    env = dict(reader.env, DLCV_SCALE="smoke", **{v: str(threads) for v in execute.THREAD_VARIABLES})

    def run(path: Path):
        copy = readers / path.name
        shutil.copy(path, copy)
        start = time.time()
        proc = subprocess.run([str(reader.python), "-c", EXECUTE, copy.name, setup], cwd=readers, env=env,
                              capture_output=True, text=True)
        errors = []
        if proc.returncode == 0:
            nb = json.loads(copy.read_text())
            errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        return path.stem, (proc.returncode, proc.stderr[-8000:], errors, round(time.time() - start, 1))

    times = json.loads(execute.TIMES.read_text()) if execute.TIMES.is_file() else {}
    order = sorted(paths, key=lambda p: -times.get(p.relative_to(ROOT).with_suffix("").as_posix(), 0))
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # each run is its own kernel process
        return dict(pool.map(run, order))


@contextlib.contextmanager
def locked(reader: FreshReader, fd: int | None = None):
    """Hold the runs' lock (or, with ``fd``, the one a parent took and handed over): no background
    runs are going on meanwhile (the site checks hold it to remove the environment)."""
    if fd is not None:
        with os.fdopen(fd, "w"):
            yield
        return
    reader.tmp.parent.mkdir(parents=True, exist_ok=True)
    with open(_lock_path(reader), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def background_run(lock_fd: int | None = None) -> None:
    """The background runs: wait for the environment, run one notebook at a time, save."""
    reader = FreshReader()
    with locked(reader, lock_fd):
        _results_file(reader).unlink(missing_ok=True)
        reader.ensure()
        paths = notebooks()
        key = runs_hash(paths)
        results = run_all(reader, paths, jobs=1, threads=1)
        _results_file(reader).write_text(json.dumps({"hash": key, "results": results}))
    print(f"reader_runs: {len(results)} notebooks run, "
          f"{sum(r[0] != 0 or bool(r[2]) for r in results.values())} failed")


def results(reader: FreshReader) -> dict:
    """The runs for the notebooks as they are now: the background's, once it is done, if they
    ran these notebooks, or else run here on all the cores."""
    paths = notebooks()
    with locked(reader):
        saved = _results_file(reader)
        if saved.is_file():
            data = json.loads(saved.read_text())
            if data.get("hash") == runs_hash(paths):
                return {name: tuple(r) for name, r in data["results"].items()}
        jobs, threads = execute.workers_and_threads(len(paths))
        return run_all(reader, paths, jobs, threads)


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
