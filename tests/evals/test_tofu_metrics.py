"""TOFU protocol metrics (evals/tofu_protocol.py) on hand-computed values, and a smoke test of
the LoRA fine-tune (evals/finetune.py), on tiny random-init models: no downloads, < 30 s.
"""

from __future__ import annotations

import math
import string
from typing import Any

import pytest
import torch

from evals.finetune import (
    LoraRecipe,
    batch_tensors,
    encode_training_row,
    finetune,
    gradient_difference,
)
from evals.tofu_protocol import (
    SplitScores,
    answer_logprob,
    answer_logprobs,
    answer_probability,
    encode_qa,
    evaluate_split,
    forget_quality,
    greedy_generate_fn,
    guard_steer_ctx,
    harmonic_mean,
    model_utility,
    truth_ratio,
    truth_ratio_score,
)

PAD_ID, EOS_ID = 0, 3


def char_tokenizer() -> Any:
    """Character-level fast tokenizer (no chat template: prompts render as ``user: q\\nassistant:``)."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(["<pad>", "<unk>", "<s>", "</s>", *string.printable[:95], "\n"])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>",
                                   bos_token="<s>", eos_token="</s>", padding_side="left")


def tiny_llama(seed: int = 0) -> torch.nn.Module:
    """A 2-layer random-init Llama over the character vocabulary (eval mode, eager attention)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=PAD_ID, bos_token_id=2, eos_token_id=EOS_ID)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    model.eval()
    model.requires_grad_(False)
    return model


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


# -- statistics -----------------------------------------------------------------------------------
def test_truth_ratio_is_the_mean_perturbed_probability_over_the_paraphrased_one() -> None:
    assert truth_ratio([0.1, 0.3], 0.4) == pytest.approx(0.5)
    assert truth_ratio([0.1, 0.3], 0.4, mean="geometric") == pytest.approx(math.sqrt(0.03) / 0.4)
    equal = [0.2, 0.2, 0.2]
    assert truth_ratio(equal, 0.1) == pytest.approx(truth_ratio(equal, 0.1, mean="geometric"))


def test_truth_ratio_score_is_min_of_r_and_its_inverse_on_forget_and_one_minus_r_elsewhere() -> None:
    assert truth_ratio_score([0.5, 2.0, 1.0], forget=True) == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert truth_ratio_score([0.25, 2.0], forget=False) == pytest.approx((0.75 + 0.0) / 2)


def test_forget_quality_is_one_for_identical_samples() -> None:
    sample = [0.1, 0.5, 0.7, 0.9, 1.3]
    assert forget_quality(sample, list(sample)) == pytest.approx(1.0)


def test_forget_quality_of_fully_separated_samples_is_the_exact_ks_p_value() -> None:
    # D = 1 happens only when one sample lies wholly below the other: 2 of C(10, 5) orderings.
    below, above = [0.1, 0.2, 0.3, 0.4, 0.5], [1.1, 1.2, 1.3, 1.4, 1.5]
    assert forget_quality(below, above) == pytest.approx(2 / math.comb(10, 5))


def test_forget_quality_is_the_same_for_a_ratio_and_its_inverse() -> None:
    a, b = [0.3, 0.8, 1.7, 0.4, 2.2, 0.9], [0.5, 0.6, 1.1, 3.0, 0.2]
    assert forget_quality(a, b) == pytest.approx(forget_quality([1 / x for x in a], [1 / x for x in b]))


def test_model_utility_is_the_harmonic_mean_of_all_nine_scores() -> None:
    splits = [SplitScores(0.5, 0.25, 1.0), SplitScores(0.5, 0.25, 1.0), SplitScores(0.5, 0.25, 1.0)]
    assert model_utility(splits) == pytest.approx(9 / (3 * (2 + 4 + 1)))
    assert harmonic_mean([0.5, 0.25, 1.0]) == pytest.approx(3 / 7)
    assert model_utility([SplitScores(0.5, 0.0, 1.0)]) == 0.0


def test_answer_probability_is_the_length_normalised_probability() -> None:
    assert answer_probability(math.log(0.2) + math.log(0.8), 2) == pytest.approx(math.sqrt(0.16))
    assert answer_probability(0.0, 0) == 0.0


