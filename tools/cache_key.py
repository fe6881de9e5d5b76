"""Invalidate the execution cache when the companion package or the requirements change.

jupyter-cache keys a notebook on its code cells only, so an edit to ``code/`` would leave
stale outputs in the book. This script hashes ``code/src``, ``code/pyproject.toml`` and
``requirements.txt``; when the hash differs from the one stored beside the cache, it deletes
the cache so that the next build re-executes every chapter. Prose edits change nothing here.
Usage: python tools/cache_key.py [CACHE_DIR]   (default _build/.jupyter_cache)
"""
from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INPUTS = [ROOT / "requirements.txt", ROOT / "code" / "pyproject.toml", ROOT / "code" / "src"]


def package_hash() -> str:
    h = hashlib.sha256()
    for item in INPUTS:
        files = sorted(p for p in item.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                       and p.suffix != ".pyc") if item.is_dir() else [item]
        for f in files:
            h.update(str(f.relative_to(ROOT)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def main(cache: Path) -> None:
    stamp = cache.parent / "dlcv-package.sha256"
    key = package_hash()
    old = stamp.read_text().strip() if stamp.exists() else None
    if old != key:
        if cache.exists():
            print(f"cache_key: package or requirements changed; clearing {cache}")
            shutil.rmtree(cache)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(key + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "_build" / ".jupyter_cache")
