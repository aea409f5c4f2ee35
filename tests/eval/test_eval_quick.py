"""CI runs ``guardit eval --quick`` and holds the gate to the issue's targets (real embedder, real TOFU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("eval")
    proc = subprocess.run([sys.executable, "-m", "service.cli", "eval", "--quick", "--benchmark", "tofu-gate",
                           "--out", str(out), "--json"], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = json.loads(proc.stdout)
    assert printed == json.loads((out / "report.json").read_text())
    assert (out / "report.md").read_text().startswith("# guardit evaluation")
    assert (out / "tofu_gate_roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return printed


def test_report_has_the_spec_shape_for_every_split(report: dict[str, Any]) -> None:
    gate = report["benchmarks"]["tofu-gate"]
    assert set(gate) == {"forget01", "forget05", "forget10"}
    for section in gate.values():
        assert set(section["false_open"]) == {"retain90", "holdout10", "real_authors", "world_facts"}
        assert all(0.0 <= v <= 1.0 for v in [section["recall_forget"], section["recall_paraphrased"],
                                             *section["false_open"].values()])


def test_default_gate_meets_the_forget10_targets(report: dict[str, Any]) -> None:
    forget10 = report["benchmarks"]["tofu-gate"]["forget10"]
    assert forget10["gate"] == "hybrid" and forget10["threshold"] == 0.55
    assert forget10["recall_paraphrased"] >= 0.98
    assert forget10["false_open"]["retain90"] <= 0.01
    assert forget10["false_open"]["world_facts"] == 0.0


def test_default_gate_beats_the_paper_gate_on_every_split(report: dict[str, Any]) -> None:
    for section in report["benchmarks"]["tofu-gate"].values():
        ours, paper = section["variants"]["hybrid/fixed"], section["variants"]["paper/fixed"]
        assert ours["recall_paraphrased"] >= paper["recall_paraphrased"]
        assert ours["false_open"]["retain90"] <= paper["false_open"]["retain90"] + 0.005
