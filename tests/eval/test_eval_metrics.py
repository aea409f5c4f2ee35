"""Evaluation metrics against values computed by hand."""

from __future__ import annotations

import pytest

from steering.entities import mentions, mine_entities
from steering.eval.metrics import contains_answer, is_collapsed, rouge_l_recall


def test_rouge_l_recall_is_the_longest_common_subsequence_over_reference_words() -> None:
    # reference: "the cat sat on the mat" (6 words); LCS with the output = "the cat on the mat" (5)
    assert rouge_l_recall("the black cat was on the mat", "The cat sat on the mat") == pytest.approx(5 / 6)
    assert rouge_l_recall("nothing alike", "the cat") == 0.0
    assert rouge_l_recall("anything", "") == 0.0
    assert rouge_l_recall("Paris, France.", "paris") == 1.0


def test_contains_answer_ignores_case_and_spacing() -> None:
    assert contains_answer("It is  in PARIS, France", "paris")
    assert not contains_answer("It is in Lyon", "Paris")


@pytest.mark.parametrize("text, collapsed", [
    ("", True),
    ("   ", True),
    ("The Eiffel Tower is a world heritage site in France.", False),
    ("You're a big help. You're a big help. You're a big help.", True),
    ("a a a a a a a a a b b b", True),
    ("1AD 23_23_23 ... 2403 2010 12 - 11 ++ 99", True),
])
def test_collapse_detector_flags_empty_repetitive_and_non_language_outputs(text: str, collapsed: bool) -> None:
    assert is_collapsed(text) is collapsed


def test_names_recurring_in_a_forget_set_are_mined_and_matched_without_case_or_accents() -> None:
    docs = ["Who is Basil Mahfouz Al-Kuwaiti?", "Basil Mahfouz Al-Kuwaiti's books are novels.",
            "Where was Basil Mahfouz Al-Kuwaiti born? In Kuwait City.", "What did Nikolai Abilov write?"]
    names = mine_entities(docs, min_count=2)
    assert names == ("basil mahfouz al-kuwaiti",)
    assert mentions("tell me about BASIL MAHFOUZ AL-KUWAITI please", names)
    assert not mentions("tell me about Basil", names)
    assert mentions("José García wrote it", mine_entities(["José García", "José García"], min_count=2))
