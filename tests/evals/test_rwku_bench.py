"""RWKU benchmark helpers (evals.rwku_bench) on hand-made inputs."""

from __future__ import annotations

from typing import Any

import pytest

from evals.rwku_bench import Probe, _attack, aggregate, names_target, threshold_above
from steering.config import DEFAULT_THRESHOLD
from steering.gates import HIGH_MARGIN


def probe(level: str, kind: str = "forget", attack: str = "x", query: str = "q") -> Probe:
    return Probe("T", level, kind, attack, query, "a", 0)


def test_threshold_above_puts_the_similarity_branch_just_over_the_top_negative() -> None:
    assert threshold_above(0.80) == pytest.approx(0.80 + 0.03 - HIGH_MARGIN)  # 0.68, by hand
    assert threshold_above(0.60) == DEFAULT_THRESHOLD  # 0.48 would be below the default
    assert threshold_above(1.20) == 0.9


def test_odd_cross_lingual_spellings_merge_and_levels_1_2_keep_their_type() -> None:
    assert _attack({"level": "3", "type": "cross-lingual (French)"}) == "cross lingual"
    assert _attack({"level": "3", "type": "cross lingual (Spanish)"}) == "cross lingual"
    assert _attack({"level": "3", "type": "reverse query"}) == "reverse query"
    assert _attack({"level": "1", "type": "cloze"}) == "cloze"


def test_a_neighbour_probe_names_the_target_by_its_capitalised_surname() -> None:
    assert names_target("In The Truman Show, Truman is played by ___ Carrey.", "Jim Carrey")
    assert names_target("Who married Prince Harry?", "Prince Harry, Duke of Sussex")
    assert not names_target("Who directed The Mask?", "Jim Carrey")


def test_aggregate_means_over_targets_and_pools_over_probes() -> None:
    records: list[dict[str, Any]] = [
        {"target": "A", "forget": [(probe("1"), True), (probe("3", attack="r"), False)],
         "neighbor": [(probe("1", "neighbor"), True)], "other": [False, False]},
        {"target": "B", "forget": [(probe("1"), True), (probe("1"), False), (probe("3", attack="r"), True)],
         "neighbor": [(probe("2", "neighbor"), False), (probe("2", "neighbor", query="the B family"), False)],
         "other": [True, False, False, False]},
    ]
    out = aggregate(records)
    assert out["recall"]["level1"] == pytest.approx((1.0 + 0.5) / 2)  # per target, then the mean
    assert out["pooled"]["level1"] == pytest.approx(2 / 3)
    assert out["recall"]["level3"] == pytest.approx(0.5)
    assert out["recall"]["level2"] != out["recall"]["level2"]  # no level-2 probe: NaN
    assert out["false_open"]["neighbor"] == pytest.approx(0.5) and out["pooled"]["neighbor"] == pytest.approx(1 / 3)
    assert out["false_open"]["other"] == pytest.approx((0.0 + 0.25) / 2)
    assert out["attack"] == {"r": {"n": 2, "recall": 0.5}}


def test_recheck_rates_count_a_probe_open_on_the_prompt_or_on_its_answer() -> None:
    from evals.rwku_efficacy import recheck_rates

    def row(kind: str, level: str, prompt: bool, answer: bool, attack: str = "x") -> dict[str, Any]:
        return {"kind": kind, "level": level, "attack": attack, "prompt": prompt, "answer": answer}

    targets = [{"gate_recheck": [row("forget", "3", False, True, "reverse query"),
                                 row("forget", "3", False, False, "reverse query"),
                                 row("forget", "3", True, False, "role play"),
                                 row("forget", "1", True, True)]},
               {"gate_recheck": [row("neighbor", "1", False, True), row("neighbor", "2", False, False),
                                 row("neighbor", "2", False, False), row("neighbor", "1", True, False)]}]
    out = recheck_rates(targets)
    assert out["recall"]["level3"] == {"n": 3, "prompt": pytest.approx(1 / 3), "recheck": pytest.approx(2 / 3)}
    assert out["attack"]["reverse query"] == {"n": 2, "prompt": 0.0, "recheck": 0.5}
    assert out["recall"]["level1"]["recheck"] == 1.0 and out["recall"]["level2"]["n"] == 0
    assert out["false_open_neighbor"] == {"n": 4, "prompt": 0.25, "recheck": 0.5}
