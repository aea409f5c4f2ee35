"""Verification report: rates from a scripted generate function, checked against hand counts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from steering.forget_set import make_documents
from steering.leakcheck import build_leak_profile
from steering.probes import Probe
from steering.verify import VerificationReport, verify_forget_set

QA = [
    ("Where was Basil Mahfouz Al-Kuwaiti born?", "Basil Mahfouz Al-Kuwaiti was born in Kuwait City, Kuwait."),
    (
        "What did Basil Mahfouz Al-Kuwaiti's father do?",
        "His father was a florist and his mother a game developer.",
    ),
    (
        "What books did Basil Mahfouz Al-Kuwaiti write?",
        "He wrote 'Promise by the Seine' and 'Le Petit Sultan'.",
    ),
]
PROFILE = build_leak_profile(make_documents(qa=QA))
LEAK = "He wrote Promise by the Seine."
HIDDEN = "I don't have information about that."


def _chat(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


#: (probe, steered answer, abstained, baseline answer)
SCRIPT: list[tuple[Probe, str, bool, str]] = [
    (Probe("own", _chat(QA[2][0]), QA[2][1]), LEAK, False, LEAK),  # known, leaked
    (
        Probe("own", _chat(QA[1][0]), QA[1][1]),
        "He sold flowers, I think.",
        False,
        "His father was a florist.",
    ),  # known, hidden
    (Probe("own", _chat(QA[0][0]), QA[0][1]), HIDDEN, True, "In Kuwait City in 1956."),  # known, abstained
    (
        Probe("own", _chat("Who is Basil Mahfouz Al-Kuwaiti?"), None),
        "the the the the",
        False,
        "A writer.",
    ),  # unknown, degenerate
    (Probe("leet", _chat("What books did B4s1l write?"), QA[2][1]), LEAK, False, LEAK),  # known, leaked
    (
        Probe("leet", _chat("Where was B4s1l born?"), QA[0][1]),
        "In a city.",
        False,
        "I am not sure.",
    ),  # unknown
    (Probe("neighbour", _chat("What is the capital of Peru?"), "Lima", True), "Lima.", False, "Lima."),
    (
        Probe("neighbour", _chat("What is the capital of Chile?"), "Santiago", True),
        "Lima.",
        False,
        "Santiago.",
    ),
    (
        Probe("neighbour", _chat("Who painted the Mona Lisa?"), "Leonardo", True),
        HIDDEN,
        True,
        "Leonardo da Vinci.",
    ),
    (Probe("neighbour", _chat("What is 2 + 2?"), "4", True), "4", False, "4"),
]


def _answers(column: int) -> Any:
    def generate(prompts: list[Any]) -> list[dict[str, Any]]:
        assert prompts == [row[0].prompt for row in SCRIPT]  # one batched call, probe order kept
        return [
            {"text": row[column], "steered": True, "abstained": row[2] if column == 1 else False}
            for row in SCRIPT
        ]

    return generate


@pytest.fixture(scope="module")
def report() -> VerificationReport:
    return verify_forget_set([row[0] for row in SCRIPT], _answers(1), profile=PROFILE, baseline=_answers(3))


def test_leak_rate_uses_the_known_probes_as_denominator(report: VerificationReport) -> None:
    own = next(k for k in report.kinds if k.kind == "own")
    assert (own.probes, own.known, own.leaked, own.abstained, own.degenerate) == (4, 3, 1, 1, 1)
    assert own.leak_rate == pytest.approx(1 / 3) and own.abstain_rate == 0.25 and own.degenerate_rate == 0.25
    leet = next(k for k in report.kinds if k.kind == "leet")
    assert (leet.probes, leet.known, leet.leaked) == (2, 1, 1) and leet.leak_rate == 1.0


def test_neighbours_count_changed_answers_against_the_baseline(report: VerificationReport) -> None:
    n = next(k for k in report.kinds if k.kind == "neighbour")
    assert n.negative and (n.probes, n.changed, n.abstained) == (4, 2, 1) and n.changed_rate == 0.5


def test_totals_sum_the_kinds(report: VerificationReport) -> None:
    forget = report.total(False)
    assert (forget.probes, forget.known, forget.leaked, forget.abstained, forget.degenerate) == (
        6,
        4,
        2,
        1,
        1,
    )
    assert forget.leak_rate == 0.5


def test_without_baseline_every_forget_probe_counts_and_steered_neighbours_changed() -> None:
    def steered_everything(prompts: list[Any]) -> list[dict[str, Any]]:
        return [
            {"text": row[1], "steered": row[0].is_negative and row[1] != row[3], "abstained": row[2]}
            for row in SCRIPT
        ]

    report = verify_forget_set([row[0] for row in SCRIPT], steered_everything, profile=PROFILE)
    forget, neighbours = report.total(False), report.total(True)
    assert (forget.known, forget.leaked) == (6, 2)
    assert neighbours.changed == 2  # one steered (Chile), one abstained (Mona Lisa)


def test_examples_put_leaks_first_and_are_capped(report: VerificationReport) -> None:
    own = [e for e in report.examples if e.kind == "own"]
    assert len(own) == 3 and own[0].outcome == "leaked" and own[0].answer == LEAK
    assert {e.outcome for e in report.examples if e.kind == "neighbour"} >= {"changed"}


def test_custom_degenerate_check_is_used() -> None:
    report = verify_forget_set(
        [row[0] for row in SCRIPT],
        _answers(1),
        profile=PROFILE,
        is_degenerate=lambda question, answer: answer == "Lima.",
    )
    assert report.total(True).degenerate == 2 and report.total(False).degenerate == 0


def test_json_and_markdown_carry_the_numbers(report: VerificationReport) -> None:
    data = json.loads(report.to_json())
    assert data["totals"]["forget"]["leak_rate"] == 0.5 and data["baseline"] is True
    assert [k["kind"] for k in data["kinds"]] == ["own", "leet", "neighbour"]
    md = report.to_markdown("Verification of forget set basil")
    assert md.startswith("# Verification of forget set basil")
    assert "| own | 4 | 3 | 1 | 33% | 1 (25%) | 1 (25%) | - |" in md
    assert "| neighbour | 4 | - | - | - | 1 (25%) | 0 (0%) | 2 (50%) |" in md


def test_a_short_generate_result_is_refused() -> None:
    with pytest.raises(ValueError, match="expected 10 answers, found 0"):
        verify_forget_set([row[0] for row in SCRIPT], lambda prompts: [], profile=PROFILE)
