"""CI runs ``guardit eval --quick`` for the real-knowledge benchmarks and holds GUARD-IT to the issue's
targets (real embedded model, real TOFU and MUSE data). The int8 and MUSE runs are slow (each about
1.5 min of one core) and run with ``--run-slow``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.evals.quick_eval import run_quick

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def knowledge(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    report = run_quick(tmp_path_factory.mktemp("wk"), "world-knowledge", one_thread=True)
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
    report = run_quick(tmp_path, "world-knowledge-int8", one_thread=True)
    section = report["benchmarks"]["world-knowledge-int8"]
    quant = section["quantization"]
    assert quant["quantized_linear"] > 0
    assert all(calls["steered"] > 0 for calls in quant["hook_calls"].values()) and quant["hook_calls"]
    g = section["totals"]["guardit"]
    assert g["forget"]["contains_answer_relative_drop"] >= 0.8 and g["other"]["unchanged"] >= 0.95
    assert g["forget"]["collapsed"] == 0.0


@pytest.mark.slow
def test_muse_knowmem_reports_base_knowledge_and_where_each_gate_opens(tmp_path: Path) -> None:
    section = run_quick(tmp_path, "muse-knowmem", one_thread=True)["benchmarks"]["muse-knowmem"]
    books = section["corpora"]["books"]
    m = books["methods"]
    assert set(m) == {"unsteered", "guardit", "global-steering", "refusal-prompt"}
    assert 0.0 <= m["unsteered"]["forget"]["rouge_l"] <= 1.0
    assert m["guardit"]["forget"]["gate_open"] == 1.0  # its own questions
    assert m["global-steering"]["retain"]["gate_open"] == 1.0
    assert m["refusal-prompt"]["forget"]["gate_open"] == 0.0
    assert m["guardit"]["forget"]["collapsed"] <= m["unsteered"]["forget"]["collapsed"] + 0.1
