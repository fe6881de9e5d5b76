"""A small Sphinx extension that keeps the book's pages self-contained and free of console errors.

* Jupyter Book always loads sphinx-thebe, which (even with thebe off) adds its configuration
  script twice, so every page throws "Identifier 'THEBE_JS_URL' has already been declared",
  and names a CDN URL. The book launches code in Colab and Binder, not thebe, so this removes
  thebe's scripts from every page.
* pydata-sphinx-theme logs "Got invalid theme mode" when no default mode is configured;
  this sets it to "auto" (follow the reader's system).
* The roles ``{colab}`text <book/page>``` and ``{binder}`text <book/page>``` link to a
  page's generated notebook in Colab or on Binder, built from ``repository`` in _config.yml
  (tools/repo_links.py), so that no page names the repository itself; and the site's
  canonical address (``html_baseurl``) is GitHub Pages' address of that repository unless
  _config.yml sets ``html: baseurl`` (a custom domain). ``{pdf}`text``` links to the PDF
  edition at the site's root.
* Accessibility (WCAG 2.1 AA, checked with axe-core by tests/test_browser.py): after the
  build, every page is mended where the theme's markup fails a rule. A control's accessible
  name must contain its visible text (WCAG 2.5.3), so the search buttons and the code-cell
  toggles lose the aria-labels that differ from what they show ("Search" against
  "Search Ctrl+K", "Toggle hidden content" against "Show code cell content"), and the colour-mode
  button's icons, decorative, are hidden from assistive technology and lose their titles;
  every piece of content
  must sit in a landmark, so the primary sidebar (the book's title and table of contents)
  becomes a named complementary landmark; the list of footnotes, an ``aside`` inside the main
  landmark, is no longer a landmark itself; and the site's entry page, a redirect, gets a
  language, a title, a heading and a link.
Enabled in _config.yml under ``sphinx: local_extensions``.
"""
from __future__ import annotations

import html as html_lib
from pathlib import Path

from docutils import nodes
from sphinx.util.nodes import split_explicit_title

import repo_links


def _clean_page(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if scripts is not None:
        def is_thebe(js) -> bool:
            name = str(getattr(js, "filename", js) or "")
            body = str(getattr(js, "attributes", {}).get("body", ""))
            return "thebe" in name or "THEBE_JS_URL" in body
        context["script_files"] = [js for js in scripts if not is_thebe(js)]
    if not context.get("default_mode"):
        context["default_mode"] = "auto"


def _repository(config) -> dict:
    """_config.yml's ``repository``, as Jupyter Book hands it to Sphinx (theme options)."""
    theme = config.html_theme_options
    return {"repository": {"url": theme.get("repository_url", ""),
                           "branch": theme.get("repository_branch")}}


def _link_role(kind: str):
    def role(name, rawtext, text, lineno, inliner, options=None, content=None):
        has_title, title, page = split_explicit_title(text)
        url, branch = repo_links.repository(_repository(inliner.document.settings.env.config))
        target = repo_links.LINKS[kind](page.strip().lstrip("/"), url, branch)
        return [nodes.reference(rawtext, title if has_title else page, refuri=target)], []
    return role


def _derive_baseurl(app, config):
    """The site's canonical address from the repository when _config.yml gives none."""
    if not config.html_baseurl:
        config.html_baseurl = repo_links.site_url(_repository(config))


# (what the theme writes, what the page gets): plain string replacements, each checked to still
# match by tests/test_site.py, so that a theme upgrade that changes its markup is noticed.
ACCESSIBILITY_MENDS = [
    ('class="btn search-button-field search-button__button pst-js-only" title="Search" '
     'aria-label="Search"',
     'class="btn search-button-field search-button__button pst-js-only" title="Search"'),
    ('<summary aria-label="Toggle hidden content">', "<summary>"),
    ('<i class="theme-switch fa-solid', '<i aria-hidden="true" class="theme-switch fa-solid'),
    # the icons' titles count as the button's visible text for axe-core 4.14, which then finds
    # it missing from the name "Color mode"; the hidden icons need no title
    ('data-mode="light" title="Light"', 'data-mode="light"'),
    ('data-mode="dark"  title="Dark"', 'data-mode="dark"'),
    ('data-mode="auto"  title="System Settings"', 'data-mode="auto"'),
    ('<div id="pst-primary-sidebar" class="bd-sidebar-primary bd-sidebar">',
     '<div id="pst-primary-sidebar" class="bd-sidebar-primary bd-sidebar" role="complementary" '
     'aria-label="Book contents">'),
    ('<aside class="footnote-list', '<aside role="none" class="footnote-list'),
    # the sidebar's toggle of a chapter's section pages (after the mend above strips the
    # theme's label from every summary) shows only an icon: it needs a name
    ('<summary><span class="toctree-toggle"',
     '<summary aria-label="Show or hide the sections"><span class="toctree-toggle"'),
]

ENTRY_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Refresh" content="0; url={target}">
<title>{title}</title>
</head>
<body>
<main>
<h1>{title}</h1>
<p><a href="{target}">Open the book</a></p>
</main>
</body>
</html>
"""


def mend_page(text: str) -> str:
    for theirs, ours in ACCESSIBILITY_MENDS:
        text = text.replace(theirs, ours)
    return text


def _mend_site(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    for page in out.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        mended = mend_page(text)
        if mended != text:
            page.write_text(mended, encoding="utf-8")
    root = app.config.root_doc
    if root != "index":  # write the entry page before sphinx-external-toc writes a bare one
        title = html_lib.escape(app.config.html_title or app.config.project)
        (out / "index.html").write_text(ENTRY_PAGE.format(target=f"{root}.html", title=title),
                                        encoding="utf-8")


def _pdf_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """``{pdf}`text```: a link to the PDF edition, relative to the page (so that it works on
    the published site and in a local build alike, once `make pdf` has run)."""
    depth = inliner.document.settings.env.docname.count("/")
    return [nodes.reference(rawtext, text, refuri="../" * depth + repo_links.PDF_NAME)], []


def setup(app):
    app.add_role("pdf", _pdf_role)
    app.connect("config-inited", _derive_baseurl)
    app.connect("build-finished", _mend_site, priority=400)
    app.connect("html-page-context", _clean_page, priority=900)
    for kind in repo_links.LINKS:
        app.add_role(kind, _link_role(kind))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
