#!/usr/bin/env bash
# Install everything the test suite needs, run the static checks (scripts/lint.sh), then the tests.
# .ci/run calls exactly this.
# vLLM (the vLLM engine tests) goes into .venv-vllm (scripts/setup_vllm.sh).
# PostgreSQL (registry tests) and Debian's chromium (console browser test) come from apt when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
# The vLLM engine's own venv; tests/vllm/test_in_vllm_venv.py runs tests/vllm in it.
bash scripts/setup_vllm.sh
need=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
bash scripts/lint.sh
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
[ "$rc" = 5 ] && { echo "no tests collected"; exit 1; }
exit "$rc"
