"""Degenerate answers (steering.checks): echoes of the question and answers off its topic, on
hand-made examples, lexically and with the real embedded gate embedder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from steering.checks import content_words, degenerate_flags, is_degenerate, is_echo, is_off_topic

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
