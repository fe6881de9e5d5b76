"""Back-links from the package to the book: each public function and class of ``dlcv`` names, at
the end of its docstring, the section of the book where a chapter first uses it ("First used
in section 13.6, *Evaluating a detector: average precision*."), as d2l's functions say where
they are defined. A reader of ``help(dlcv.boxes.nms)`` finds the prose that teaches it.

The map is read from the chapters themselves: every code cell of every chapter in ``_toc.yml``
is parsed, the chapter's imports of ``dlcv`` followed (``from dlcv import boxes``,
``import dlcv.runtime as rt``, ``from dlcv.plotting import image_row``), and each use of a
public name recorded with the section (``##`` heading) it sits under; a use before the first
section is "at the start of chapter N". Names no chapter uses get no line.

Usage: python tools/backlinks.py [--write]   (without --write: report stale docstrings, exit 1
if any). ``tests/test_backlinks.py`` runs the check, so an edit that moves a first use (or a new
public function a chapter uses) asks for ``--write``.
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from book_toc import ROOT, section_numbers, toc_pages  # noqa: E402

PACKAGE = ROOT / "code" / "src" / "dlcv"
CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```", re.S | re.M)
LINE = re.compile(r"^    (First used (in section [\d.]+, \*[^*]+\*|at the start of chapter \d+)\.)$", re.M)


def public_names() -> dict[str, set[str]]:
    """``{module: {public function and class names}}`` from each module's ``__all__``."""
    out = {}
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        exported = set()
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                exported = {e.value for e in node.value.elts}
        defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        out[path.stem] = exported & defined
    return out


def _cell_source(block: str) -> str:
    lines = block.split("\n")
    head = 0
    if lines and lines[0].strip() == "---":
        head = lines.index("---", 1) + 1
    while head < len(lines) and lines[head].startswith(":"):
        head += 1
    return "\n".join(lines[head:])


def first_uses() -> dict[tuple[str, str], str]:
    """``{(module, name): "in section 13.6, *Title*" or "at the start of chapter 13"}``."""
    names = public_names()
    numbers = section_numbers()
    found: dict[tuple[str, str], str] = {}
    for page in toc_pages():
        if page not in numbers:
            continue
        number = numbers[page]
        text = (ROOT / f"{page}.md").read_text(encoding="utf-8")
        title = re.search(r"^# (.+)$", text, re.M)
        # where each section starts (## headings outside code), in order
        sections, pos = [], 0
        for m in re.finditer(r"^## (.+)$", text, re.M):
            if text.count("```", 0, m.start()) % 2 == 0:
                sections.append((m.start(), m.group(1).strip()))
        aliases: dict[str, str] = {}        # local name -> module ("dlcv" for the package itself)
        imported: dict[str, tuple[str, str]] = {}    # local name -> (module, name)
        for cell in CELL.finditer(text):
            where = [s for s in sections if s[0] < cell.start()]
            if where:
                place = f"in section {number}.{len(where)}, *{where[-1][1]}*"
            elif "." in number:     # a section's own page, before its first subsection
                place = f"in section {number}, *{title[1].strip()}*"
            else:
                place = f"at the start of chapter {number}"
            try:
                tree = ast.parse(_cell_source(cell.group(1)))
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    for a in node.names:
                        if a.name == "dlcv" or a.name.startswith("dlcv."):
                            parts = a.name.split(".")
                            if a.asname:
                                aliases[a.asname] = parts[1] if len(parts) > 1 else "dlcv"
                            else:
                                aliases["dlcv"] = "dlcv"
                elif isinstance(node, ast.ImportFrom) and node.module and \
                        (node.module == "dlcv" or node.module.startswith("dlcv.")):
                    for a in node.names:
                        if node.module == "dlcv":
                            aliases[a.asname or a.name] = a.name
                        else:
                            imported[a.asname or a.name] = (node.module.split(".")[1], a.name)
            uses = []
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                        and aliases.get(node.value.id) not in (None, "dlcv"):
                    uses.append((node.lineno, node.col_offset, aliases[node.value.id], node.attr))
                elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                        and isinstance(node.value.value, ast.Name) \
                        and aliases.get(node.value.value.id) == "dlcv":
                    uses.append((node.lineno, node.col_offset, node.value.attr, node.attr))
                elif isinstance(node, ast.Name) and node.id in imported:
                    uses.append((node.lineno, node.col_offset, *imported[node.id]))
            for _, _, module, name in sorted(uses):
                if name in names.get(module, ()):
                    found.setdefault((module, name), place)
    return found


def _docstring_edits(path: Path, wanted: dict[str, str]) -> str:
    """The module's source with each named definition's back-link line set to ``wanted``."""
    source = path.read_text(encoding="utf-8")
    lines = source.split("\n")
    tree = ast.parse(source)
    edits = []      # (line index of the closing quotes, new text of the docstring's lines)
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name not in wanted:
            continue
        doc = node.body[0] if node.body and isinstance(node.body[0], ast.Expr) and \
            isinstance(node.body[0].value, ast.Constant) and isinstance(node.body[0].value.value, str) else None
        if doc is None:
            continue
        start, end = doc.lineno - 1, doc.end_lineno - 1
        block = "\n".join(lines[start:end + 1])
        block = LINE.sub("", block).replace("\n\n\n", "\n\n")
        block = re.sub(r"\n\n(\s*\"\"\")$", r"\n\1", block)
        body, quotes = block[:block.rstrip().rfind('"""')], '"""'
        body = body.rstrip()
        indent = " " * (doc.col_offset)
        new = f"{body}\n\n{indent}First used {wanted[node.name]}.\n{indent}{quotes}"
        edits.append((start, end, new))
    for start, end, new in sorted(edits, reverse=True):
        lines[start:end + 1] = new.split("\n")
    return "\n".join(lines)


def plan() -> dict[Path, str]:
    """``{module path: its source with current back-links}`` for the modules that change."""
    uses = first_uses()
    out = {}
    for path in sorted(PACKAGE.glob("*.py")):
        wanted = {name: place for (module, name), place in uses.items() if module == path.stem}
        source = path.read_text(encoding="utf-8")
        new = _docstring_edits(path, wanted)
        # a back-link left on a name no chapter uses any more
        tree = ast.parse(new)
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name not in wanted:
                doc = ast.get_docstring(node, clean=False) or ""
                if LINE.search(doc):
                    raise SystemExit(f"{path.name}: {node.name} has a back-link but no chapter uses it; "
                                     "remove the line")
        if new != source:
            out[path] = new
    return out


def main(argv: list[str]) -> int:
    stale = plan()
    if "--write" in argv:
        for path, new in stale.items():
            path.write_text(new, encoding="utf-8")
        print(f"backlinks: wrote {len(stale)} module(s)")
        return 0
    for path in stale:
        print(f"backlinks: {path.relative_to(ROOT)} has stale or missing back-links "
              "(python tools/backlinks.py --write)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
