#!/usr/bin/env bash
# Create the project virtualenv (.venv) on first use and install everything the book and the
# tests need: the package with its dev extras, MathJax (npm) for offline math, and Debian's
# headless Chromium for the browser test. Re-running it is cheap: each step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
# A CPU build of torch. With no torch in the venv, a bare "torch" requirement would pull a
# multi-GB CUDA build from PyPI; this pin takes the local CPU wheel where one is on disk.
# Override with TORCH_SPEC=... (e.g. a CUDA build on a GPU machine).
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

stamp=$VENV/.installed
if [ ! -x $VENV/bin/python ]; then
    echo "==> creating $VENV"
    $PY -m venv $VENV
fi
if [ ! -f $stamp ] || [ pyproject.toml -nt $stamp ]; then
    $VENV/bin/python -m pip install -q --upgrade pip
    if ! $VENV/bin/python -c "import torch" 2>/dev/null; then
        echo "==> installing $TORCH_SPEC"
        $VENV/bin/python -m pip install -q "$TORCH_SPEC"
    else
        echo "==> keeping torch $($VENV/bin/python -c 'import torch; print(torch.__version__)')"
    fi
    echo "==> installing metalearn-course[dev]"
    $VENV/bin/python -m pip install -q -e ".[dev]"
    touch $stamp
fi

# MathJax 3 served from the book itself (no CDN): pinned in package-lock.json.
if [ ! -f node_modules/mathjax/es5/tex-chtml.js ]; then
    echo "==> installing MathJax (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error
fi

# Headless Chromium for the browser test: Debian's package, never a browser download.
if [ "${SKIP_BROWSER:-0}" != 1 ] && ! command -v chromium >/dev/null 2>&1; then
    echo "==> installing Debian's chromium"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
