#!/usr/bin/env bash
# GUARD-IT Eq. 8 kernels (arXiv 2605.12765) on a bare NVIDIA machine: install what is missing,
# run tests/kernels natively (no TRITON_INTERPRET), then the benchmark; its table prints last.
# Usage, from anywhere in the checkout: bash benchmarks/gpu_check.sh [--quick]
set -euo pipefail
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 TRITON_DEFAULT_FP_FUSION=1
unset TRITON_INTERPRET
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

need() {  # need MODULE PIP_NAME: pip-install PIP_NAME when MODULE does not import
  "$PY" -c "import $1" 2>/dev/null && return
  echo "== installing $2"
  "$PY" -m pip install -q "$2" || { echo "pip could not install $2 (offline?)" >&2; exit 1; }
}
need torch torch
need triton triton
need pytest pytest
"$PY" - <<'PYEOF'
import sys, torch, triton
if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} sees no CUDA device (CPU-only build or no driver)")
print("torch", torch.__version__, "| triton", triton.__version__, "|", torch.cuda.get_device_name())
PYEOF

echo "== tests/kernels (native CUDA)"
# --confcutdir: the repo's top-level conftest may import packages this machine lacks;
# -o addopts=: the repo's pytest options may name plugins this machine lacks.
"$PY" -m pytest tests/kernels -q -x -o addopts= -p no:cacheprovider --confcutdir=tests/kernels

echo "== benchmark"
"$PY" benchmarks/kernel_bench.py "$@"

echo "== vLLM engine on CUDA"
# vLLM's CUDA build is several GB: it is used when this interpreter already has it (the device machine
# reaches no package index), and the step says so when it does not.
if "$PY" -c "import vllm" 2>/dev/null; then
  GUARDIT_DEVICE=cuda "$PY" -m pytest tests/vllm/test_vllm_engine.py -q -x -o addopts= -p no:cacheprovider \
    || echo "vLLM engine tests failed on CUDA (see above)"
else
  echo "vLLM not installed in $PY: skipped (pip install 'guardit[vllm]' on a machine with a package index)"
fi
