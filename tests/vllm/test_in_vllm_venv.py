"""Runs tests/vllm in the vLLM venv when this interpreter has no vLLM (its pins clash with ``.venv``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv-vllm" / "bin" / "python"


@pytest.mark.integration
@pytest.mark.timeout(1800)
def test_the_vllm_engine_suite_passes_in_the_vllm_venv() -> None:
    if not VENV_PYTHON.exists():
        pytest.skip("no .venv-vllm: run scripts/setup_vllm.sh (scripts/test.sh does) to test the vLLM engine")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run([str(VENV_PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/vllm"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=1700)
    sys.stdout.write(run.stdout[-6000:])
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
