"""The fresh reader's environment: a new virtual environment, outside the repository, with the
companion package installed from its wheel and nothing else of the repository.

``tests/test_notebooks.py`` executes every generated notebook there, as a reader who installed
only the package would. Making it is about a minute of pip (mostly unpacking PyTorch), so
``make test`` starts it in the background before the package's tests (``python
tools/reader_env.py --background``), and the site checks take it over: they wait for it (a file
lock), use it when its stamp matches the package's current sources, and else make it again in a
background thread while the HTML, browser and workflow checks run. The site checks delete it
when they end (about 6 GB with PyTorch's CUDA build), so every test session gets a fresh one.

``DLCV_TORCH_INDEX_URL``, when set, is the index PyTorch is installed from first (CI sets
PyTorch's CPU wheels, a fifth of PyPI's CUDA build). It lives in ``$TMPDIR`` (or /tmp) under a name made from the repository's path, so that two
clones do not share one. Usage: python tools/reader_env.py [--background | --remove]
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "code"
IGNORE = shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache", "tests")


def package_hash() -> str:
    """A hash of what goes into the wheel: the package's sources and its pyproject.toml."""
    h = hashlib.sha256()
    for f in sorted(p for p in PACKAGE.rglob("*") if p.is_file()):
        rel = f.relative_to(PACKAGE)
        if rel.parts[0] in ("tests", "build") or "__pycache__" in rel.parts or rel.parts[0].endswith(".egg-info"):
            continue
        h.update(str(rel).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


class FreshReader:
    """The environment (``venv``, its ``python``, the ``env`` its kernels run with) in ``tmp``."""

    def __init__(self):
        where = hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]
        self.tmp = Path(tempfile.gettempdir()) / f"dlcv-reader-{where}"
        self.venv = self.tmp / "venv"
        self.python = self.venv / "bin" / "python"
        self.stamp = self.tmp / "made-from.sha256"
        # The kernel must be this environment's Python, whatever kernels the user has installed.
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "JUPYTER_PATH")}
        self.env.update(JUPYTER_DATA_DIR=str(self.tmp / "jupyter-data"),
                        JUPYTER_CONFIG_DIR=str(self.tmp / "jupyter-config"), DLCV_NO_PROGRESS="1")
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def is_current(self) -> bool:
        return self.stamp.is_file() and self.stamp.read_text().strip() == package_hash()

    def _run(self, *cmd, **kw):
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        return proc.stdout

    def make(self) -> None:
        """Make the environment from scratch (removing an old one)."""
        key = package_hash()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        # build the wheel from a copy, so that setuptools' build/ folder never lands in the repository
        source = self.tmp / "dlcv-source"
        shutil.copytree(PACKAGE, source, ignore=IGNORE)
        self._run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", self.tmp / "dist", source)
        wheel = next((self.tmp / "dist").glob("dlcv-*.whl"))
        self._run(sys.executable, "-m", "venv", self.venv)
        # PyPI's PyTorch is the CUDA build (several GB) on Linux; where DLCV_TORCH_INDEX_URL names
        # another index (CI: PyTorch's CPU wheels, as its main venv has), PyTorch comes from there.
        index = os.environ.get("DLCV_TORCH_INDEX_URL")
        if index:
            self._run(self.python, "-m", "pip", "install", "-q", "--no-compile", "torch",
                      "torchvision", "--index-url", index, cwd=self.tmp)
        # ipykernel below 7, as in requirements.txt: 7 loses replies now and then (nbclient hangs)
        self._run(self.python, "-m", "pip", "install", "-q", "--no-compile", wheel, "nbclient", "ipykernel<7",
                  cwd=self.tmp)
        # Byte-compile on all cores instead of pip's one (15 s instead of 22 s on two cores). Without
        # .pyc files (PYTHONDONTWRITEBYTECODE keeps kernels from writing them) every kernel would
        # compile PyTorch's modules again: 3 s more per notebook. A file that does not compile
        # (a vendored module for another Python) is not an error here: imports decide.
        subprocess.run([str(self.python), "-m", "compileall", "-q", "-j", "0", str(self.venv / "lib")],
                       capture_output=True)
        self._run(self.python, "-m", "ipykernel", "install", "--prefix", self.venv, "--name", "python3",
                  env=self.env)
        self.stamp.write_text(key + "\n")

    @contextlib.contextmanager
    def _locked(self):
        """Hold the environment's lock: one process makes, uses or removes it at a time."""
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{self.tmp}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def ensure(self) -> None:
        """Wait for whoever is making it; make it unless a current one is there."""
        with self._locked():
            if not self.is_current():
                self.make()

    def start(self) -> None:
        """``ensure`` in a background thread; ``ready`` waits for it."""
        def target():
            try:
                self.ensure()
            except BaseException as e:  # noqa: BLE001  (handed to whoever waits for it)
                self.error = e

        self._thread = threading.Thread(target=target, daemon=True)
        self._thread.start()

    def ready(self) -> "FreshReader":
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"the fresh reader's environment could not be made: {self.error}")
        return self

    def remove(self) -> None:
        if self._thread is not None:
            self._thread.join()
        with self._locked():
            shutil.rmtree(self.tmp, ignore_errors=True)


if __name__ == "__main__":
    reader = FreshReader()
    if sys.argv[1:] == ["--remove"]:
        reader.remove()
    elif sys.argv[1:] == ["--background"]:   # a process of its own, which outlives this one
        with open(f"{reader.tmp}.log", "w") as log:
            subprocess.Popen([sys.executable, __file__], stdout=log, stderr=log, start_new_session=True)
        print(f"reader_env: making {reader.venv} in the background (log: {reader.tmp}.log)")
    else:
        reader.ensure()
        print(f"reader_env: {reader.venv} is ready")
