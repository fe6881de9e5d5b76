import os

import pytest

os.environ.setdefault("DLCV_NO_PROGRESS", "1")


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """An empty dataset cache, so a test cannot touch the real one."""
    monkeypatch.setenv("DLCV_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"
