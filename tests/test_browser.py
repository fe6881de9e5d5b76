"""The built site in a real browser (headless Chromium driven by Playwright; run after `make book`).

Every page must load with no failed request, no request to any host but the local server (the
site works offline), no console error; math must be typeset by the site's own MathJax; every
static slider of dlcv.interactive, moved from the keyboard, must change its frame, its alt text and
the value it announces; no code or output block may
need horizontal scrolling on a 1280-pixel screen; axe-core must find no violation of WCAG 2.0
and 2.1 at levels A and AA (nor of its best practices, nor of WCAG 2.5.3, a control's name
containing its visible text). A control page that breaks each rule checks that the checker
can fail.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from test_site import HTML, PAGES, ROOT
from site_server import serve  # noqa: I001  (tools/, put on the path by test_site)

ALL_PAGES = ["index.html", "search.html", "genindex.html"] + [f"{p}.html" for p in PAGES]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCRIPT = ROOT / "tests" / "browser" / "check_site.mjs"


def most_code_page(directory: Path, pages: list[str]) -> str:
    """The page with the most highlighted code blocks: the one on which the checker judges the
    contrast of every code token (the code's colours come from one stylesheet; the other pages
    check everything but their code, which took most of axe's time)."""
    def blocks(page):
        return (directory / page).read_text(encoding="utf-8").count('class="highlight')
    return max(pages, key=blocks)


def run_checker(directory: Path, pages: list[str]) -> dict[str, dict]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's `chromium` (apt-get install chromium) "
                    "or set CHROMIUM to a Chromium binary")
    if not (ROOT / "node_modules" / "playwright-core").is_dir():
        pytest.fail("node_modules/playwright-core is missing: run `npm ci` (make install does)")
    server = serve(directory)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        env = {**os.environ, "CHROMIUM": CHROMIUM,
               "DLCV_CODE_CONTRAST_PAGE": most_code_page(directory, pages)}
        proc = subprocess.run(["node", str(SCRIPT), base, *pages], capture_output=True, text=True,
                              timeout=600, cwd=ROOT, env=env)
    finally:
        server.shutdown()
    assert proc.returncode == 0, f"browser checker failed:\n{proc.stderr[-3000:]}"
    return {r["page"]: r for r in json.loads(proc.stdout)}


@pytest.fixture(scope="module")
def results():
    assert (HTML / "index.html").is_file(), "run `make book` first"
    return run_checker(HTML, ALL_PAGES)


@pytest.mark.parametrize("page", ALL_PAGES)
def test_page_loads_cleanly_offline(results, page):
    r = results[page]
    assert not r["external"], f"{page} requests other hosts: {r['external'][:5]}"
    assert not r["failed"], f"{page} has failed requests: {r['failed'][:5]}"
    assert not r["console"], f"{page} logs console errors: {r['console'][:5]}"


@pytest.mark.parametrize("page", [f"{p}.html" for p in PAGES])
def test_math_is_typeset(results, page):
    soup = BeautifulSoup((HTML / page).read_text(encoding="utf-8"), "html.parser")
    has_math = bool(soup.select("main .math"))
    r = results[page]
    assert not r["rawTex"], f"{page}: raw TeX left on the page: {r['rawTex'][:3]}"
    if has_math:
        assert r["math"] > 0, f"{page} has math but MathJax typeset none of it"
        assert r["spokenMath"] == r["math"], (
            f"{page}: {r['math'] - r['spokenMath']} formulas without assistive MathML, which "
            "screen readers read")


@pytest.mark.parametrize("page", [f"{p}.html" for p in PAGES])
def test_no_horizontal_scrolling_at_1280(results, page):
    """Code is black-formatted at 88 columns and set at 12 px (_static/dlcv.css), so that it
    fits; printed output wraps."""
    assert not results[page]["overflow"], (
        f"{page}: blocks wider than the column at 1280 px: {results[page]['overflow'][:3]}")


def test_entry_page_is_checked_without_leaving_it(results):
    """The entry page redirects at once to the first chapter (a meta refresh), which would
    navigate away while axe reads it: the checker serves it without the refresh, so it is
    judged as it stands, every time; its target is checked on its own."""
    assert results["index.html"]["redirects"]
    assert not any(results[p]["redirects"] for p in ALL_PAGES if p != "index.html")


@pytest.mark.parametrize("page", ALL_PAGES)
def test_page_passes_axe_wcag_21_aa(results, page):
    """tools/sphinx_site.py mends what the theme's markup fails (its docstring says what)."""
    assert not results[page]["axe"], f"{page}: accessibility violations: {results[page]['axe']}"


def test_static_sliders_change_the_frame(results):
    sliders = [(page, s) for page, r in results.items() for s in r["sliders"]]
    assert sliders, "no page has a static slider (dlcv.interactive); chapter 2 should"
    dead = [f"{page} slider {s['index']}" for page, s in sliders if not s["changed"]]
    assert not dead, f"sliders that do not change their frame from the keyboard: {dead}"
    mute = [f"{page} slider {s['index']}" for page, s in sliders
            if not (s["altChanged"] and s["saysValue"])]
    assert not mute, f"sliders whose frame's alt text or announced value does not follow: {mute}"


def test_checker_catches_a_broken_page(tmp_path):
    (tmp_path / "bad.html").write_text(
        "<html><body><main><p>Raw TeX: $$\\frac{a}{b}$$</p>"
        '<img src="https://example.com/x.png" alt="x"><img src="missing.png" alt="y">'
        '<div class="dlcv-interactive"><input type="range" min="0" max="2" value="0"><img src="a.png" alt="z"></div>'
        "<pre style='width:200px;overflow:auto'>" + "wide_" * 100 + "</pre>"
        "<button aria-label='Close'>Open the menu</button><input type='text'>"
        "<script>console.error('boom')</script></main></body></html>")
    r = run_checker(tmp_path, ["bad.html"])["bad.html"]
    assert r["external"] and any("example.com" in u for u in r["external"])
    assert any("missing.png" in u for u in r["failed"])
    assert any("boom" in m for m in r["console"])
    assert r["rawTex"] and r["math"] == 0
    assert r["sliders"] == [{"index": 0, "changed": False, "altChanged": False, "saysValue": False}]
    assert r["overflow"] and "too wide" in r["overflow"][0]
    found = {v.split()[0] for v in r["axe"]}
    assert {"label-content-name-mismatch", "label", "html-has-lang", "document-title"} <= found


def test_code_contrast_is_judged_on_the_page_with_most_code(tmp_path):
    """Faint code is caught on the page with the most code blocks; on the others only their
    prose is judged for contrast, and faint prose is still caught."""
    faint_code = '<div class="highlight"><pre><span style="color:#ddd">x = 1</span></pre></div>'
    head = "<html lang='en'><head><title>t</title></head><body><main><h1>t</h1>"
    (tmp_path / "a.html").write_text(head + faint_code * 2 + "</main></body></html>")
    (tmp_path / "b.html").write_text(head + faint_code + "<p style='color:#ddd'>faint prose</p>"
                                     "</main></body></html>")
    assert most_code_page(tmp_path, ["b.html", "a.html"]) == "a.html"
    r = run_checker(tmp_path, ["b.html", "a.html"])
    assert r["a.html"]["codeContrast"] and not r["b.html"]["codeContrast"]
    contrast = {page: [v for v in r[page]["axe"] if v.startswith("color-contrast")] for page in r}
    assert contrast["a.html"] and "(2x" in contrast["a.html"][0], contrast
    assert contrast["b.html"] and "(1x" in contrast["b.html"][0] and "p" in contrast["b.html"][0], contrast
