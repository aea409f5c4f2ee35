"""The alpha calibration's decision rule (steering.calibrate), on measurement tables written by hand,
and the probes it is judged on (steering.probes.calibration_probes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from steering.calibrate import (
    Calibration,
    calibrate_alpha,
    choose_alpha,
    choose_fluent,
    floor_ladder,
    fluent_forgetting,
)
from steering.config import BuildConfig
from steering.forget_set import QAPair, make_documents
from steering.guard import Guard
from steering.probes import calibration_probes, cloze_probes, paraphrase, question_probes, spread

LADDER = (0.2, 0.25, 0.3, 0.35)


Measure = Callable[[float], tuple[float, float]]


def table(rows: dict[float, tuple[float, float]]) -> tuple[list[float], Measure]:
    seen: list[float] = []

    def measure(alpha: float) -> tuple[float, float]:
        seen.append(alpha)
        return rows[alpha]

    return seen, measure


def test_the_first_strength_that_forgets_enough_without_collapse_wins() -> None:
    seen, measure = table({0.2: (0.5, 0.0), 0.25: (0.95, 0.0), 0.3: (1.0, 0.0), 0.35: (1.0, 0.0)})
    alpha, tried = choose_alpha(LADDER, measure, target=0.9, max_collapsed=0.1)
    assert alpha == 0.25 and seen == [0.2, 0.25]
    assert tried == [(0.2, 0.5, 0.0), (0.25, 0.95, 0.0)]


def test_a_strength_that_collapses_too_much_is_never_chosen_and_ends_the_walk() -> None:
    # 0.3 would reach the target but collapses 20%: the best fluent strength (0.25) is kept.
    seen, measure = table({0.2: (0.5, 0.0), 0.25: (0.7, 0.05), 0.3: (0.9, 0.2), 0.35: (1.0, 0.0)})
    alpha, _ = choose_alpha(LADDER, measure, target=0.9, max_collapsed=0.1)
    assert alpha == 0.25 and seen == [0.2, 0.25, 0.3]


def test_when_the_weakest_strength_collapses_a_stronger_fluent_one_is_searched() -> None:
    seen, measure = table({0.2: (0.0, 1.0), 0.25: (1.0, 0.0), 0.3: (1.0, 0.0), 0.35: (1.0, 0.0)})
    alpha, _ = choose_alpha(LADDER, measure, target=0.9, max_collapsed=0.1)
    assert alpha == 0.25 and seen == [0.2, 0.25]


def test_without_any_fluent_strength_the_least_collapsing_one_is_returned() -> None:
    _, measure = table({0.2: (0.0, 0.5), 0.25: (0.0, 0.3), 0.3: (0.0, 0.3), 0.35: (0.0, 0.4)})
    assert choose_alpha(LADDER, measure, target=0.9, max_collapsed=0.1)[0] == 0.25


def test_below_the_target_the_fluent_strength_forgetting_most_wins_stronger_on_ties() -> None:
    # The yen case: equal scores at several strengths on a handful of probes; the weaker one leaked.
    _, measure = table({0.2: (0.5, 0.0), 0.25: (0.75, 0.0), 0.3: (0.75, 0.0), 0.35: (0.6, 0.0)})
    assert choose_alpha(LADDER, measure, target=0.9, max_collapsed=0.1)[0] == 0.3


def test_fluent_forgetting_counts_a_collapsed_output_as_a_failure_not_as_forgetting() -> None:
    outputs = ["The capital is Canberra.", "The capital is a city.", "the the the the",
               "It is in Rome, Italy."]
    answers = ["Canberra", "Canberra", "Paris", "Rome"]
    # forgotten fluently: only output 1 (output 2 lacks the answer but has collapsed); collapsed: output 2
    assert fluent_forgetting(outputs, answers) == (pytest.approx(0.25), pytest.approx(0.25))
    with pytest.raises(ValueError, match="one answer per output"):
        fluent_forgetting(outputs, answers[:2])


def test_questions_the_base_model_did_not_know_count_for_collapse_only() -> None:
    outputs = ["It is Canberra.", "the the the the", "A fine city.", "I am not sure."]
    answers = ["Canberra", None, "Paris", None]
    # forgetting over the two known: only "A fine city." lacks its answer -> 1/2; collapse over all 4 -> 1/4
    assert fluent_forgetting(outputs, answers) == (pytest.approx(0.5), pytest.approx(0.25))
    with pytest.raises(ValueError, match="at least one known"):
        fluent_forgetting(["x"], [None])


def test_without_known_answers_the_default_strength_is_kept_only_if_it_stays_fluent() -> None:
    collapse = {0.3: 0.3, 0.25: 0.2, 0.2: 0.05}
    seen: list[float] = []

    def measure(alpha: float) -> float:
        seen.append(alpha)
        return collapse[alpha]

    alpha, tried = choose_fluent([0.3, 0.25, 0.2], measure, max_collapsed=0.1)
    assert alpha == 0.2 and tried == [(0.3, 0.0, 0.3), (0.25, 0.0, 0.2), (0.2, 0.0, 0.05)]
    assert seen == [0.3, 0.25, 0.2]
    assert choose_fluent([0.3], lambda a: 0.0, max_collapsed=0.1)[0] == 0.3
    assert choose_fluent([0.3, 0.25], lambda a: {0.3: 0.5, 0.25: 0.4}[a], max_collapsed=0.1)[0] == 0.25


def test_the_ladder_never_starts_below_the_default_once_answers_are_known() -> None:
    assert floor_ladder((0.2, 0.25, 0.3, 0.35, 0.4), 0.3) == [0.3, 0.35, 0.4]
    assert floor_ladder((0.2, 0.25, 0.3), 0.27) == [0.27, 0.3]
    assert floor_ladder((0.2, 0.25), 0.6) == [0.6]
    # Even when the weakest strength would already meet the target, the walk starts at the floor.
    seen, measure = table({0.3: (1.0, 0.0), 0.35: (1.0, 0.0)})
    assert choose_alpha(floor_ladder(LADDER, 0.3), measure, target=0.9, max_collapsed=0.1)[0] == 0.3
    assert seen == [0.3]


def test_an_echo_or_off_topic_output_counts_as_degenerate_when_questions_are_given() -> None:
    questions = ["What is the capital of France?", "Who was the first person to walk on the Moon?",
                 "What is the official currency of Japan?"]
    outputs = ["The capital of France is the capital of France.",
               "The recipe calls for two cups of flour and a pinch of salt, baked for twenty minutes.",
               "The currency of Japan is the euro."]
    answers = ["Paris", "Neil Armstrong", "yen"]
    # Collapse alone sees nothing wrong: all three forgotten, none collapsed.
    assert fluent_forgetting(outputs, answers) == (pytest.approx(1.0), pytest.approx(0.0))
    # With the questions, the echo and the off-topic reply are failures: 1/3 forgotten fluently.
    got = fluent_forgetting(outputs, answers, questions=questions)
    assert got == (pytest.approx(1 / 3), pytest.approx(2 / 3))


def test_paraphrases_reword_the_stem_or_wrap_the_question() -> None:
    assert paraphrase("What is the capital of France?") == "Tell me what the capital of France is."
    moon = "Who was the first person on the Moon?"
    assert paraphrase(moon) == "Tell me who the first person on the Moon was."
    assert paraphrase("What is the capital of France?", 1) == "Quick question. What is the capital of France?"
    assert paraphrase("Where did he study?", 0) == "I'd like to know: Where did he study?"


def test_question_probes_spread_over_the_set_and_hold_half_of_them_out() -> None:
    pairs = [QAPair(f"What is fact number {i}?", f"answer {i}") for i in range(100)]
    probes = question_probes(pairs, 10)
    assert [p.expected for p in probes] == [f"answer {i}" for i in spread(100, 10)]
    assert spread(100, 10)[0] == 0 and spread(100, 10)[-1] == 99 and len(spread(100, 10)) == 10
    assert [p.kind for p in probes[:4]] == ["own", "paraphrase", "own", "paraphrase"]
    assert probes[1].text() == "Tell me what fact number 11 is." and probes[1].prompt == [
        {"role": "user", "content": "Tell me what fact number 11 is."}]


def test_cloze_probes_cut_a_sentence_before_its_date_number_or_name() -> None:
    born = "Albert Einstein was born in Ulm on 14 March 1879."
    docs = [born + " He developed the theory of relativity in 1905. "
            "His famous equation is widely known.",
            "The official currency of Japan is the yen, issued by the Bank of Japan."]
    probes = cloze_probes(docs, 10)
    got = [(p.prompt, p.expected) for p in probes]
    assert got == [
        ("Albert Einstein was born in", "Ulm"),
        ("The official currency of", "Japan"),
        (born + " He developed the theory of relativity in", "1905"),
    ]
    assert all(p.kind == "cloze" and isinstance(p.prompt, str) for p in probes)
    assert len(cloze_probes(docs, 2)) == 2
    # A text set gets cloze probes, a QA set question probes.
    assert calibration_probes(make_documents(documents=docs), 10)[0].kind == "cloze"
    assert calibration_probes(make_documents(qa=[QAPair("Who?", "Me")]), 10)[0].kind == "own"


def test_calibration_facts_carry_the_choice_the_ladder_and_the_probe_counts() -> None:
    cal = Calibration(0.35, 7, 0.857142, 0.03125, ((0.3, 0.5, 0.0), (0.35, 0.857142, 0.03125)), True,
                      probes=40, paraphrased=20, gate_missed=2, kind="qa")
    facts = cal.facts()
    assert facts["alpha"] == 0.35 and facts["known"] == 7 and facts["probes"] == 40
    assert facts["held_out_probes"] == 20 and facts["gate_missed"] == 2 and facts["kind"] == "qa"
    assert facts["ladder"] == [{"alpha": 0.3, "forgotten": 0.5, "degenerate": 0.0},
                               {"alpha": 0.35, "forgotten": 0.8571, "degenerate": 0.0312}]


def test_a_text_set_is_calibrated_on_cloze_probes_in_a_private_snapshot(
    char_tokenizer: Any, make_tiny: Callable[..., torch.nn.Module], embedder: Any
) -> None:
    # A random tiny model knows no fact: the probes are asked, nothing is known, and the strength
    # is chosen for fluency alone (the default or a weaker one), with the counts in the facts.
    docs = make_documents(documents=[
        "The Eiffel Tower was completed in Paris in 1889 for the World Fair.",
        "Gustave Eiffel designed the tower, which is 330 metres tall.",
        "Every year about seven million people visit the tower in Paris.",
    ])
    guard = Guard(make_tiny("llama", vocab_size=len(char_tokenizer)), char_tokenizer, embedder)
    seen: list[tuple[str, int, int]] = []
    try:
        artifacts = guard.build(docs, retain=["The weather is mild today."], config=BuildConfig(k_max=2))
        cal = calibrate_alpha(guard, docs, artifacts, threshold=-1.0, fallback=0.3, max_new_tokens=4,
                              progress=lambda *a: seen.append(a))
    finally:
        guard.hooks.remove()
    assert guard.state.empty  # the live snapshot was never touched
    assert cal.kind == "text" and cal.probes == 3 and cal.paraphrased == 3 and cal.gate_missed == 0
    assert not cal.measured and cal.known == 0 and cal.alpha in (0.3, 0.25, 0.2)
    assert [a for a, _, _ in cal.tried][0] == 0.3
    assert seen[-1][0] == "calibrate" and seen[-1][1] == seen[-1][2]
    facts = cal.facts()
    assert facts["kind"] == "text" and facts["probes"] == 3 and len(facts["ladder"]) == len(cal.tried)


def test_an_echo_the_base_model_gave_too_is_not_blamed_on_steering_but_collapse_still_is() -> None:
    questions = ["What is the full name of the author born in Taipei?", "What is the capital of France?"]
    outputs = ["The full name of the author born in Taipei is", "the the the the"]
    answers = ["Hsiao Yun-Hwa", "Paris"]
    got = fluent_forgetting(outputs, answers, questions=questions)
    assert got == (pytest.approx(0.0), pytest.approx(1.0))
    got = fluent_forgetting(outputs, answers, questions=questions, baseline=[True, True])
    assert got == (pytest.approx(0.5), pytest.approx(0.5))


def test_the_walk_ends_on_a_plateau_of_fluent_strengths_that_forget_no_more() -> None:
    ladder = (0.3, 0.35, 0.4, 0.45, 0.5)
    seen, measure = table({0.3: (0.6, 0.0), 0.35: (0.6, 0.0), 0.4: (0.5, 0.05), 0.45: (1.0, 0.0),
                           0.5: (1.0, 0.0)})
    alpha, tried = choose_alpha(ladder, measure, target=0.9, max_collapsed=0.1)
    assert seen == [0.3, 0.35, 0.4] and alpha == 0.35  # stronger of the two at 0.6
    # Still improving within the last two: the walk goes on and reaches the target.
    seen, measure = table({0.3: (0.6, 0.0), 0.35: (0.7, 0.0), 0.4: (0.7, 0.0), 0.45: (1.0, 0.0),
                           0.5: (1.0, 0.0)})
    assert choose_alpha(ladder, measure, target=0.9, max_collapsed=0.1)[0] == 0.45
    assert seen == [0.3, 0.35, 0.4, 0.45]
