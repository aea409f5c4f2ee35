"""Running ``guardit eval --quick`` the way CI does, for the tests of each benchmark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.integration.conftest import model_cache_dir

PNG = b"\x89PNG\r\n\x1a\n"


def run_quick(out: Path, benchmark: str, *, one_thread: bool = False) -> dict[str, Any]:
    """``guardit eval --quick --benchmark NAME --json`` in a subprocess over the cached converted model;
    checks that stdout equals ``report.json``, that ``report.md`` was written and that every listed plot
    is a PNG, and returns the printed report. ``one_thread`` pins torch to one CPU thread."""
    data = out / "data"
    data.mkdir(exist_ok=True)
    cache = model_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    (data / "models").symlink_to(cache.resolve(), target_is_directory=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GUARDIT_DATA_DIR": str(data)}
    if one_thread:
        env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-m", "service.cli", "eval", "--quick", "--benchmark", benchmark,
                           "--out", str(out), "--json"], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed: dict[str, Any] = json.loads(proc.stdout)
    assert printed == json.loads((out / "report.json").read_text())
    assert (out / "report.md").read_text().startswith("# guardit evaluation")
    for name in printed["plots"]:
        assert (out / name).read_bytes()[:8] == PNG
    return printed
