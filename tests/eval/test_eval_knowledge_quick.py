"""CI runs ``guardit eval --quick`` for the real-knowledge benchmarks and holds GUARD-IT to the issue's
targets (real embedded model, real TOFU and MUSE data). The int8 and MUSE runs are slow (each about
1.5 min of one core) and run with ``--run-slow``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import model_cache_dir

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n"


def run_quick(out: Path, benchmark: str) -> dict[str, Any]:
    """``guardit eval --quick --benchmark NAME --json`` in a subprocess; the printed report."""
    data = out / "data"
    data.mkdir(exist_ok=True)
    cache = model_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    (data / "models").symlink_to(cache.resolve(), target_is_directory=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GUARDIT_DATA_DIR": str(data), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "service.cli", "eval", "--quick", "--benchmark", benchmark,
                           "--out", str(out), "--json"], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed: dict[str, Any] = json.loads(proc.stdout)
    assert printed == json.loads((out / "report.json").read_text())
    assert (out / "report.md").read_text().startswith("# guardit evaluation")
    for name in printed["plots"]:
        assert (out / name).read_bytes()[:8] == PNG
    return printed


@pytest.fixture(scope="module")
def knowledge(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    report = run_quick(tmp_path_factory.mktemp("wk"), "world-knowledge")
    section: dict[str, Any] = report["benchmarks"]["world-knowledge"]
    assert report["plots"] == ["world_knowledge_forget_vs_utility.png", "world_knowledge_topics.png"]
    return section


def test_guardit_forgets_a_topic_and_keeps_the_other_known_answers(knowledge: dict[str, Any]) -> None:
    g = knowledge["totals"]["guardit"]
    assert g["forget"]["n"] >= 8 and g["other"]["n"] >= 3
    assert g["forget"]["contains_answer_relative_drop"] >= 0.8
    assert g["other"]["unchanged"] >= 0.95
    assert g["forget"]["collapsed"] == 0.0 and g["other"]["collapsed"] == 0.0
    assert g["forget"]["answer_probability_relative_drop"] > 0.0


def test_the_gate_is_what_keeps_neutral_prompts_untouched(knowledge: dict[str, Any]) -> None:
    tot = knowledge["totals"]
    assert set(tot) == {"unsteered", "guardit", "global-steering"}
    # GUARD-IT's gate stays closed on neutral prompts: no hook runs, the distributions are the base model's.
    assert tot["guardit"]["neutral_gate_open"] == 0.0 and tot["guardit"]["neutral_kl"] == 0.0
    # The same vectors applied to every prompt move them, and change answers they should not.
    assert tot["global-steering"]["neutral_kl"] > 0.01
    assert tot["global-steering"]["other"]["unchanged"] < tot["guardit"]["other"]["unchanged"]
    assert tot["unsteered"]["forget"]["contains_answer"] == 1.0


@pytest.mark.slow
def test_forgetting_holds_on_the_int8_model_and_its_hooks_fire(tmp_path: Path) -> None:
    section = run_quick(tmp_path, "world-knowledge-int8")["benchmarks"]["world-knowledge-int8"]
    quant = section["quantization"]
    assert quant["quantized_linear"] > 0
    assert all(calls["steered"] > 0 for calls in quant["hook_calls"].values()) and quant["hook_calls"]
    g = section["totals"]["guardit"]
    assert g["forget"]["contains_answer_relative_drop"] >= 0.8 and g["other"]["unchanged"] >= 0.95
    assert g["forget"]["collapsed"] == 0.0


@pytest.mark.slow
def test_muse_knowmem_reports_base_knowledge_and_where_each_gate_opens(tmp_path: Path) -> None:
    section = run_quick(tmp_path, "muse-knowmem")["benchmarks"]["muse-knowmem"]
    books = section["corpora"]["books"]
    m = books["methods"]
    assert set(m) == {"unsteered", "guardit", "global-steering", "refusal-prompt"}
    assert 0.0 <= m["unsteered"]["forget"]["rouge_l"] <= 1.0
    assert m["guardit"]["forget"]["gate_open"] == 1.0  # its own questions
    assert m["global-steering"]["retain"]["gate_open"] == 1.0
    assert m["refusal-prompt"]["forget"]["gate_open"] == 0.0
    assert m["guardit"]["forget"]["collapsed"] <= m["unsteered"]["forget"]["collapsed"] + 0.1
