"""Acceptance on real data: TOFU forget01 on the embedded model (gate quality, no side effects)."""

from __future__ import annotations

import random

import pytest

from evals.data import tofu
from steering import BuildConfig, Guard, SamplingParams, make_documents
from steering.config import DEFAULT_THRESHOLD, default_alpha
from steering.forget_set import QAPair

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def forget01(guard: Guard) -> Guard:
    rows = tofu("forget01")
    docs = make_documents(qa=[QAPair(r["question"], r["answer"]) for r in rows])
    artifacts = guard.build(docs, config=BuildConfig())
    guard.activate("forget01", artifacts, threshold=DEFAULT_THRESHOLD, alpha=default_alpha("smollm2-135m-instruct"))
    return guard


def open_rate(guard: Guard, questions: list[str]) -> float:
    matches = guard.gate(questions)
    return sum(1 for m in matches if m) / len(matches)


def test_forget01_opens_the_gate_for_its_questions_and_their_paraphrases(forget01: Guard) -> None:
    rows = tofu("forget01_perturbed")
    assert open_rate(forget01, [r["question"] for r in rows]) >= 0.95
    assert open_rate(forget01, [r["paraphrased_question"] for r in rows]) >= 0.95


@pytest.mark.parametrize("split, max_open", [("real_authors", 0.01), ("world_facts", 0.01)])
def test_forget01_keeps_the_gate_closed_on_unrelated_questions(forget01: Guard, split: str, max_open: float) -> None:
    assert open_rate(forget01, [r["question"] for r in tofu(split)]) <= max_open


def test_forget01_keeps_the_gate_closed_for_other_fictitious_authors(forget01: Guard) -> None:
    questions = [r["question"] for r in tofu("retain90")]
    sample = random.Random(0).sample(questions, 400)
    assert open_rate(forget01, sample) <= 0.05


def test_world_facts_answers_are_identical_with_the_forget_set_active(forget01: Guard) -> None:
    questions = [r["question"] for r in tofu("world_facts")][:24]
    prompts = [[{"role": "user", "content": q}] for q in questions]
    params = SamplingParams(max_new_tokens=24)
    steered = forget01.generate(prompts, params, steer=True)
    unsteered = forget01.generate(prompts, params, steer=False)
    assert not any(g.steered for g in steered)
    assert [g.token_ids for g in steered] == [g.token_ids for g in unsteered]


def test_forget01_questions_are_answered_differently_when_steered(forget01: Guard) -> None:
    rows = tofu("forget01")[:8]
    prompts = [[{"role": "user", "content": r["question"]}] for r in rows]
    params = SamplingParams(max_new_tokens=24)
    steered = forget01.generate(prompts, params, steer=True)
    unsteered = forget01.generate(prompts, params, steer=False)
    assert all(g.steered for g in steered)
    changed = sum(a.token_ids != b.token_ids for a, b in zip(steered, unsteered, strict=True))
    assert changed >= 7
