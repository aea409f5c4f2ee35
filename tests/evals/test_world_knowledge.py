"""World-knowledge aggregation and report pieces on small sections written by hand (no model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from evals.methods import refusal_system
from evals.world_knowledge import totals, verdict
from evals.world_knowledge_report import markdown, plots

KEYS = ("contains_answer", "unchanged", "rouge_l", "answer_probability", "answer_probability_base",
        "collapsed", "gate_open")
NEUTRAL = {"n": 4, "kl": 0.0, "gate_open": 0.0}


def part(n: int, **values: float) -> dict[str, Any]:
    return {"n": n, **{k: values.get(k, 0.0) for k in KEYS}}


def topic(n_forget: int, n_other: int, guardit: dict[str, Any], alpha: float) -> dict[str, Any]:
    base = {"forget": part(n_forget, contains_answer=1.0, unchanged=1.0, answer_probability=0.4,
                           answer_probability_base=0.4),
            "other": part(n_other, contains_answer=1.0, unchanged=1.0), "neutral": NEUTRAL}
    return {"n_forget": n_forget, "n_other": n_other, "questions": ["What is the capital of Australia?"],
            "guardit": {"k": 2, "alpha": alpha}, "methods": {"unsteered": base, "guardit": guardit}}


@pytest.fixture
def section() -> dict[str, Any]:
    # topic a: 4 forgotten items, 1 still answered (0.25), 1 collapsed; topic b: 6 items, none answered
    g_a = {"forget": part(4, contains_answer=0.25, collapsed=0.25, answer_probability=0.1,
                          answer_probability_base=0.4, gate_open=1.0),
           "other": part(10, contains_answer=1.0, unchanged=0.9), "neutral": NEUTRAL}
    g_b = {"forget": part(6, contains_answer=0.0, answer_probability=0.2, answer_probability_base=0.4,
                          gate_open=1.0),
           "other": part(8, contains_answer=1.0, unchanged=1.0), "neutral": {**NEUTRAL, "kl": 0.02}}
    topics = {"0": topic(4, 10, g_a, 0.3), "1": topic(6, 8, g_b, 0.25)}
    sec = {"candidates": 30, "known": 18, "max_new_tokens": 24, "batch_size": 16, "skipped_topics": {},
           "topics": topics, "totals": totals(topics, ("unsteered", "guardit"))}
    sec["verdict"] = verdict(sec)
    return sec


def test_totals_weight_each_topic_by_its_items(section: dict[str, Any]) -> None:
    g = section["totals"]["guardit"]
    # forgotten: (4 * 0.25 + 6 * 0) / 10 = 0.1 still answered, against 1.0 unsteered: a drop of 0.9
    assert g["forget"]["n"] == 10 and g["forget"]["contains_answer"] == pytest.approx(0.1)
    assert g["forget"]["contains_answer_relative_drop"] == pytest.approx(0.9)
    # P(answer): (4 * 0.1 + 6 * 0.2) / 10 = 0.16 against 0.4: a drop of 0.6
    assert g["forget"]["answer_probability_relative_drop"] == pytest.approx(0.6)
    assert g["forget"]["collapsed"] == pytest.approx(0.1)
    # other: (10 * 0.9 + 8 * 1.0) / 18 unchanged; KL: mean over topics
    assert g["other"]["unchanged"] == pytest.approx(17 / 18)
    assert g["neutral_kl"] == pytest.approx(0.01)


def test_verdict_says_plainly_where_a_target_is_missed(section: dict[str, Any]) -> None:
    lines = section["verdict"]
    assert "left 94% of the other known answers unchanged (target >= 95%): NOT met" in lines[0]
    assert lines[1] == "GUARD-IT outputs collapsed on forgotten items in topics 0 (25% at alpha 0.3)."
    assert lines[-1].endswith("still correct): none.")


def test_markdown_and_plots_render_the_section(section: dict[str, Any], tmp_path: Path) -> None:
    text = "\n".join(markdown(section))
    assert "| guardit | 0.100 (n=10) | 0.900 |" in text
    assert "| 0 | What is the capital of Australia? | 4 | 2 | 0.3 | 0.25 | 0.25 | 0.900 |" in text
    for path in plots(section, tmp_path):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_refusal_prompt_lists_every_topic() -> None:
    text = refusal_system(["Who wrote 'Dune'?", "Jane Austen"])
    assert "Who wrote 'Dune'?; Jane Austen" in text and "I'm sorry, I can't help with that." in text
    with pytest.raises(ValueError, match="at least one topic"):
        refusal_system([])
