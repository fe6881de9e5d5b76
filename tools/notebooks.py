"""Generate a Jupyter notebook (.ipynb) for every page of the book, for Colab, Binder and download.

The chapters are MyST Markdown notebooks; Colab opens only ``.ipynb`` files, and MyST's own
syntax (``{glue:text}``, ``{numref}``, ``{eq}``, ``{footcite}``, directives) would show up raw
in a notebook. This script writes ``book/<page>.ipynb`` beside each ``book/<page>.md`` with

* a first code cell that installs the companion package, pinned to the commit the book was
  built from, only when it runs in Google Colab (Binder and local kernels have it installed);
* markdown in plain Jupyter Markdown: glued values replaced by the numbers this build computed
  (read from myst-nb's ``_build/jupyter_execute/<page>.glue.json``), glued figures embedded as
  cell attachments with their numbered captions, equation, figure and chapter numbers as the
  site shows them (read from the built HTML), citations as "(Author Year)" with a reference
  list, admonitions as block quotes, links to other pages pointing at the published site;
* code cells as in the chapter, without outputs.

Run it once before ``jupyter-book build`` (it then writes plain conversions, so that the site's
launch buttons find a sibling ``.ipynb``) and once after (``--final``: every value resolved,
and an unresolved one is an error). The theme's Colab and Binder buttons open these notebooks
on the repository's ``notebooks`` branch, which the deploy workflow updates.
Usage: python tools/notebooks.py [--final]
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import yaml
from bs4 import BeautifulSoup

sys.path.insert(0, str(Path(__file__).resolve().parent))
from book_toc import ROOT, notebook_pages  # noqa: E402
import repo_links  # noqa: E402

BUILD = ROOT / "_build"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO_URL, NOTEBOOK_BRANCH = repo_links.repository(CONFIG)
SITE_URL = repo_links.site_url(CONFIG).rstrip("/")

COLAB_CELL = """\
# Google Colab only: install the book's companion package, at the version this notebook was
# built from (dlcv {version}, commit {short}). Elsewhere this cell does nothing.
import sys
if "google.colab" in sys.modules:
    %pip install -q "dlcv @ git+{repo}@{commit}#subdirectory=code"
"""

# A chapter's first cell starts with this comment; the notebook puts the install cell in its place.
COLAB_MARKER = "# Colab setup"

FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}\s*(?P<arg>.*)$")
ROLE = re.compile(r"\{(?P<role>[\w:-]+)\}`(?P<content>[^`]*)`")
LABEL_LINE = re.compile(r"^\((?P<label>[\w-]+)\)=\s*$")
EQ_END = re.compile(r"^\$\$\s*\((?P<label>[\w-]+)\)\s*$")
ADMONITIONS = {"note": "Note", "tip": "Tip", "warning": "Warning", "important": "Important",
               "seealso": "See also", "caution": "Caution", "hint": "Hint", "attention": "Attention"}


class Unresolved(Exception):
    """A MyST construct this build could not turn into plain notebook Markdown."""



def build_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "main"


def package_version() -> str:
    text = (ROOT / "code" / "src" / "dlcv" / "__init__.py").read_text()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


class References:
    """Author-year labels and reference lines from the book's BibTeX file (via pybtex)."""

    def __init__(self, bibfiles: list[str]):
        from pybtex.database import parse_file
        self.entries = {}
        for bib in bibfiles:
            self.entries.update(parse_file(str(ROOT / bib)).entries)

    def _authors(self, entry, short: bool) -> str:
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [" ".join(p.last_names).replace("{", "").replace("}", "") for p in people]
        if not names:
            return entry.fields.get("organization", entry.fields.get("title", "?")).strip("{}")
        if short:
            return names[0] + (" et al." if len(names) > 2 else f" and {names[1]}" if len(names) == 2 else "")
        return ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1]

    def cite(self, key: str) -> str:
        if key not in self.entries:
            raise Unresolved(f"citation key {key!r} is not in {CONFIG['bibtex_bibfiles']}")
        e = self.entries[key]
        return f"{self._authors(e, short=True)} {e.fields.get('year', 'n.d.')}"

    def line(self, key: str) -> str:
        e = self.entries[key]
        clean = lambda s: re.sub(r"[{}]", "", s)  # noqa: E731
        venue = e.fields.get("journal") or e.fields.get("booktitle") or e.fields.get("publisher") \
            or e.fields.get("howpublished") or e.fields.get("school") or ""
        text = f"{self._authors(e, short=False)} ({e.fields.get('year', 'n.d.')}). {clean(e.fields.get('title', ''))}."
        if venue:
            text += f" *{clean(venue)}*."
        url = e.fields.get("url") or (f"https://doi.org/{e.fields['doi']}" if "doi" in e.fields else "")
        return text + (f" <{url}>" if url else "")


