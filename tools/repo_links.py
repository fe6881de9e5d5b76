"""Links into the book's repository, from the one place that names it: ``repository`` in
``_config.yml`` (``url``: the GitHub repository; ``branch``: where the generated notebooks are
published). A fork that publishes its own book changes that ``url`` and nothing else.

Used by the Sphinx extension (the ``{colab}`` and ``{binder}`` roles of the pages), by the
notebook generator (the same roles, and the pinned install cell), and by the tests.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
GITHUB = re.compile(r"^https://github\.com/(?P<owner>[\w.-]+)/(?P<name>[\w.-]+?)/?$")


def repository(config: dict | None = None) -> tuple[str, str]:
    """``(url, branch)`` of the repository as ``_config.yml`` names it."""
    if config is None:
        config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = config.get("repository") or {}
    url, branch = str(repo.get("url") or "").rstrip("/"), str(repo.get("branch") or "main")
    if not GITHUB.match(url):
        raise ValueError(f"_config.yml: repository.url must be https://github.com/OWNER/NAME, "
                         f"got {url!r}")
    return url, branch


def colab_url(page: str, url: str, branch: str) -> str:
    """Colab's address of the generated notebook of ``page`` (for example
    ``book/ch02_image_classification``)."""
    m = GITHUB.match(url)
    return (f"https://colab.research.google.com/github/{m['owner']}/{m['name']}/blob/{branch}/"
            f"{page}.ipynb")


def binder_url(page: str, url: str, branch: str) -> str:
    """Binder's address that opens the generated notebook of ``page`` in JupyterLab."""
    m = GITHUB.match(url)
    return (f"https://mybinder.org/v2/gh/{m['owner']}/{m['name']}/{branch}"
            f"?urlpath=lab/tree/{page}.ipynb")


def site_url(config: dict | None = None) -> str:
    """The published site's address, with a trailing slash: ``html.baseurl`` when
    ``_config.yml`` sets one (a custom domain), else GitHub Pages' address of the repository,
    ``https://OWNER.github.io/NAME/``."""
    if config is None:
        config = yaml.safe_load((ROOT / "_config.yml").read_text())
    given = str((config.get("html") or {}).get("baseurl") or "")
    if given:
        return given.rstrip("/") + "/"
    m = GITHUB.match(repository(config)[0])
    return f"https://{m['owner'].lower()}.github.io/{m['name']}/"


LINKS = {"colab": colab_url, "binder": binder_url}
PDF_NAME = "book.pdf"  # the PDF edition, at the site's root (tools/pdf.py writes it)


if __name__ == "__main__":  # the link-check workflow asks for the site's address
    import sys

    what = sys.argv[1] if len(sys.argv) > 1 else "site"
    print({"site": site_url, "repository": lambda: repository()[0]}[what]())
