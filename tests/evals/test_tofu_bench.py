"""The ``tofu`` benchmark: the TOFU protocol on the committed LoRA target, GUARD-IT against no unlearning.

``guardit eval --quick --benchmark tofu`` (real model, real adapters, real TOFU rows) is held to what
GUARD-IT should do: the forget answers go away, utility questions keep the target's answers because the
gate stays closed on them. It is marked slow (``--run-slow``): three models and a forget-set build take
several CPU minutes, more than the default suite's budget allows.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from evals import tofu_bench
from evals.data import default_adapters
from evals.tofu_protocol import encode_qa, user_turn
from tests.evals.quick_eval import run_quick
from tests.integration.conftest import model_cache_dir


def test_forget10_has_twenty_authors_and_forget01_its_last_two() -> None:
    names = tofu_bench.forget_authors("forget10")
    assert len(names) == 20 and len(set(names)) == 20
    assert names[0] == "Hsiao Yun-Hwa" and tofu_bench.forget_authors("forget01") == names[-2:]


def test_committed_adapters_match_the_training_data_hashes() -> None:
    adapters = default_adapters()
    assert adapters is not None, "expected the committed adapters under artifacts/tofu-lora"
    hashes = json.loads((adapters / "data_hashes.json").read_text())
    assert hashes["target"]["n"] == 1200 and hashes["retain"]["n"] == 800
    for name in ("target", "retain"):
        folder = adapters / name
        assert (folder / "adapter_model.safetensors").stat().st_size < 12_000_000  # float16, r = 16
        log = json.loads((folder / "training_log.json").read_text())
        assert log["n_rows"] == hashes[name]["n"] and log["steps"] == 3 * hashes[name]["n"] // 8  # 3 epochs, batch 8


def test_a_system_message_goes_before_the_question_and_leaves_answer_tokens_alone(tokenizer: Any) -> None:
    plain, n_plain = encode_qa(tokenizer, "Who wrote it?", "Jane Doe wrote it.")
    sys_ids, n_sys = encode_qa(tokenizer, "Who wrote it?", "Jane Doe wrote it.", "Refuse questions about Jane.")
    assert plain[n_plain:] == sys_ids[n_sys:]
    assert "Refuse questions about Jane." in tokenizer.decode(sys_ids[:n_sys])
    assert "Refuse" not in tokenizer.decode(plain[:n_plain])
    assert user_turn("q") == [{"role": "user", "content": "q"}]


def test_verdict_states_the_numbers_relative_to_the_target() -> None:
    m = {"forget_quality": 0.5, "model_utility": 0.3, "forget_rouge": 0.2, "collapse_forget": 0.0,
         "collapse_utility": 0.0}
    section = {"methods": {"target": {**m, "forget_quality": 1e-5, "model_utility": 0.4, "forget_rouge": 0.8},
                           "guardit": m}}
    (line,) = tofu_bench.verdict(section)
    assert line.startswith("guardit: forget quality 0.5 (target 1e-05), model utility 0.300 (75% of")
    assert "forget ROUGE-L 0.200 (target 0.800)" in line


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from steering import EMBEDDED_MODEL, load_model

    return load_model(EMBEDDED_MODEL, cache_dir=model_cache_dir()).tokenizer


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("tofu-eval")
    printed = run_quick(out, "tofu")
    assert "## tofu (TOFU protocol" in (out / "report.md").read_text()
    assert "tofu_forget_vs_utility.png" in printed["plots"]
    return printed["benchmarks"]["tofu"]


@pytest.mark.integration
@pytest.mark.slow
def test_quick_tofu_guardit_forgets_the_target_and_keeps_utility(report: dict[str, Any]) -> None:
    target, guardit = report["methods"]["target"], report["methods"]["guardit"]
    reference = report["reference"]
    assert report["rows_per_split"] == 8
    # the fine-tuned target knows forget10 better than the model that never saw it
    assert target["forget_rouge"] > reference["forget_rouge"] + 0.1
    gate = guardit["gate_open"]
    assert report["forget"] == "forget01" and gate["forget01_perturbed"] >= 0.9
    assert max(gate[s] for s in ("retain_perturbed", "real_authors_perturbed", "world_facts_perturbed")) <= 0.1
    assert guardit["forget_rouge"] <= 0.6 * target["forget_rouge"]
    assert guardit["forget_probability"] < target["forget_probability"]
    assert guardit["model_utility"] >= 0.95 * target["model_utility"]
    assert guardit["collapse_utility"] <= target["collapse_utility"]