class Page:
    """What the build knows about one page: its glued values and the numbers the site shows."""

    def __init__(self, name: str, final: bool):
        self.name, self.final = name, final
        glue_file = BUILD / "jupyter_execute" / f"{name}.glue.json"
        html_file = BUILD / "html" / f"{name}.html"
        if final and not html_file.is_file():
            raise Unresolved(f"{html_file} is missing: build the book first (make book)")
        self.glue = json.loads(glue_file.read_text()) if glue_file.is_file() else {}
        self.soup = BeautifulSoup(html_file.read_text(encoding="utf-8"), "html.parser") \
            if html_file.is_file() else None
        main = self.soup.find("main") if self.soup else None
        self.numrefs = [s.get_text() for s in main.select("span.std-numref")] if main else []
        self.cited: list[str] = []

    def _need(self, what: str, fallback: str) -> str:
        if self.final:
            raise Unresolved(f"{self.name}: {what}")
        return fallback

    def glue_text(self, content: str) -> str:
        name, _, fmt = content.partition(":")
        out = self.glue.get(name)
        if out is None:
            return self._need(f"no glued value {name!r}", f"`{name}`")
        text = out["data"].get("text/plain", "")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        return format(value, fmt) if fmt else str(value)

    def glue_png(self, name: str) -> str | None:
        out = self.glue.get(name)
        return out["data"].get("image/png") if out else None

    def equation_number(self, label: str) -> str:
        from docutils.nodes import make_id  # Sphinx turns labels into ids this way ("eq-dW" -> "eq-dw")

        label = make_id(label)
        el = self.soup.find(id=f"equation-{label}") if self.soup else None
        eqno = el.find(class_="eqno") if el else None
        if eqno is not None:
            return eqno.get_text().strip().rstrip("¶#").strip()
        # an equation of another page: read the number from this page's link to it
        link = self.soup.select_one(f'a[href$="#equation-{label}"]') if self.soup else None
        if link is not None and link.get_text().strip():
            return link.get_text().strip()
        return self._need(f"no numbered equation {label!r}", "")

    def figure_number(self, label: str) -> str:
        from docutils.nodes import make_id

        el = self.soup.find(id=make_id(label)) if self.soup else None
        num = el.find(class_="caption-number") if el else None
        return num.get_text().strip() if num else self._need(f"no numbered figure {label!r}", "Figure")


def page_title(target: str) -> str:
    html_file = BUILD / "html" / f"{target}.html"
    if html_file.is_file():
        h1 = BeautifulSoup(html_file.read_text(encoding="utf-8"), "html.parser").select_one("main h1")
        if h1:
            return h1.get_text().strip().rstrip("#¶").strip()
    return target.rsplit("/", 1)[-1]


def convert_roles(text: str, page: Page, refs: References) -> str:
    def one(m: re.Match) -> str:
        role, content = m["role"], m["content"]
        target = re.match(r"^(?P<text>.*?)\s*<(?P<target>[^>]+)>$", content, re.S)
        if role in ("glue:text", "glue"):
            return page.glue_text(content)
        if role == "eq":
            return page.equation_number(content)
        if role == "numref":
            if not page.numrefs:
                return page._need(f"numref {content!r} not found in the HTML", content)
            return page.numrefs.pop(0)
        if role == "footcite":
            keys = [k.strip() for k in content.split(",")]
            page.cited += [k for k in keys if k not in page.cited]
            return "(" + "; ".join(refs.cite(k) for k in keys) + ")"
        if role == "pdf":
            return f"[{content}]({SITE_URL}/{repo_links.PDF_NAME})"
        if role in repo_links.LINKS:
            text_, tgt = (target["text"], target["target"]) if target else (content, content)
            address = repo_links.LINKS[role](tgt.strip().lstrip("/"), REPO_URL, NOTEBOOK_BRANCH)
            return f"[{text_}]({address})"
        if role == "doc":
            text_, tgt = (target["text"], target["target"]) if target else ("", content)
            path = (Path(page.name).parent / tgt).as_posix() if not tgt.startswith("/") else tgt.lstrip("/")
            return f"[{text_ or page_title(path)}]({SITE_URL}/{path}.html)"
        return target["text"] if target else content

    return ROLE.sub(one, text)


