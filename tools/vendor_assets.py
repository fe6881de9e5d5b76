"""Copy the site's third-party browser assets from node_modules into _build/site_extra/vendor.

The book's pages load nothing from a CDN: MathJax, require.js and the Jupyter widget manager
come from npm (pinned in package.json and package-lock.json, installed by ``npm ci``) and are
served from the site itself at ``/vendor/...``. ``_config.yml`` adds ``_build/site_extra`` to
Sphinx's ``html_extra_path`` (copied as-is to the site root, not injected into every page as
anything under ``_static/`` would be) and points ``mathjax_path`` and myst-nb's
``nb_ipywidgets_js`` at ``../vendor/...`` (Sphinx resolves those paths from ``_static/``).
Usage: python tools/vendor_assets.py
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE = ROOT / "node_modules"
OUT = ROOT / "_build" / "site_extra" / "vendor"

# (source under node_modules, destination under vendor/, glob patterns not to copy)
ASSETS = [
    ("mathjax/es5", "mathjax", []),
    ("@jupyter-widgets/html-manager/dist", "html-manager", ["*.map", "embed.js", "libembed-amd.js"]),
    ("requirejs/require.js", "require.js", []),
]


def write_favicon_ico(path: Path) -> None:
    """Browsers ask every site for /favicon.ico (the redirect page at the root has no icon
    link); serve one, drawn like book/images/favicon.svg, so that request never fails."""
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((0, 0, 63, 63), radius=12, fill="#1f4e79")
    d.ellipse((15, 15, 49, 49), outline="white", width=6)
    d.ellipse((25, 25, 39, 39), fill="#f2a900")
    img.save(path, sizes=[(16, 16), (32, 32), (48, 48), (64, 64)])


def main() -> int:
    missing = [src for src, _, _ in ASSETS if not (NODE / src).exists()]
    if missing:
        print(f"vendor_assets: {', '.join(missing)} not found under {NODE}.\n"
              "Run `npm ci` in the repository root (make install does) and try again.", file=sys.stderr)
        return 1
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    for src, dest, skip in ASSETS:
        source = NODE / src
        if source.is_dir():
            shutil.copytree(source, OUT / dest, ignore=shutil.ignore_patterns(*skip))
        else:
            shutil.copy2(source, OUT / dest)
    for own in (ROOT / "tools" / "site").glob("*.js"):  # the book's own glue scripts
        shutil.copy2(own, OUT / own.name)
    write_favicon_ico(OUT.parent / "favicon.ico")
    n = sum(1 for p in OUT.rglob("*") if p.is_file())
    print(f"vendor_assets: {n} files in {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
