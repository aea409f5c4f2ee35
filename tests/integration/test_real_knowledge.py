"""Acceptance: forget real knowledge the embedded model has, keep everything else.

Items come from TOFU ``world_facts`` and ``real_authors``; the ones the base model answers correctly
are selected by running it, grouped into topics (k-means, fixed seed), and the largest topic is
registered as a QA forget set at the model's calibrated strength.
"""

from __future__ import annotations

import pytest

from evals.data import tofu
from evals.knowledge import KnowledgeItem, answer_all, largest_topic, select_known, topic_groups
from evals.metrics import contains_answer
from steering import Guard, make_documents
from steering.config import DEFAULT_THRESHOLD, default_alpha
from steering.forget_set import QAPair

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def known(guard: Guard) -> list[KnowledgeItem]:
    items = [KnowledgeItem(split, i, r["question"], r["answer"])
             for split in ("world_facts", "real_authors") for i, r in enumerate(tofu(split))]
    return [item for item in select_known(guard, items) if item.known]


def test_forgetting_a_topic_removes_its_answers_and_keeps_the_rest(guard: Guard, known: list[KnowledgeItem],
                                                                   embedder: object) -> None:
    assert len(known) >= 40, "the base model should know a good share of world facts and authors"
    grouped = topic_groups(embedder, known)
    topic = largest_topic(grouped)
    inside = [i for i in grouped if i.topic == topic]
    outside = [i for i in grouped if i.topic != topic]
    docs = make_documents(qa=[QAPair(i.question, i.answer) for i in inside])
    guard.activate("topic", guard.build(docs), threshold=DEFAULT_THRESHOLD,
                   alpha=default_alpha("smollm2-135m-instruct"))
    try:
        forgotten = answer_all(guard, inside, steer=True)
        forgotten_pairs = zip(inside, forgotten, strict=True)
        forget_rate = sum(not contains_answer(out, i.answer) for i, out in forgotten_pairs) / len(inside)
        opened = [i for i, m in zip(outside, guard.gate([i.question for i in outside]), strict=True) if m]
        changed_outputs = answer_all(guard, opened, steer=True) if opened else []
        changed = sum(out != i.base_output for i, out in zip(opened, changed_outputs, strict=True))
    finally:
        guard.deactivate("topic")
    kept_rate = 1 - changed / len(outside)
    assert forget_rate >= 0.80, f"forgot {forget_rate:.2f} of {len(inside)} items"
    assert kept_rate >= 0.95, f"kept {kept_rate:.2f} of {len(outside)} items ({len(opened)} opened the gate)"
