"""CI runs ``guardit eval --quick`` and holds the gate to the issue's targets (real embedder, real TOFU)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.evals.quick_eval import run_quick

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    printed = run_quick(tmp_path_factory.mktemp("eval"), "tofu-gate")
    assert "tofu_gate_roc.png" in printed["plots"]
    return printed


def test_report_has_the_spec_shape_for_every_split(report: dict[str, Any]) -> None:
    gate = report["benchmarks"]["tofu-gate"]
    assert set(gate) == {"forget01", "forget05", "forget10"}
    for section in gate.values():
        assert set(section["false_open"]) == {"retain90", "holdout10", "real_authors", "world_facts"}
        assert all(0.0 <= v <= 1.0 for v in [section["recall_forget"], section["recall_paraphrased"],
                                             *section["false_open"].values()])


def test_default_gate_meets_the_forget10_targets(report: dict[str, Any]) -> None:
    forget10 = report["benchmarks"]["tofu-gate"]["forget10"]
    assert forget10["gate"] == "hybrid" and forget10["threshold"] == 0.55
    assert forget10["recall_paraphrased"] >= 0.98
    assert forget10["false_open"]["retain90"] <= 0.01
    assert forget10["false_open"]["world_facts"] == 0.0


def test_default_gate_beats_the_paper_gate_on_every_split(report: dict[str, Any]) -> None:
    for section in report["benchmarks"]["tofu-gate"].values():
        ours, paper = section["variants"]["hybrid/fixed"], section["variants"]["paper/fixed"]
        assert ours["recall_paraphrased"] >= paper["recall_paraphrased"]
        assert ours["false_open"]["retain90"] <= paper["false_open"]["retain90"] + 0.005
