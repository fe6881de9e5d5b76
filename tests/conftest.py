"""Shared set-up of the site checks: the fresh reader's environment (tools/reader_env.py).

When a run selects a test that needs it, the environment is taken over from ``make test`` (which
starts making it in the background before the package's tests) or, when missing or stale, made
in a background thread from the end of collection on, while the HTML, browser and workflow checks
run; the tests that need it run last, and the environment is deleted when the session ends
(after the notebooks' background runs, tools/reader_runs.py, if any are still going).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import reader_runs  # noqa: E402
from reader_env import FreshReader  # noqa: E402

_reader: FreshReader | None = None


def _needs_reader(item) -> bool:
    return "fresh_reader" in getattr(item, "fixturenames", ())


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """The tests that run the notebooks go last, so that the environment is made meanwhile."""
    items.sort(key=_needs_reader)  # stable: every other test keeps its place


def pytest_collection_finish(session):
    global _reader
    if not session.config.option.collectonly and any(_needs_reader(item) for item in session.items):
        _reader = FreshReader()
        _reader.start()


def pytest_sessionfinish(session):
    if _reader is not None:
        with reader_runs.locked(_reader):   # background runs (tools/reader_runs.py) end first
            _reader.remove()


@pytest.fixture(scope="session")
def fresh_reader() -> FreshReader:
    """The fresh reader's environment, ready."""
    if _reader is None:
        pytest.skip("no fresh reader was started")
    return _reader.ready()
