"""Interactive figures that work with a kernel (Jupyter, Colab, Binder) and without one (the website).

``interactive_figure(draw, k=[1, 3, 5], distance=["L1", "L2"])`` calls ``draw(k=..., distance=...)``
(which returns a matplotlib figure) once for every combination of values, and returns an
object that displays as

* live ipywidgets (a slider for numbers, a menu for anything else) when a kernel runs it, and
* on the static site, a self-contained HTML control that swaps the precomputed frames with a
  few lines of inline JavaScript, so the knob still turns with no kernel behind the page.

Both come in one MIME bundle; the book's ``_config.yml`` tells myst-nb to prefer the HTML.
Frames are PNGs at ``dpi`` (72 by default), so a figure with a dozen frames weighs a few
hundred kB. At the smoke scale (``dlcv.runtime``) only the first and the last combination are
drawn: the check is that ``draw`` works at both ends of its range, not the frames in between.
"""
from __future__ import annotations

import base64
import html
import io
import itertools
import json
import uuid
from typing import Any, Callable, Sequence

import matplotlib.pyplot as plt

from . import runtime

__all__ = ["interactive_figure", "InteractiveFigure"]

MAX_FRAMES = 64


def _is_numeric(values) -> bool:
    """Numbers get a slider; anything else (strings, booleans) gets a menu."""
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _png(fig, dpi: int | None = None) -> bytes:
    """The figure as PNG bytes (``dpi=None``: matplotlib's ``savefig.dpi``), closed afterwards
    (an open figure would also be drawn)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _render(fig, dpi: int) -> str:
    return "data:image/png;base64," + base64.b64encode(_png(fig, dpi)).decode()


class InteractiveFigure:
    """Precomputed frames of ``draw`` over a grid of parameter values (see module docstring)."""

    def __init__(self, draw: Callable[..., Any], params: dict[str, Sequence], dpi: int = 72,
                 alt: str = "interactive figure"):
        if not 1 <= len(params) <= 3:
            raise ValueError(f"interactive_figure takes one to three parameters, got {len(params)}")
        for name, values in params.items():
            if isinstance(values, (str, bytes)) or len(values) == 0:
                raise ValueError(f"parameter {name!r} needs a non-empty list of values, got {values!r}")
        n = 1
        for values in params.values():
            n *= len(values)
        if n > MAX_FRAMES:
            raise ValueError(f"{n} frames is more than {MAX_FRAMES}; offer fewer values")
        self.draw, self.params, self.dpi, self.alt = draw, {k: list(v) for k, v in params.items()}, dpi, alt
        self.frames: dict[str, str] = {}
        combos = list(itertools.product(*[range(len(v)) for v in self.params.values()]))
        if runtime.is_cut():
            combos = list(dict.fromkeys([combos[0], combos[-1]]))
        for combo in combos:
            kwargs = {name: self.params[name][i] for name, i in zip(self.params, combo)}
            fig = draw(**kwargs)
            if fig is None or not hasattr(fig, "savefig"):
                raise TypeError("draw(...) must return a matplotlib Figure")
            self.frames[",".join(map(str, combo))] = _render(fig, dpi)

    # ---------------------------------------------------------------- static HTML
    def html(self) -> str:
        """The static widget: a slider (numbers) or a menu (anything else) per parameter, and the
        frame. Accessible: each control is named by its parameter and is a native, keyboard-
        operable element; a slider announces the value it shows (``aria-valuetext``), not its
        position; the frame's alt text is ``alt`` followed by the current values, updated as the
        controls move."""
        uid = "dlcv-" + uuid.uuid4().hex[:8]
        controls, first_said = [], []
        for j, (name, values) in enumerate(self.params.items()):
            label = html.escape(str(name))
            shown = html.escape(str(values[0]))
            first_said.append(f"{name} = {values[0]}")
            if _is_numeric(values):
                ticks = " ".join(html.escape(str(v)) for v in values)
                controls.append(
                    f'<label style="margin-right:1.5em">{label} = <output data-dlcv-out="{j}">'
                    f'{shown}</output><br><input type="range" min="0" '
                    f'max="{len(values) - 1}" step="1" value="0" data-dlcv-param="{j}" '
                    f'data-name="{label}" aria-label="{label}" aria-valuetext="{shown}" '
                    f'data-values=\'{html.escape(json.dumps([str(v) for v in values]))}\' '
                    f'style="width:14em"><br><small aria-hidden="true">{ticks}</small></label>')
            else:
                opts = "".join(f'<option value="{i}">{html.escape(str(v))}</option>' for i, v in enumerate(values))
                controls.append(f'<label style="margin-right:1.5em">{label} '
                                f'<select data-dlcv-param="{j}" data-name="{label}">{opts}</select></label>')
        first = next(iter(self.frames))
        script = f"{_script()}(document.getElementById('{uid}'));"
        alt = f"{self.alt} ({', '.join(first_said)})"
        return (f'<div id="{uid}" class="dlcv-interactive" data-alt="{html.escape(self.alt)}">'
                f'<div style="margin-bottom:.5em">{"".join(controls)}</div>'
                f'<img src="{self.frames[first]}" alt="{html.escape(alt)}" style="max-width:100%">'
                f'<script type="application/json">{json.dumps(self.frames)}</script>'
                f'<script>{script}</script></div>')

    # ---------------------------------------------------------------- live widgets
    def widget(self):
        import ipywidgets as W

        def control(name, values):
            numeric = _is_numeric(values)
            if numeric and len(values) > 1:
                return W.SelectionSlider(options=values, value=values[0], description=str(name),
                                         continuous_update=False)
            return W.Dropdown(options=values, value=values[0], description=str(name))

        controls = {name: control(name, values) for name, values in self.params.items()}
        # An Image widget, not an Output widget that captures display(fig): a notebook client
        # executing the cell (the book's build, nbclient) then has no captured output to track,
        # which sometimes left it waiting until the cell timeout (nbclient issue #312).
        image = W.Image(format="png")

        def redraw(_=None):
            fig = self.draw(**{n: c.value for n, c in controls.items()})
            image.value = _png(fig)

        for c in controls.values():
            c.observe(redraw, names="value")
        redraw()
        return W.VBox([W.HBox(list(controls.values())), image])

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = {"text/html": self.html(), "text/plain": f"<interactive figure: {self.alt}>"}
        try:
            widget_bundle = self.widget()._repr_mimebundle_()
        except Exception:  # no ipywidgets or no kernel comm: the HTML alone still works
            widget_bundle = None
        if widget_bundle:
            data = widget_bundle[0] if isinstance(widget_bundle, tuple) else widget_bundle
            bundle.update({k: v for k, v in data.items() if k != "text/plain"})
        return bundle


def _script() -> str:
    """The controls' JavaScript (``static/interactive.js``, package data): a function of the
    figure's root element, without its comment lines."""
    from importlib.resources import files

    text = files("dlcv").joinpath("static/interactive.js").read_text(encoding="utf-8")
    return "\n".join(line for line in text.splitlines() if not line.startswith("//")).strip()


def interactive_figure(draw: Callable[..., Any], dpi: int = 72, alt: str = "interactive figure",
                       **params: Sequence) -> InteractiveFigure:
    """An interactive figure over one to three parameters (at most MAX_FRAMES combinations);
    see the module docstring.

    First used in section 1.3, *ImageNet and its challenge*.
    """
    return InteractiveFigure(draw, params, dpi=dpi, alt=alt)