# -- answer log-probabilities on a tiny model -----------------------------------------------------
def by_hand(model: torch.nn.Module, tokenizer: Any, question: str, answer: str) -> float:
    """Sum over answer tokens of log softmax(logits of the unpadded prefix)[next token]."""
    ids, n_prompt = encode_qa(tokenizer, question, answer)
    total = 0.0
    with torch.no_grad():
        for t in range(n_prompt, len(ids)):
            logits = model(input_ids=torch.tensor([ids[:t]])).logits[0, -1]
            total += float(logits.log_softmax(-1)[ids[t]])
    return total


def test_answer_logprob_counts_only_answer_tokens_whatever_the_padding() -> None:
    model, tok = tiny_llama(), char_tokenizer()
    pairs = [("Who?", "Ann."), ("Where was she born, exactly?", "Oslo"),
             ("Why?", "Because it rained all day.")]
    batched = answer_logprobs(model, tok, pairs, batch_size=3)
    for (q, a), (total, n) in zip(pairs, batched, strict=True):
        assert n == len(a)  # one character per token
        assert total == pytest.approx(by_hand(model, tok, q, a), abs=1e-4)
        assert answer_logprob(model, tok, q, a)[0] == pytest.approx(total, abs=1e-4)


def test_answer_logprobs_run_each_batch_inside_the_steering_context() -> None:
    model, tok = tiny_llama(), char_tokenizer()
    seen: list[list[str]] = []

    class Ctx:
        def __init__(self, questions: list[str]) -> None:
            seen.append(list(questions))

        def __enter__(self) -> None:
            return None

        def __exit__(self, *exc: object) -> None:
            return None

    answer_logprobs(model, tok, [("a?", "b"), ("cc?", "dd"), ("e?", "f")], batch_size=2, steer_ctx=Ctx)
    assert sorted(q for batch in seen for q in batch) == ["a?", "cc?", "e?"]
    assert [len(b) for b in seen] == [2, 1]


def test_evaluate_split_reports_truth_ratios_from_paraphrased_and_perturbed_answers() -> None:
    model, tok = tiny_llama(), char_tokenizer()
    row = {"question": "Q?", "answer": "abc", "paraphrased_answer": "abd", "perturbed_answer": ["xyz", "xyy"]}
    result = evaluate_split(model, tok, [row], split="forget", generate_fn=lambda qs: ["abc" for _ in qs],
                            forget=True)
    p = {a: answer_probability(*answer_logprob(model, tok, "Q?", a)) for a in ("abc", "abd", "xyz", "xyy")}
    assert result.truth_ratios[0] == pytest.approx((p["xyz"] + p["xyy"]) / 2 / p["abd"], rel=1e-4)
    assert result.probability == pytest.approx(p["abc"], rel=1e-4)
    assert result.rouge == 1.0


# -- fine-tuning ----------------------------------------------------------------------------------
def test_training_rows_carry_loss_on_answer_and_end_of_turn_only() -> None:
    tok = char_tokenizer()
    ids, mask = encode_training_row(tok, "Hi?", "yo")
    n_prompt = encode_qa(tok, "Hi?", "yo")[1]
    assert ids[-1] == EOS_ID and sum(mask) == 3 and not any(mask[:n_prompt])
    batch = batch_tensors([(ids, mask), ([5, 6], [False, True])], PAD_ID)
    assert batch["loss_mask"].sum() == 4 and batch["input_ids"][1, 0] == PAD_ID
    assert batch["position_ids"][1, -2:].tolist() == [0, 1]


def lora_b(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}


def test_finetune_runs_two_steps_and_changes_the_adapter() -> None:
    tok = char_tokenizer()
    rows = [{"question": "Who wrote X?", "answer": "Ann wrote X."}, {"question": "Where?", "answer": "Oslo."}]
    recipe = LoraRecipe(rank=4, alpha=8, lr=1e-2, max_steps=2, batch_size=2, warmup_steps=0,
                        target_modules=("q_proj", "v_proj", "down_proj"))
    result = finetune(tiny_llama(), tok, rows, recipe)
    assert len(result.losses) == 2 and all(math.isfinite(x) for x in result.losses)
    trained = lora_b(result.model)
    assert trained and any(float(t.abs().max()) > 0 for t in trained.values())  # B starts at zero
    assert not result.model.training


