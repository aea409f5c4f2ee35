#!/usr/bin/env bash
# Static checks, run by scripts/test.sh before the tests: ruff, mypy (strict) on the packages and the
# import contract service -> evals -> steering -> kernels (import-linter, configured in pyproject.toml).
# Usage: scripts/lint.sh        (uses .venv/bin; set BIN=/path/to/venv/bin to use another environment)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${BIN:-.venv/bin}"
status=0
run() { echo "== $*"; "$@" || status=1; }
run "$bin/ruff" check .
run "$bin/mypy" steering kernels service evals
run "$bin/lint-imports"
exit "$status"
