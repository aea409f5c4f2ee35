"""The serving engine on the real embedded model: its own KV-cached decode loop against
``model.generate``, per-row steering in mixed batches, seeds, stop strings, revocation mid-generation,
back-pressure and timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from service.engine import (
    Engine,
    EngineClosedError,
    GateInfo,
    GenerationRequest,
    QueueFullError,
    RequestTimeoutError,
)
from service.metrics import GATE_DECISIONS
from steering import ConfigError, Generation, SamplingParams
from steering.recheck import generate_reviewed, review
from tests.service import conftest_engine

pytestmark = pytest.mark.integration

GREEDY = SamplingParams(max_new_tokens=12)
OPEN_Q = conftest_engine.tofu_qa(0, 2)[1][0]  # a forget-set question: opens the gate
CLOSED = ["What is the capital of France?", "Name three colors of the rainbow."]


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


#: The decode loop and per-row steering alone, without the answer policy (tested apart below).
MECHANICS = {"answer_recheck": False, "leak_check": False}


@pytest.fixture(scope="module")
def engine(runtime: Any) -> Iterator[Engine]:
    eng = Engine(runtime, runtime.settings.model_copy(update=MECHANICS))
    eng.start()
    yield eng
    eng.close(drain_timeout=5)


@pytest.fixture(scope="module")
def policy_engine(runtime: Any) -> Iterator[Engine]:
    """The engine as the server runs it: answer policy on."""
    eng = Engine(runtime, runtime.settings)
    eng.start()
    yield eng
    eng.close(drain_timeout=5)


@pytest.fixture(scope="module")
def reference(runtime: Any) -> dict[str, Generation]:
    """``Guard.generate`` (HF ``model.generate``) one request at a time."""
    return {q: runtime.guard.generate([chat(q)], GREEDY)[0] for q in [OPEN_Q, *CLOSED]}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


def test_greedy_output_equals_guard_generate_token_for_token(engine: Engine,
                                                             reference: dict[str, Generation]) -> None:
    for q in [OPEN_Q, CLOSED[0]]:
        got = run(engine.generate(GenerationRequest(chat(q), GREEDY)))
        want = reference[q]
        assert got.token_ids == want.token_ids
        assert (got.text, got.finish_reason) == (want.text, want.finish_reason)
        assert got.prompt_tokens == want.prompt_tokens
        assert (got.steered, got.matched) == (want.steered, want.matched)
    assert reference[OPEN_Q].steered and not reference[CLOSED[0]].steered


def test_mixed_batch_of_steered_and_unsteered_rows_equals_single_requests(
        engine: Engine, reference: dict[str, Generation]) -> None:
    async def batch() -> list[Generation]:
        reqs = [OPEN_Q, CLOSED[0], OPEN_Q, CLOSED[1]]
        return list(await asyncio.gather(*(engine.generate(GenerationRequest(chat(q), GREEDY))
                                           for q in reqs)))

    got = run(batch())
    for gen, q in zip(got, [OPEN_Q, CLOSED[0], OPEN_Q, CLOSED[1]], strict=True):
        assert gen.steered == reference[q].steered
        assert gen.token_ids == reference[q].token_ids, q


def test_rows_joining_a_running_batch_give_the_same_tokens_as_alone(
        engine: Engine, reference: dict[str, Generation]) -> None:
    async def staggered() -> list[Generation]:
        first = await engine.open_stream(GenerationRequest(chat(CLOSED[1]), GREEDY))
        async for event in first:  # the first row is decoding before the others arrive
            if isinstance(event, str):
                break
        joiners = [asyncio.ensure_future(engine.generate(GenerationRequest(chat(q), GREEDY)))
                   for q in (OPEN_Q, CLOSED[0])]
        rest = [event async for event in first]
        return [rest[-1], *await asyncio.gather(*joiners)]

    got = run(staggered())
    for gen, q in zip(got, [CLOSED[1], OPEN_Q, CLOSED[0]], strict=True):
        assert gen.token_ids == reference[q].token_ids, q


def test_same_seed_gives_the_same_sample_whatever_the_batch_mates(engine: Engine) -> None:
    params = SamplingParams(max_new_tokens=10, temperature=0.9, top_p=0.95, seed=1234)

    async def alone() -> Generation:
        return await engine.generate(GenerationRequest(chat(CLOSED[0]), params))

    async def crowded() -> Generation:
        mates = [GenerationRequest(chat(q), SamplingParams(max_new_tokens=6, temperature=1.0, seed=s))
                 for s, q in enumerate([OPEN_Q, CLOSED[1], "Tell me a joke."])]
        results = await asyncio.gather(engine.generate(mates[0]), engine.generate(
            GenerationRequest(chat(CLOSED[0]), params)), *(engine.generate(m) for m in mates[1:]))
        return results[1]

    first, second = run(alone()), run(crowded())
    assert first.token_ids == second.token_ids
    other = run(engine.generate(GenerationRequest(chat(CLOSED[0]), SamplingParams(
        max_new_tokens=10, temperature=0.9, top_p=0.95, seed=99))))
    assert other.token_ids != first.token_ids


def test_stop_string_cuts_the_text_and_is_never_streamed(engine: Engine, runtime: Any,
                                                         reference: dict[str, Generation]) -> None:
    full = reference[CLOSED[0]].text  # "The capital of France is Paris."
    stop = "Paris"
    assert stop in full

    async def stream() -> list[Any]:
        req = GenerationRequest(chat(CLOSED[0]), SamplingParams(max_new_tokens=12, stop=("xyz", stop)))
        return [event async for event in await engine.open_stream(req)]

    events = run(stream())
    assert isinstance(events[0], GateInfo) and isinstance(events[-1], Generation)
    final = events[-1]
    assert final.text == full[:full.index(stop)] and final.finish_reason == "stop"
    deltas = [e for e in events if isinstance(e, str)]
    # A forget set is active, so the answer policy holds the stream back and checks it before sending.
    assert "".join(deltas) == final.text and len(deltas) >= 1
    assert all(stop not in d for d in deltas)

    held = Engine(runtime, runtime.settings.model_copy(update={"stream_holdback_tokens": 2}))
    try:
        async def stream_held() -> list[Any]:
            req = GenerationRequest(chat(CLOSED[0]), SamplingParams(max_new_tokens=12, stop=("xyz", stop)))
            return [event async for event in await held.open_stream(req)]

        events = run(stream_held())
    finally:
        held.close(drain_timeout=5)
    deltas = [e for e in events if isinstance(e, str)]
    assert "".join(deltas) == final.text and len(deltas) > 1 and all(stop not in d for d in deltas)


def test_ignore_eos_runs_to_max_new_tokens_like_model_generate(engine: Engine, runtime: Any,
                                                              reference: dict[str, Generation]) -> None:
    short = reference[CLOSED[0]]
    assert short.finish_reason == "stop" and short.completion_tokens < 12  # it would end early
    params = SamplingParams(max_new_tokens=24, ignore_eos=True)
    got = run(engine.generate(GenerationRequest(chat(CLOSED[0]), params)))
    want = runtime.guard.generate([chat(CLOSED[0])], params)[0]
    assert got.completion_tokens == 24 and got.finish_reason == "length"
    assert got.token_ids == want.token_ids
    assert got.token_ids[:short.completion_tokens] == short.token_ids


def test_revoking_a_forget_set_stops_steering_running_requests_from_the_next_token(
        runtime: Any, engine: Engine) -> None:
    helpers = conftest_engine
    nikolai = helpers.tofu_qa(20, 25)
    set_id = helpers.register(runtime, "nikolai", nikolai)
    layer = runtime.guard.state.get(set_id).artifacts.layer
    question = nikolai[1][0]
    params = SamplingParams(max_new_tokens=10)
    steered = run(engine.generate(GenerationRequest(chat(question), params)))
    assert steered.steered and {m.forget_set_id for m in steered.matched} == {set_id}

    revoke_at, calls = 4, [0]
    real_sync = runtime.sync

    def sync(**kwargs: Any) -> bool:  # revoke as another process would, at the start of step 4
        calls[0] += 1
        if calls[0] == revoke_at:
            runtime.registry.revoke(set_id, reason="test", actor="tests")
        return bool(real_sync(**kwargs))

    eng = Engine(runtime, runtime.settings.model_copy(update={**MECHANICS, "sync_interval_s": 1e-6}))
    before = runtime.guard.hooks.calls(layer)
    runtime.sync = sync
    try:
        got = run(eng.generate(GenerationRequest(chat(question), params)))
    finally:
        runtime.sync = real_sync
        eng.close(drain_timeout=5)
    after_calls = runtime.guard.hooks.calls(layer)
    calls_total, steered_calls = (a - b for a, b in zip(after_calls, before, strict=True))
    # Step 1 = prefill (token 0) + decode (token 1); step k decodes token k. Revoked at the start of
    # step 4: the prefill and the decodes of steps 1-3 were steered, the later ones not.
    assert steered_calls == revoke_at
    assert calls_total == got.completion_tokens + (got.finish_reason == "stop")  # one forward per token
    assert got.token_ids[:revoke_at] == steered.token_ids[:revoke_at]
    after = run(engine.generate(GenerationRequest(chat(question), params)))
    assert not after.steered and after.matched == ()


SHAKESPEARE = ["William Shakespeare was an English playwright, poet and actor.",
               "Shakespeare was born in Stratford-upon-Avon in 1564.",
               "William Shakespeare wrote Hamlet, Macbeth and King Lear.",
               "Shakespeare married Anne Hathaway and had three children.",
               "Many regard William Shakespeare as the greatest writer in the English language."]


def test_answer_recheck_steers_a_question_that_avoids_the_forgotten_name(
        runtime: Any, policy_engine: Engine, reference: dict[str, Generation]) -> None:
    set_id = conftest_engine.register(runtime, "shakespeare", None, alpha=None, documents=SHAKESPEARE)
    question, params = chat("Who wrote Romeo and Juliet?"), SamplingParams(max_new_tokens=24)
    opened = [GATE_DECISIONS.labels(result=r) for r in ("open_on_answer", "open_on_leak")]
    try:
        state = runtime.guard.state
        assert not runtime.guard.gate([question], state)[0]  # the prompt alone leaves the gate closed
        base = runtime.guard.generate([question], params, steer=False)[0]
        assert "William Shakespeare" in base.text  # ... and the base model names him

        before = sum(c._value.get() for c in opened)
        got = run(policy_engine.generate(GenerationRequest(question, params)))
        assert got.rechecked and got.steered and {m.forget_set_id for m in got.matched} == {set_id}
        assert "Shakespeare" not in got.text
        assert sum(c._value.get() for c in opened) == before + 1
        # The engine follows the one answer policy: the library path gives the same answer.
        want = generate_reviewed(runtime.guard, [question], params, state=state)[0]
        assert got.token_ids == want.token_ids and got.abstained == want.abstained
        assert got.token_ids != base.token_ids

        steered, unsteered = run(policy_engine.compare(GenerationRequest(question, params)))
        assert steered.rechecked and steered.token_ids == got.token_ids
        assert unsteered.token_ids == base.token_ids and not unsteered.rechecked

        off = Engine(runtime, runtime.settings.model_copy(update=MECHANICS))
        try:
            plain = run(off.generate(GenerationRequest(question, params)))
        finally:
            off.close(drain_timeout=5)
        assert plain.token_ids == base.token_ids and not plain.steered and not plain.rechecked

        # A question whose answer names nothing forgotten keeps the base model's answer bit for bit.
        france = run(policy_engine.generate(GenerationRequest(chat(CLOSED[0]), GREEDY)))
        assert france.token_ids == reference[CLOSED[0]].token_ids and not france.rechecked
        assert sum(c._value.get() for c in opened) == before + 2  # the compare's steered arm, not France
    finally:
        runtime.registry.revoke(set_id, reason="test", actor="tests")
        runtime.sync()


def test_a_stream_sends_nothing_unchecked_and_restarts_steered_from_what_was_sent(
        runtime: Any, policy_engine: Engine) -> None:
    set_id = conftest_engine.register(runtime, "shakespeare-stream", None, alpha=None, documents=SHAKESPEARE)
    question, params = chat("Who wrote Romeo and Juliet?"), SamplingParams(max_new_tokens=24)
    guard = runtime.guard
    try:
        state = guard.state
        base = guard.generate([question], params, steer=False)[0]

        async def collect() -> list[Any]:
            req = GenerationRequest(question, params)
            return [event async for event in await policy_engine.open_stream(req)]

        events = run(collect())
        gate, final = events[0], events[-1]
        assert isinstance(gate, GateInfo) and not gate.steered  # the prompt leaves the gate closed
        assert isinstance(final, Generation) and final.steered and final.rechecked
        assert {m.forget_set_id for m in final.matched} == {set_id}
        sent = "".join(e for e in events if isinstance(e, str))
        assert sent == final.text and "Shakespeare" not in sent
        # Held back stream_holdback_tokens at a time: the first check the policy does not accept
        # makes the row start again, steered, after the text of the checks before it.
        every = runtime.settings.stream_holdback_tokens
        opened_at = next(n for n in range(every, len(base.token_ids) + every, every) if review(
            guard, state, question, guard.tokenizer.decode(base.token_ids[:n], skip_special_tokens=True),
            steered=False, final=n >= len(base.token_ids)).action != "accept")
        kept = opened_at - every
        if final.abstained:
            assert final.text == runtime.settings.abstain_text or kept > 0
        else:
            assert final.token_ids[:kept] == base.token_ids[:kept] and final.token_ids != base.token_ids
    finally:
        runtime.registry.revoke(set_id, reason="test", actor="tests")
        runtime.sync()


def test_the_default_gate_setting_chooses_the_rule_new_sets_are_built_with(runtime: Any) -> None:
    assert runtime.build_config().gate == "auto"
    basil = runtime.guard.state.get(conftest_engine.active_id(runtime, "basil")).artifacts
    assert basil.gate == "subject"  # auto: basil's five QA pairs are about one person
    real = runtime.settings
    runtime.settings = real.model_copy(update={"default_gate": "paper"})
    try:
        set_id = conftest_engine.register(runtime, "paper-rule", None, alpha=None, documents=SHAKESPEARE)
    finally:
        runtime.settings = real
    try:
        art = runtime.guard.state.get(set_id).artifacts
        assert art.gate == "paper" and art.doc_embeddings is not None and not art.subjects
        assert runtime.guard.gate([chat("What did Shakespeare write?")])[0]  # centroid similarity alone
    finally:
        runtime.registry.revoke(set_id, reason="test", actor="tests")
        runtime.sync()


def test_limits_are_field_errors(engine: Engine) -> None:
    async def submit(req: GenerationRequest) -> None:
        engine.submit(req)

    with pytest.raises(ConfigError) as too_long:
        run(submit(GenerationRequest(chat("hi"), SamplingParams(max_new_tokens=10_000))))
    assert too_long.value.field == "max_new_tokens"
    with pytest.raises(ConfigError) as prompt:
        run(submit(GenerationRequest("word " * 2000, GREEDY)))
    assert prompt.value.field == "prompt"


def test_full_queue_raises_queue_full_with_retry_after(runtime: Any) -> None:
    settings = runtime.settings.model_copy(update={"queue_size": 1, "max_batch_size": 1})
    eng = Engine(runtime, settings)
    eng.start()

    async def flood() -> QueueFullError:
        handles = []
        try:
            for _ in range(4):
                req = GenerationRequest(chat(CLOSED[0]), SamplingParams(max_new_tokens=8))
                handles.append(eng.submit(req))
        except QueueFullError as exc:
            await asyncio.gather(*(h.result() for h in handles))
            return exc
        raise AssertionError("expected QueueFullError")

    try:
        exc = run(flood())
        assert exc.status_code == 429 and exc.retry_after >= 1
    finally:
        eng.close(drain_timeout=5)


def test_request_past_its_timeout_fails_and_frees_its_row(runtime: Any) -> None:
    eng = Engine(runtime, runtime.settings.model_copy(update={"request_timeout_s": 0.4}))
    eng.start()
    try:
        with pytest.raises(RequestTimeoutError):
            run(eng.generate(GenerationRequest(chat(CLOSED[1]), SamplingParams(max_new_tokens=64))))
        run(wait_until(lambda: eng.active_rows == 0))
    finally:
        eng.close(drain_timeout=5)


def test_abandoned_stream_is_cancelled_and_shutdown_refuses_new_requests(runtime: Any) -> None:
    eng = Engine(runtime, runtime.settings)
    eng.start()

    async def abandon() -> None:
        stream = await eng.open_stream(GenerationRequest(chat(CLOSED[1]), SamplingParams(max_new_tokens=64)))
        async for event in stream:
            if isinstance(event, str):
                break
        await stream.aclose()  # type: ignore[attr-defined]

    run(abandon())
    run(wait_until(lambda: eng.active_rows == 0))
    eng.close(drain_timeout=1)

    async def late() -> None:
        await eng.generate(GenerationRequest(chat("hi"), GREEDY))

    with pytest.raises(EngineClosedError):
        run(late())
