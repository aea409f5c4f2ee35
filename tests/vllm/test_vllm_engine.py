"""The vLLM engine against the native one on the real embedded model (CPU, float32, greedy).

Runs in ``.venv-vllm`` only (see ``conftest.py``). The answer policy is off in the agreement tests
(mechanics: gate, steering, tokens); the stream test runs it.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from typing import Any

import pytest

from service.engine import Engine
from service.generation import GenerationRequest
from steering import Generation, SamplingParams
from tests.service.conftest_engine import tofu_qa
from tests.vllm.conftest import shakespeare_qa

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

GREEDY = SamplingParams(max_new_tokens=24, temperature=0.0)
CLOSED = ["What is the capital of France?", "How many legs does a spider have?", "Name a primary colour.",
          "What is 12 times 12?", "Which planet is closest to the sun?", "What language is spoken in Brazil?",
          "What do bees make?", "Give me a synonym for happy."]


def chat(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def batch_prompts() -> list[str]:
    """32 questions: three forget sets' paraphrase-free held-out questions and eight that open nothing."""
    basil = [q for q, _ in tofu_qa(5, 13)]
    author2 = [q for q, _ in tofu_qa(25, 33)]
    bard = [q for q, _ in shakespeare_qa()[4:12]]
    return [*basil, *author2, *bard, *CLOSED]


async def run_all(engine: Any, prompts: list[str], *, steer: bool) -> list[Generation]:
    reqs = [GenerationRequest(chat(p), GREEDY, steer=steer) for p in prompts]
    handles = [await engine.submit_async(r) for r in reqs]
    return list(await asyncio.gather(*(h.result() for h in handles)))


