# Deep Learning for Computer Vision: build and test.
#   make book   create .venv if missing, install, fetch the data, execute the chapters into the cache
#               (in parallel, tools/execute.py), build the site into _build/html
#   make test   the same installs, the package's tests (the fresh reader's venv is made meanwhile),
#               a strict book build, the PDF, then checks of the site (HTML, headless Chromium, and
#               every generated notebook run in that venv on a fake GPU at the smoke scale, started
#               in the background when the book is built)
#   make pdf    the PDF edition, _build/pdf/book.pdf, printed from the built site (make test does it)
#   make serve  serve the built site on http://localhost:8000
#   make clean  remove the build (keeps .venv and the data cache)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The build shows no progress bars (they would be dead widgets on the site); readers' kernels do.
export DLCV_NO_PROGRESS := 1
export PYTHONHASHSEED := 0

NODE_STAMP := node_modules/.installed

.PHONY: install data book pdf print-pdf test test-package test-site chromium serve clean

$(STAMP): requirements.txt code/pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10 or newer is needed, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

# Site assets (MathJax, widget manager) and browser tests come from npm, pinned by package-lock.json.
$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed (Debian/Ubuntu: sudo apt-get install npm)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(STAMP) $(NODE_STAMP)

data: install
	$(BIN)/python -m dlcv fetch

book: data
	$(BIN)/python tools/cache_key.py
	$(BIN)/python tools/vendor_assets.py
	$(BIN)/python tools/notebooks.py
	$(BIN)/python tools/execute.py
	$(BIN)/jupyter-book build --all -W --keep-going -n .
	$(BIN)/python tools/notebooks.py --final
	@echo "The book is in _build/html: open _build/html/index.html, or run 'make serve'."

# The PDF edition from the built site: Chromium prints the pages, pypdf binds them (tools/pdf.py).
# print-pdf alone prints the site as it is built (make test, after its own build).
pdf: book print-pdf

print-pdf: chromium
	$(BIN)/python tools/pdf.py

test-package: data
	$(BIN)/python -m pytest code/tests

# The browser tests drive Debian's chromium (or the browser $CHROMIUM names); install it when
# missing and we are root.
chromium:
	@test -x "$${CHROMIUM:-/usr/bin/chromium}" || command -v chromium >/dev/null || { if [ "$$(id -u)" = 0 ]; then \
	  apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }; \
	  else echo "The browser tests need Chromium: sudo apt-get install chromium"; exit 1; fi; }

# Checks of the built site: HTML, a real browser, and the generated notebooks run by a fresh reader.
test-site: chromium
	$(BIN)/python -m pytest tests --durations=8

# The fresh reader's environment (tools/reader_env.py) is made in the background meanwhile, and
# once the book is built its notebooks run there in the background (tools/reader_runs.py), on the
# core that the PDF printer and the browser checks leave idle; the site checks wait for both.
test: install
	$(BIN)/python tools/reader_env.py --background
	$(MAKE) --no-print-directory test-package book
	$(BIN)/python tools/reader_runs.py --background
	$(MAKE) --no-print-directory print-pdf test-site

serve:
	$(BIN)/python -m http.server --directory _build/html 8000

clean:
	rm -rf _build
