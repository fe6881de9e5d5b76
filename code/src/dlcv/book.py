"""Hand computed values to the book's prose, in a build and in a reader's kernel alike.

The chapters pass every number they quote to myst-nb's ``glue``, which the book's prose then
inserts with ``{glue:text}``. Readers who run a chapter's notebook in Colab or a fresh
environment may not have myst-nb: there ``glue`` does nothing with a value (the notebook's
text already holds the number the book computed), and ``glue_figure`` shows the figure under
the cell, so that a reader who re-runs a cell still sees what it drew.
"""
from __future__ import annotations

from typing import Any

try:
    from myst_nb import glue as _myst_glue
except ImportError:  # a reader's kernel without myst-nb
    _myst_glue = None

__all__ = ["glue", "HAVE_MYST_NB"]

HAVE_MYST_NB = _myst_glue is not None


def glue(name: str, value: Any, display: bool = False) -> None:
    """``myst_nb.glue(name, value, display)`` when myst-nb is installed; else show ``value``
    if ``display`` is true and do nothing more. Unlike myst-nb's, ``display`` is off by
    default: the book glues a value to quote it in the prose, and the cell prints what a
    reader should see.

    First used in section 1.2, *Two threads: seeing and learning*.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"glue needs a non-empty name, got {name!r}")
    if _myst_glue is not None:
        _myst_glue(name, value, display=display)
    elif display:
        from IPython.display import display as show
        show(value)