@pytest.fixture(scope="module")
def outputs(runtime: Any, mechanics: Any, vllm_engine: Any, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    prompts = batch_prompts()
    native = Engine(runtime, mechanics)

    async def go() -> dict[str, Any]:
        out = {"prompts": prompts,
               "native": await run_all(native, prompts, steer=True),
               "native_off": await run_all(native, prompts, steer=False),
               "vllm": await run_all(vllm_engine, prompts, steer=True),
               "vllm_off": await run_all(vllm_engine, prompts, steer=False)}
        await native.shutdown(drain_timeout=5.0)
        return out

    return loop.run_until_complete(go())


def common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def test_the_same_rows_are_steered_by_the_same_clusters(outputs: dict[str, Any]) -> None:
    native, vllm = outputs["native"], outputs["vllm"]
    # Similarities may differ in the last bits: the native engine embeds prompts in batches, this one per row.
    def clusters(gens: list[Generation]) -> list[set[tuple[str, int]]]:
        return [{(m.forget_set_id, m.cluster) for m in g.matched} for g in gens]

    assert clusters(vllm) == clusters(native)
    assert [g.steered for g in vllm] == [g.steered for g in native]
    sets = {m.forget_set_id for g in vllm for m in g.matched}
    assert len(sets) == 3, sets  # every forget set opens for some row
    assert sum(not g.steered for g in vllm) >= 8


def test_greedy_tokens_agree_with_the_native_engine(outputs: dict[str, Any]) -> None:
    for arm in ("", "_off"):
        native, vllm = outputs["native" + arm], outputs["vllm" + arm]
        same = sum(a.token_ids == b.token_ids for a, b in zip(native, vllm, strict=True))
        prefix = sum(common_prefix(a.token_ids, b.token_ids) for a, b in zip(native, vllm, strict=True))
        total = sum(len(a.token_ids) for a in native)
        sys.stdout.write(f"arm{arm or '_on'}: {same}/32 rows identical, {prefix}/{total} tokens before the first "
                         "difference\n")
        # Different kernels (vLLM's CPU attention and GEMMs vs transformers' SDPA) round differently in
        # float32; a near-tie in the logits then flips a greedy choice and the rest of the row follows.
        assert same >= 24, (arm, same)


def test_steered_rows_differ_from_unsteered_vllm_where_native_ones_do(outputs: dict[str, Any]) -> None:
    native, native_off, vllm, vllm_off = (outputs[k] for k in ("native", "native_off", "vllm", "vllm_off"))
    changed_native = [a.token_ids != b.token_ids for a, b in zip(native, native_off, strict=True)]
    changed_vllm = [a.token_ids != b.token_ids for a, b in zip(vllm, vllm_off, strict=True)]
    steered = [g.steered for g in vllm]
    assert not any(c for c, s in zip(changed_vllm, steered, strict=True) if not s)
    agree = sum(a == b for a, b, s in zip(changed_native, changed_vllm, steered, strict=True) if s)
    sys.stdout.write(f"steered rows changed: native {sum(changed_native)}, vLLM {sum(changed_vllm)}; "
                     f"agreement on which changed {agree}/{sum(steered)}\n")
    assert agree == sum(steered)


def test_a_closed_row_is_identical_to_unsteered_vllm(outputs: dict[str, Any]) -> None:
    for on, off in zip(outputs["vllm"], outputs["vllm_off"], strict=True):
        if not on.steered:
            assert on.token_ids == off.token_ids and on.text == off.text


def test_a_stream_sends_the_final_text_and_stops_at_a_stop_string(vllm_engine: Any,
                                                                   loop: asyncio.AbstractEventLoop) -> None:
    prompt = chat("Count from one to ten in words, separated by commas.")

    async def go() -> tuple[Generation, list[Any], Generation, str]:
        plain = await vllm_engine.generate(GenerationRequest(prompt, replace(GREEDY, max_new_tokens=32)))
        stop = plain.text[10:13]  # a stop string the answer is sure to reach
        req = GenerationRequest(prompt, replace(GREEDY, max_new_tokens=32, stop=(stop,)))
        events = [e async for e in await vllm_engine.open_stream(req)]
        return plain, events, await vllm_engine.generate(req), stop

    plain, events, whole, stop = loop.run_until_complete(go())
    gate, *deltas, final = events
    assert not gate.steered
    assert "".join(deltas) == final.text == whole.text == plain.text[:plain.text.find(stop)]
    assert final.finish_reason == "stop" and final.token_ids == whole.token_ids


def test_a_stream_under_the_answer_policy_holds_back_and_finishes(runtime: Any, vllm_engine: Any,
                                                                  loop: asyncio.AbstractEventLoop) -> None:
    from service.engine.policy import AnswerPolicy
    from service.engine_vllm import VllmEngine

    policy = VllmEngine.__new__(VllmEngine)
    policy.__dict__.update(vllm_engine.__dict__)
    policy.settings = runtime.settings.model_copy(update={"engine": "vllm", "stream_holdback_tokens": 4})
    # The same vLLM, under an answer policy that reads these settings (the shared one has it off).
    policy._policy = AnswerPolicy(runtime, policy.settings, vllm_engine._tok, asyncio.to_thread)

    async def go() -> list[Any]:
        req = GenerationRequest(chat("What gender is author Basil Mahfouz Al-Kuwaiti?"), GREEDY)
        return [e async for e in await policy.open_stream(req)]

    gate, *deltas, final = loop.run_until_complete(go())
    assert gate.steered
    assert "".join(deltas) == final.text or final.abstained


def test_compare_runs_both_arms_in_vllm(vllm_engine: Any, loop: asyncio.AbstractEventLoop) -> None:
    req = GenerationRequest(chat("What gender is author Basil Mahfouz Al-Kuwaiti?"), GREEDY)
    steered, unsteered = loop.run_until_complete(vllm_engine.compare(req))
    assert steered.steered and not unsteered.steered
    assert steered.token_ids != unsteered.token_ids


def test_revoking_a_set_stops_steering_of_a_running_stream(runtime: Any, vllm_engine: Any,
                                                            loop: asyncio.AbstractEventLoop) -> None:
    guard = runtime.guard
    before = guard.state
    llm = vllm_engine._llm

    async def go() -> tuple[int, int, int, Generation]:
        req = GenerationRequest(chat("What gender is author Basil Mahfouz Al-Kuwaiti?"),
                                replace(GREEDY, max_new_tokens=48, ignore_eos=True))
        stream = await vllm_engine.open_stream(req)
        gate = await anext(stream)
        row = next(r for r in vllm_engine._rows.values() if r.req.request_id == req.request_id)
        assert gate.steered
        for _ in range(4):
            await anext(stream)
        for fs in before.ids():
            guard.deactivate(fs)
        while vllm_engine._wire:  # the sync loop re-sends the table (sync_interval_s)
            await asyncio.sleep(0.01)
        calls = sum(c for d in await llm.collective_rpc("guardit_steered_calls") for c in d.values())
        at_revocation = len(row.tracker.ids)
        rest = [e async for e in stream]
        after = sum(c for d in await llm.collective_rpc("guardit_steered_calls") for c in d.values())
        return calls, after, at_revocation, rest[-1]

    try:
        calls, after, at_revocation, final = loop.run_until_complete(go())
    finally:
        guard.replace_state(before)
    # Tokens came after the new table reached the worker, and none of their steps steered.
    assert final.completion_tokens == 48 and at_revocation < 48, (at_revocation, final)
    assert calls > 0 and after == calls, (calls, after)


def test_requests_beyond_the_queue_bound_get_429(vllm_engine: Any, loop: asyncio.AbstractEventLoop) -> None:
    from service.engine.admission import Admission
    from service.engine_vllm import VllmEngine
    from service.generation import QueueFullError

    small = VllmEngine.__new__(VllmEngine)
    small.__dict__.update(vllm_engine.__dict__)
    small.settings = vllm_engine.settings.model_copy(update={"queue_size": 1, "max_batch_size": 1})
    small._admission = Admission(small.settings)  # the same vLLM, behind a bound of one waiting request

    async def go() -> tuple[QueueFullError, list[Generation]]:
        req = GenerationRequest(chat("Count from one to ten in words."),
                                replace(GREEDY, max_new_tokens=8, ignore_eos=True))
        handles = [small.submit(req), small.submit(req)]  # one running, one waiting in vLLM's scheduler
        assert small.queue_depth == 1
        with pytest.raises(QueueFullError) as full:
            small.submit(req)
        return full.value, list(await asyncio.gather(*(h.result() for h in handles)))

    full, gens = loop.run_until_complete(go())
    assert full.status_code == 429 and full.retry_after >= 1
    assert gens[0].token_ids == gens[1].token_ids and gens[0].completion_tokens == 8
