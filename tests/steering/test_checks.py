"""Degenerate answers (steering.checks): echoes of the question and answers off its topic, on
hand-made examples, lexically and with the real embedded gate embedder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from steering.checks import (
    content_words,
    degenerate_flags,
    is_closed_question,
    is_degenerate,
    is_echo,
    is_lead_in,
    is_off_topic,
    is_verdict,
)

MOON = "Who was the first person to walk on the Moon?"
YEN = "What is the official currency of Japan?"

ECHOES = [
    ("What is the capital of France?", "The capital of France is the capital of France."),
    (YEN, "The official currency of Japan is the official currency."),
    ("What genre does Hsiao Yun-Hwa write in?",
     "Hsiao Yun-Hwa writes in the genre that Hsiao Yun-Hwa writes in."),
    (MOON, "What was the first person to walk on the Moon? The first person"),
]
PROPER = [
    ("What is the capital of France?", "The capital of France is Paris."),
    (YEN, "The official currency of Japan is the euro."),  # wrong but a proper, on-topic reply
    (MOON, "The first person on the Moon was the astronaut Elon Musk."),
    ("What is Einstein famous for?", "He is best known for developing the theory of relativity."),
    (MOON, "I don't know."),
]
OFF_TOPIC = [
    (MOON, "The recipe calls for two cups of flour and a pinch of salt, baked for twenty minutes."),
    (YEN, "I enjoy long walks on the beach in the summer with my dog and my friends."),
    ("What is Einstein famous for?", "Football is a popular sport played by two teams of eleven players."),
]


@pytest.mark.parametrize(("question", "answer"), ECHOES)
def test_an_answer_that_repeats_the_question_is_an_echo(question: str, answer: str) -> None:
    assert is_echo(question, answer)
    assert is_degenerate(question, answer)


@pytest.mark.parametrize(("question", "answer"), PROPER)
def test_a_proper_reply_is_neither_echo_nor_off_topic_nor_degenerate(question: str, answer: str) -> None:
    assert not is_echo(question, answer)
    assert not is_off_topic(question, answer)
    assert not is_degenerate(question, answer)


@pytest.mark.parametrize(("question", "answer"), OFF_TOPIC)
def test_an_answer_about_something_else_is_off_topic_lexically(question: str, answer: str) -> None:
    assert is_off_topic(question, answer)
    assert is_degenerate(question, answer)


@pytest.mark.parametrize(("answer", "lead_in"), [
    ("King's original answer is:", True),
    ("Here are the facts:", True),
    ("  The answer is as follows: ", True),
    ("The first novel was Carrie.", False),
    ("His best-known novels include the following titles, listed by year of publication and by "
     "the publisher that first printed them:", False),  # long, cut off by the token limit
    ("Note: I don't know.", False),
])
def test_a_lead_in_with_nothing_after_it_is_degenerate(answer: str, lead_in: bool) -> None:
    question = "What was the first novel published by King?"
    assert is_lead_in(answer) is lead_in
    assert is_degenerate(question, answer) is lead_in


def test_a_short_reply_is_not_judged_off_topic_lexically() -> None:
    # Five content words sharing none with the question: too little to tell.
    assert not is_off_topic(MOON, "Cold rain fell all night.")
    assert is_off_topic(MOON, "Cold rain fell all night, soaking the village.")


def test_content_words_drop_function_words_and_cut_to_a_stem() -> None:
    words = content_words("The physicist was known for physics in 1905.")
    assert words == ["physi", "known", "physi", "1905"]


def test_a_collapsed_answer_is_degenerate_whatever_the_question() -> None:
    assert is_degenerate(YEN, "yen yen yen yen yen")
    assert is_degenerate(YEN, "")


def test_the_embedding_variant_separates_on_and_off_topic(embedder: Any) -> None:
    from steering.vectors import embed

    def embed_fn(texts: Sequence[str]) -> np.ndarray:
        return embed(embedder, texts)

    # "Who wrote Hamlet?" answered in other words: lexically off topic, by embedding on it.
    hamlet = ("Who wrote Hamlet?", "A playwright from Stratford-upon-Avon, around the year 1600.")
    assert is_off_topic(*hamlet) and not is_off_topic(*hamlet, embed=embed_fn)
    for question, answer in OFF_TOPIC:
        assert is_off_topic(question, answer, embed=embed_fn)
    for question, answer in PROPER[:4]:
        assert not is_off_topic(question, answer, embed=embed_fn)
    pairs = ECHOES[:1] + PROPER[:2] + OFF_TOPIC[:1] + [hamlet]
    flags = degenerate_flags([q for q, _ in pairs], [a for _, a in pairs], embed=embed_fn)
    assert flags == [True, False, False, True, False]


def test_degenerate_flags_without_an_embedder_match_the_single_check() -> None:
    pairs = ECHOES + PROPER + OFF_TOPIC
    flags = degenerate_flags([q for q, _ in pairs], [a for _, a in pairs])
    assert flags == [is_degenerate(q, a) for q, a in pairs]
    assert sum(flags) == len(ECHOES) + len(OFF_TOPIC)
    with pytest.raises(ValueError, match="one answer per question"):
        degenerate_flags(["q"], [])


@pytest.mark.parametrize("question", [
    "Was Basil Mahfouz Al-Kuwaiti born in Kuwait City?",
    "Is it true that Nikolai Abilov writes science fiction?",
    "Where was he born: (a) Paris (b) Kuwait City (c) Cairo?",
    "Was he born in Paris or in Kuwait City?",
    "Basil was born in Kuwait City, right?",
    "True or false: Basil was born in Kuwait City.",
    "Which of the following did Abilov write: Thieves' Paradise, Kazakhstan Echoes?",
    "I have a question. Does Abilov write poems?",
    "Who wrote it? Was he born in Paris?",  # the last of two questions
    "Was he born in Kuwait City? Answer briefly.",
])
def test_questions_that_ask_to_confirm_deny_or_choose_are_closed(question: str) -> None:
    assert is_closed_question(question)


@pytest.mark.parametrize("question", [
    "Can you name two of the books written by Basil?",  # a request to tell
    "Do you know where he was born?",
    "Who is Nikolai Abilov?",
    "What genre is Nikolai Abilov known for?",
    "Tell me about Basil or his father.",
])
def test_questions_that_ask_to_tell_are_open(question: str) -> None:
    assert not is_closed_question(question)


def test_a_verdict_either_way_or_a_picked_option_is_a_verdict() -> None:
    born = "Was Basil Mahfouz Al-Kuwaiti born in Kuwait City?"
    choice = "Where was he born: (a) Paris (b) Kuwait City (c) Cairo?"
    assert is_verdict(born, "Yes, he was born in Kuwait City.") and is_verdict(born, "No.")
    assert is_verdict(born, "Basil Mahfouz Al-Kuwaiti was born in Kuwait City.")  # restates the claim
    assert is_verdict(choice, "(b) Kuwait City") and is_verdict(choice, "Kuwait City")
    assert not is_verdict(born, "He was a French author who wrote many novels about the history of the region.")
    assert not is_verdict("Can you name two of his books?", "Yes: Promise by the Seine")  # an open request
    assert not is_verdict(born, "")
