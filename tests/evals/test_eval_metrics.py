"""Evaluation metrics against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from evals.metrics import (
    contains_answer,
    gives_answer,
    is_collapsed,
    kl_divergence,
    mean_kl,
    rate,
    relative_drop,
    rouge_l_recall,
)
from steering.entities import mentions, mine_entities


def test_rouge_l_recall_is_the_longest_common_subsequence_over_reference_words() -> None:
    # reference: "the cat sat on the mat" (6 words); LCS with the output = "the cat on the mat" (5)
    assert rouge_l_recall("the black cat was on the mat", "The cat sat on the mat") == pytest.approx(5 / 6)
    assert rouge_l_recall("nothing alike", "the cat") == 0.0
    assert rouge_l_recall("anything", "") == 0.0
    assert rouge_l_recall("Paris, France.", "paris") == 1.0


def test_rate_is_the_share_of_true_flags_or_the_mean_and_none_when_empty() -> None:
    assert rate([True, False, True, True]) == 0.75
    assert rate([0.25, 0.75, 0.5]) == pytest.approx(0.5)
    assert rate([]) is None


def test_contains_answer_ignores_case_and_spacing() -> None:
    assert contains_answer("It is  in PARIS, France", "paris")
    assert not contains_answer("It is in Lyon", "Paris")


ANSWER = "Basil Mahfouz Al-Kuwaiti was born in Kuwait City to a florist father and a game developer mother."


def test_gives_answer_scores_a_long_answer_by_rouge_against_as_many_of_its_words() -> None:
    # 10 output words vs the answer's first 10 words; LCS "basil mahfouz al kuwaiti was born in kuwait"
    # = 8 of 10 tokens ("al-kuwaiti" is two word tokens), by hand
    assert gives_answer("Basil Mahfouz Al-Kuwaiti was born in Kuwait, the capital", ANSWER)
    # LCS "was born in" = 3 of the first 8 answer tokens: 0.375 < 0.5
    assert not gives_answer("The author was born in a small village", ANSWER)
    assert gives_answer("Paris, of course.", "Paris")  # short answers: contained
    assert not gives_answer("It is in Lyon", "Paris")
    assert not gives_answer("", ANSWER)
    # a short answer is never judged by ROUGE: three of its four words are not enough
    assert not gives_answer("the capital of", "The capital of France")


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


@pytest.mark.parametrize("text", [
    "the the the answer",  # one word three times in a row
    "It is of the of the of the",  # a two-word run three times in a row, too short for the 3-gram rule
    "Paris Paris Paris",
    "The answer is aaaaah",  # a letter four times in a row
    "hahaha that is it",  # a two-letter piece three times inside a word
    "TheAnswerIsAVeryLongGluedWordWithoutSpaces here",  # more than 30 letters in one word
    "12 34 56 78 99",  # four or more words, no letters
])
def test_collapse_detector_flags_stutters_and_glued_words_in_short_answers(text: str) -> None:
    assert is_collapsed(text)


@pytest.mark.parametrize("text", [
    "1472.",  # a short numeric answer is language
    "10%",
    "The Mississippi flows through ten states.",
    "The Euro is used by 20 of the 27 countries.",
    "No, no. It is in Rome.",
])
def test_collapse_detector_keeps_short_numeric_and_ordinary_answers(text: str) -> None:
    assert not is_collapsed(text)


def test_kl_divergence_matches_the_hand_computed_value_and_is_zero_for_equal_distributions() -> None:
    p = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    q = torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    kl = kl_divergence(p.log(), q.log())
    # row 0: 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 ln 2 + 0.5 ln(2/3); row 1: 1 ln(1/0.5) (0 log 0 = 0)
    expected = [0.5 * math.log(2) + 0.5 * math.log(2 / 3), math.log(2)]
    assert kl.tolist() == pytest.approx(expected, abs=1e-6)
    assert float(kl_divergence(q.log(), q.log()).abs().max()) == 0.0


def test_mean_kl_averages_positions_within_a_prompt_then_prompts() -> None:
    p = torch.tensor([0.5, 0.5]).log()
    q = torch.tensor([0.25, 0.75]).log()
    one = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    base = [torch.stack([p, p]), torch.stack([p])]
    other = [torch.stack([p, q]), torch.stack([q])]
    # prompt 0: mean(0, one) = one / 2; prompt 1: one; mean over prompts = 3/4 one
    assert mean_kl(base, other) == pytest.approx(0.75 * one, abs=1e-6)
    with pytest.raises(ValueError, match="compared prompts"):
        mean_kl(base, other[:1])


def test_relative_drop_is_the_share_that_is_gone() -> None:
    assert relative_drop(0.8, 0.2) == pytest.approx(0.75)
    assert relative_drop(1.0, 1.0) == 0.0
    assert relative_drop(0.0, 0.3) == 0.0
    assert relative_drop(0.5, 0.6) == pytest.approx(-0.2)
