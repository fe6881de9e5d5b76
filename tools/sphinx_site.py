"""A small Sphinx extension that keeps the book's pages self-contained and free of console errors.

* Jupyter Book always loads sphinx-thebe, which (even with thebe off) adds its configuration
  script twice, so every page throws "Identifier 'THEBE_JS_URL' has already been declared",
  and names a CDN URL. The book launches code in Colab and Binder, not thebe, so this removes
  thebe's scripts from every page.
* pydata-sphinx-theme logs "Got invalid theme mode" when no default mode is configured;
  this sets it to "auto" (follow the reader's system).
Enabled in _config.yml under ``sphinx: local_extensions``.
"""
from __future__ import annotations


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


def setup(app):
    app.connect("html-page-context", _clean_page, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