def test_gradient_difference_ascends_on_forget_and_descends_on_retain() -> None:
    tok = char_tokenizer()
    forget = [{"question": "F?", "answer": "forget me"}]
    retain = [{"question": "R?", "answer": "keep me"}]
    before = tiny_llama()
    lp = {r["answer"]: answer_logprob(before, tok, r["question"], r["answer"])[0] for r in forget + retain}
    recipe = LoraRecipe(rank=4, alpha=8, lr=1e-2, max_steps=3, batch_size=1, warmup_steps=0)
    after = gradient_difference(tiny_llama(), tok, forget, retain, recipe).model
    assert answer_logprob(after, tok, "F?", "forget me")[0] < lp["forget me"]
    assert answer_logprob(after, tok, "R?", "keep me")[0] > lp["keep me"]


def test_evaluate_split_normalises_the_probability_over_options_without_a_paraphrase() -> None:
    model, tok = tiny_llama(), char_tokenizer()
    row = {"question": "Capital?", "answer": "Rome", "perturbed_answer": ["Oslo", "Bern"]}
    result = evaluate_split(model, tok, [row], split="world_facts", generate_fn=None)
    p = {a: answer_probability(*answer_logprob(model, tok, "Capital?", a)) for a in ("Rome", "Oslo", "Bern")}
    assert result.probability == pytest.approx(p["Rome"] / sum(p.values()), rel=1e-4)
    assert result.truth_ratios[0] == pytest.approx((p["Oslo"] + p["Bern"]) / 2 / p["Rome"], rel=1e-4)
    assert math.isnan(result.rouge)


class SecretGuard:
    """Stands in for ``Guard.plan``: the gate opens (steering layer 0 by ``vector``) for questions
    that mention "secret"; the model, hooks and vectors are real."""

    state = None

    def __init__(self, model: torch.nn.Module, vector: torch.Tensor) -> None:
        from steering.hooks import ResidualHooks
        self.hooks, self.vector = ResidualHooks(model), vector

    def plan(self, prompts: list[Any], state: Any) -> list[Any]:
        from steering.guard import RowPlan
        return [RowPlan(vectors={0: self.vector}) if "secret" in p[-1]["content"] else RowPlan() for p in prompts]


def test_guard_steer_ctx_steers_only_the_rows_whose_gate_opens() -> None:
    from steering.gates import build_plans

    model, tok = tiny_llama(), char_tokenizer()
    vector = torch.randn(32) * 5

    guard = SecretGuard(model, vector)
    pairs = [("Tell me the secret?", "No."), ("What time is it?", "Noon.")]
    steered = answer_logprobs(model, tok, pairs, batch_size=2, steer_ctx=guard_steer_ctx(guard))
    plain = answer_logprobs(model, tok, pairs, batch_size=2)
    with guard.hooks.steer(build_plans([{0: vector}], 1)):
        alone = answer_logprob(model, tok, *pairs[0])
    assert steered[0][0] == pytest.approx(alone[0], abs=1e-4) and steered[0][0] != pytest.approx(plain[0][0])
    assert steered[1] == plain[1]


def test_steered_greedy_generation_keeps_each_rows_steering_as_other_rows_finish() -> None:
    from steering.gates import build_plans

    model, tok = tiny_llama(), char_tokenizer()
    vector = torch.randn(32) * 5

    guard = SecretGuard(model, vector)
    questions = ["Tell me the secret?", "What time is it?", "A secret again, longer?", "Hi?"]
    # The random model never says EOS; make the unsteered second row's third character one, so that
    # row leaves the batch after three tokens while the steered rows go on.
    third = greedy_generate_fn(model, tok, max_new_tokens=3, batch_size=1)([questions[1]])[0][-1]
    tok.eos_token = third
    answers = greedy_generate_fn(model, tok, max_new_tokens=12, batch_size=1, steer_ctx=guard_steer_ctx(guard))
    apart = answers(questions)
    assert len(apart[1]) < 3 and max(len(a) for a in apart) > 3  # rows do end at different steps
    together = greedy_generate_fn(model, tok, max_new_tokens=12, batch_size=4, steer_ctx=guard_steer_ctx(guard))
    assert together(questions) == apart
    plain = greedy_generate_fn(model, tok, max_new_tokens=12, batch_size=4)(questions)
    with guard.hooks.steer(build_plans([{0: vector}], 1)):
        secret = greedy_generate_fn(model, tok, max_new_tokens=12, batch_size=1)([questions[0]])
    assert apart[0] == secret[0] != plain[0]
