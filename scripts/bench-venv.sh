#!/usr/bin/env bash
# Python environment for the reference comparison in the pipeline bench:
# .local/bench-venv with onnxruntime 1.31.1, tokenizers and numpy (from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.local/bench-venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import onnxruntime, tokenizers, numpy" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet onnxruntime==1.31.1 tokenizers numpy
fi
