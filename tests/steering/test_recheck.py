"""Answer re-check (steering.recheck): a forced snapshot opens exactly the given clusters, and rows
that stay closed keep the base model's answer bit for bit (GUARD-IT's no-op property)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from steering.config import BuildConfig
from steering.forget_set import make_documents
from steering.gates import ActiveSet, GateMatch, GateState
from steering.guard import Guard, SamplingParams
from steering.recheck import generate_reviewed, review, with_answer
from steering.vectors import ForgetSetArtifacts

FORGET = ["The Eiffel Tower stands in Paris, France.", "Paris is home to the Eiffel Tower.",
          "Gustave Eiffel built the tower in Paris for the 1889 fair."]
PARAMS = SamplingParams(max_new_tokens=4)


def three_clusters(seed: int) -> ForgetSetArtifacts:
    gen = torch.Generator().manual_seed(seed)
    return ForgetSetArtifacts(centroids=torch.eye(4)[:3], psvs=torch.randn(3, 8, generator=gen),
                              retain_direction=torch.eye(8)[7], mean_norm=4.0, layer=0,
                              labels=torch.arange(3), silhouette=None)


def test_a_forced_plan_steers_exactly_the_given_clusters_of_live_sets(guard: Guard) -> None:
    state = GateState((ActiveSet("A", three_clusters(1), 0.5, 0.3), ActiveSet("B", three_clusters(2), 0.5, 0.6)))
    wanted = [GateMatch("A", 2, 0.9), GateMatch("B", 0, 0.8), GateMatch("B", 1, 0.7), GateMatch("gone", 0, 0.9)]
    [plan] = guard.plan(["anything at all"], state, forced=[wanted])
    assert [(m.forget_set_id, m.cluster) for m in plan.matched] == [("A", 2), ("B", 0), ("B", 1)]
    want = state.vectors_by_layer(wanted[:3])
    assert plan.vectors is not None and plan.vectors.keys() == want.keys()
    torch.testing.assert_close(plan.vectors[0], want[0])
    [boosted] = guard.plan(["anything at all"], state, forced=[wanted], boost=0.2)
    assert boosted.vectors is not None and not torch.equal(boosted.vectors[0], want[0])
    torch.testing.assert_close(boosted.vectors[0], state.vectors_by_layer(wanted[:3], boost=0.2)[0])


def test_with_answer_appends_the_answer_as_its_own_turn() -> None:
    chat = [{"role": "user", "content": "Who built it?"}]
    assert with_answer(chat, "Eiffel.") == [*chat, {"role": "assistant", "content": "Eiffel."}]
    assert with_answer("Q: who? A:", " Eiffel.") == [{"role": "user", "content": "Q: who? A:"},
                                                    {"role": "assistant", "content": " Eiffel."}]


@pytest.fixture(scope="module")
def guard(char_tokenizer: Any, make_tiny: Callable[..., torch.nn.Module], embedder: Any) -> Iterator[Guard]:
    g = Guard(make_tiny("llama", vocab_size=len(char_tokenizer)), char_tokenizer, embedder)
    try:
        yield g
    finally:
        g.hooks.remove()


def test_rechecked_rows_equal_plain_generation_when_the_answer_opens_nothing(guard: Guard) -> None:
    art = guard.build(make_documents(FORGET), retain=["The weather is mild."], config=BuildConfig(k_max=2))
    state = GateState((ActiveSet("paris", art, 0.5, 2.0),))
    prompts = ["Where is the Eiffel Tower?", "How many legs does a spider have?"]
    plain = guard.generate(prompts, PARAMS, state=state)
    base = guard.generate(prompts, PARAMS, steer=False)
    got = generate_reviewed(guard, prompts, PARAMS, state=state)
    assert [g.steered for g in plain] == [True, False]
    # The tiny random model's steered answer is noise: the policy keeps it or, judged degenerate,
    # abstains with the neutral answer (never a third thing).
    if got[0].abstained:
        assert got[0].abstain_reason == "degenerate" and got[0].text == "I don't have information about that."
    else:
        assert got[0].token_ids == plain[0].token_ids
    assert got[0].steered
    # The tiny model's answer to the spider question names nothing of the set: base answer, untouched.
    assert not guard.gate([with_answer(prompts[1], base[1].text)], state)[0]
    assert got[1].token_ids == base[1].token_ids and not got[1].steered


@pytest.mark.parametrize(("steered", "final", "action"), [
    (True, True, "abstain"),  # steering ended the answer at once: no reply, the neutral one instead
    (True, False, "accept"),  # a stream that has produced nothing yet
    (False, True, "accept"),  # the base model's own empty answer is left as it is
])
def test_an_empty_steered_answer_gets_the_neutral_answer(guard: Guard, steered: bool, final: bool,
                                                        action: str) -> None:
    state = GateState((ActiveSet("A", three_clusters(1), 0.5, 0.3),))
    verdict = review(guard, state, "Who built the tower?", "  ", steered=steered,
                     matched=(GateMatch("A", 0, 0.9),) if steered else (), final=final)
    assert verdict.action == action
    assert verdict.reason == ("degenerate" if action == "abstain" else None)


def test_a_steered_verdict_on_a_closed_question_abstains_whatever_it_says(guard: Guard) -> None:
    state = GateState((ActiveSet("A", three_clusters(1), 0.5, 0.3),))
    matched = (GateMatch("A", 0, 0.9),)
    question = "Was the tower built in 1889?"
    for answer in ("Yes.", "No, it was not."):
        verdict = review(guard, state, question, answer, steered=True, matched=matched)
        assert (verdict.action, verdict.reason) == ("abstain", "closed_question")
    # Unsteered, the same verdict is the base model's own (the gate stayed closed for the prompt).
    assert review(guard, state, question, "Yes.", steered=False, recheck=False, leak_check=False).action == "accept"
