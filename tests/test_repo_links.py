"""One place names the repository (issue: a fork that publishes its own book changes one line):
``repository: url`` in _config.yml. Everything else derives from it through tools/repo_links.py:
the Colab and Binder links of the pages ({colab} and {binder} roles), the generated notebooks'
install cell, the site's address and the link-check workflow. CITATION.cff cites the original
book and is checked for the fields the Citation File Format requires."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import yaml

from test_site import ROOT

spec = importlib.util.spec_from_file_location("repo_links", ROOT / "tools" / "repo_links.py")
repo_links = importlib.util.module_from_spec(spec)
spec.loader.exec_module(repo_links)
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
URL, BRANCH = repo_links.repository(CONFIG)
OWNER_NAME = URL.removeprefix("https://github.com/")
# files that may name the repository: the configuration, and the citation of the original book
ALLOWED = {"_config.yml", "CITATION.cff"}


def test_no_other_file_names_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    owner = OWNER_NAME.split("/")[0]
    naming = []
    for f in files:
        path = ROOT / f
        if f in ALLOWED or not path.is_file() or path.suffix in {".png", ".jpg", ".svg", ".gz"}:
            continue
        text = path.read_text(errors="ignore")
        if OWNER_NAME in text or f"{owner}.github.io" in text:
            naming.append(f)
    assert naming == [], f"these files name the repository; derive it from _config.yml: {naming}"


def test_links_follow_the_configuration():
    fork = {"repository": {"url": "https://github.com/Someone/my-book/", "branch": "nb"}}
    url, branch = repo_links.repository(fork)
    assert (url, branch) == ("https://github.com/Someone/my-book", "nb")
    assert repo_links.colab_url("book/ch02", url, branch) == \
        "https://colab.research.google.com/github/Someone/my-book/blob/nb/book/ch02.ipynb"
    assert repo_links.binder_url("book/ch02", url, branch) == \
        "https://mybinder.org/v2/gh/Someone/my-book/nb?urlpath=lab/tree/book/ch02.ipynb"
    assert repo_links.site_url(fork) == "https://someone.github.io/my-book/"
    custom = {**fork, "html": {"baseurl": "https://book.example.org"}}
    assert repo_links.site_url(custom) == "https://book.example.org/"
    with pytest.raises(ValueError, match="repository.url must be https://github.com/OWNER/NAME"):
        repo_links.repository({"repository": {"url": "gitlab.com/x/y"}})


def test_command_line_gives_the_site_for_the_link_check():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "repo_links.py"), "site"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == repo_links.site_url(CONFIG)
    workflow = (ROOT / ".github" / "workflows" / "linkcheck.yml").read_text()
    assert "python tools/repo_links.py site" in workflow


def test_the_built_pages_link_to_the_configured_repository():
    intro = (ROOT / "_build" / "html" / "book" / "intro.html")
    if not intro.exists():
        pytest.skip("no built site (make book)")
    html = intro.read_text()
    page = "book/ch02_image_classification"
    assert f'href="{repo_links.colab_url(page, URL, BRANCH)}"' in html
    assert f'href="{repo_links.binder_url(page, URL, BRANCH)}"' in html
    canonical = repo_links.site_url(CONFIG) + "book/intro.html"
    assert f'<link rel="canonical" href="{canonical}"' in html


def test_citation_file():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert cff["message"] and cff["authors"] and cff["title"] == CONFIG["title"]
    assert cff["preferred-citation"]["type"] == "book"
    assert cff["preferred-citation"]["title"] == CONFIG["title"]
    package = (ROOT / "code" / "pyproject.toml").read_text()
    assert f'version = "{cff["version"]}"' in package
    assert set(cff["license"]) == {"CC-BY-SA-4.0", "MIT"}
