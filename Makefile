# Deep Learning for Computer Vision: build and test.
#   make book   create .venv if missing, install, fetch the data, build the site into _build/html
#   make test   the same installs, the package's tests, a strict book build, then checks of the site
#   make serve  serve the built site on http://localhost:8000
#   make clean  remove the build (keeps .venv and the data cache)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The build shows no progress bars (they would be dead widgets on the site); readers' kernels do.
export DLCV_NO_PROGRESS := 1
export PYTHONHASHSEED := 0

.PHONY: install data book test test-package test-site serve clean

$(STAMP): requirements.txt code/pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10 or newer is needed, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

install: $(STAMP)

data: install
	$(BIN)/python -m dlcv.data fetch

book: data
	$(BIN)/python tools/cache_key.py
	$(BIN)/jupyter-book build --all -W --keep-going -n .
	@echo "The book is in _build/html: open _build/html/index.html, or run 'make serve'."

test-package: data
	$(BIN)/python -m pytest code/tests

test-site:
	$(BIN)/python -m pytest tests

test: test-package book test-site

serve:
	$(BIN)/python -m http.server --directory _build/html 8000

clean:
	rm -rf _build