def parse_options(lines: list[str]) -> tuple[dict, list[str]]:
    options, i = {}, 0
    while i < len(lines) and re.match(r"^:[\w-]+:", lines[i]):
        key, _, value = lines[i][1:].partition(":")
        options[key] = value.strip()
        i += 1
    return options, lines[i:]


def convert_markdown(text: str, page: Page, refs: References, attachments: dict) -> str:
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        line = lines[i]
        m = FENCE.match(line)
        if m:
            fence = m["fence"]
            j = i + 1
            depth = 0
            while j < len(lines):
                inner = FENCE.match(lines[j])
                if inner and inner["fence"][0] == fence[0] and len(inner["fence"]) == len(fence):
                    depth += 1
                elif lines[j].strip() == fence and depth == 0:
                    break
                elif lines[j].strip() == fence:
                    depth -= 1
                j += 1
            options, body = parse_options(lines[i + 1:j])
            out += convert_directive(m["name"], m["arg"].strip(), options, "\n".join(body), page, refs,
                                     attachments).split("\n")
            i = j + 1
            continue
        lab = LABEL_LINE.match(line)
        if lab:
            out.append(f'<a id="{lab["label"]}"></a>')
        elif EQ_END.match(line):
            number = page.equation_number(EQ_END.match(line)["label"])
            out.append(f"\\tag{{{number.strip('()')}}}\n$$" if number else "$$")
        else:
            out.append(convert_roles(line, page, refs))
        i += 1
    return "\n".join(out)


def quote(text: str) -> str:
    return "\n".join(("> " + l) if l.strip() else ">" for l in text.split("\n"))


def convert_directive(name: str, arg: str, options: dict, body: str, page: Page, refs: References,
                      attachments: dict) -> str:
    if name == "glue:figure":
        png = page.glue_png(arg)
        if png is None:
            return page._need(f"no glued figure {arg!r}", f"*(figure `{arg}`: run the code above)*")
        attachments[f"{arg}.png"] = {"image/png": png}
        number = page.figure_number(options["name"]) if "name" in options else ""
        alt = options.get("alt", arg).replace("]", ")").replace("[", "(")
        caption = convert_markdown(body, page, refs, attachments).strip()
        lead = f"**{number}.** " if number else ""
        return f"![{alt}](attachment:{arg}.png)\n\n{lead}{caption}"
    if name == "footbibliography":
        if not page.cited:
            return ""
        return "\n".join(f"- {refs.line(k)}" for k in page.cited)
    if name == "math":
        return "$$\n" + body + "\n$$"
    inner = convert_markdown(body, page, refs, attachments)
    if name == "admonition":
        return quote(f"**{arg}**\n\n{inner}")
    if name in ADMONITIONS or name == "dropdown":
        title = arg or ADMONITIONS.get(name, "")
        return quote((f"**{title}**\n\n" if title else "") + inner)
    if arg:
        raise Unresolved(f"{page.name}: directive {{{name}}} is not converted for notebooks")
    return inner


def notebook_for(name: str, final: bool, refs: References, commit: str, version: str):
    source = ROOT / f"{name}.md"
    nb = jupytext.read(source)
    page = Page(name, final)
    cells = [nbformat.v4.new_code_cell(COLAB_CELL.format(version=version, short=commit[:7],
                                                         repo=REPO_URL, commit=commit).rstrip())]
    cells[0].metadata["tags"] = ["colab-setup"]
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            attachments: dict = {}
            cell.source = convert_markdown(cell.source, page, refs, attachments)
            if attachments:
                cell.attachments = attachments
            if not cell.source.strip():
                continue
        else:
            if cell.source.startswith(COLAB_MARKER):
                continue  # the chapter's placeholder for the Colab cell: replaced by the one above
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    nb.cells = cells
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["colab"] = {"provenance": [], "name": f"{Path(name).name}.ipynb"}
    nbformat.validate(nb)
    if final and page.numrefs:
        raise Unresolved(f"{name}: the HTML has {len(page.numrefs)} more numbered references than the source")
    return nb


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--final", action="store_true",
                        help="after the build: resolve every glued value and number, or fail")
    args = parser.parse_args(argv)
    refs = References(CONFIG.get("bibtex_bibfiles", []))
    commit, version = build_commit(), package_version()
    written = 0
    for name in notebook_pages():
        try:
            nb = notebook_for(name, args.final, refs, commit, version)
        except Unresolved as err:
            print(f"notebooks: {err}", file=sys.stderr)
            return 1
        nbformat.write(nb, ROOT / f"{name}.ipynb")
        written += 1
    print(f"notebooks: wrote {written} notebooks{' (final)' if args.final else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
