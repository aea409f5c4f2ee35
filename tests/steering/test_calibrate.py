"""The alpha calibration's decision rule (steering.calibrate), on measurement tables written by hand."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from steering.calibrate import choose_alpha, choose_fluent, fluent_forgetting

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


def test_below_the_target_the_fluent_strength_forgetting_most_wins_weaker_on_ties() -> None:
    _, measure = table({0.2: (0.5, 0.0), 0.25: (0.75, 0.0), 0.3: (0.75, 0.0), 0.35: (0.6, 0.0)})
    assert choose_alpha(LADDER, measure, target=0.9, max_collapsed=0.1)[0] == 0.25


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
