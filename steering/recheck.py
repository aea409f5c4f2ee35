"""The answer policy (our addition to GUARD-IT, arXiv 2605.12765): every answer is reviewed before it leaves.

The paper gates the prompt only. A prompt can ask about a forgotten person without naming them ("Who
directed Jackie Brown?"), and steering can be too weak for a fact the model knows well. So each answer
(or, for a stream, the text so far) is reviewed once more, and one of four things happens:

- ``accept``: nothing to do. A row whose gate stayed closed keeps the base model's answer bit for bit.
- ``steer``: the gate was closed, but the prompt plus the answer (or the answer alone) opens it, or the
  answer shows a forget set's content (``steering.leakcheck``): generate again, steered by what opened.
- ``escalate``: a steered answer still shows the content: generate again with each open set's alpha
  raised by ``ESCALATION`` (the next rung).
- ``abstain``: an escalated answer still shows it, a steered answer is degenerate (collapsed, an
  echo of the question, off its topic: ``steering.checks.is_degenerate``), or a steered answer
  confirms, denies or picks an option for a closed question ("Was he born in Kuwait City?", a multiple
  choice: ``steering.checks.is_verdict``; either way it would tell whether the claim was right):
  answer with a neutral "I don't know" instead.

``review`` decides; the serving engine and ``generate_reviewed`` (the library path) act on it, so both
follow one policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from steering.checks import is_degenerate, is_verdict
from steering.gate_input import contents
from steering.gates import GateMatch, GateState
from steering.guard import Generation, Guard, SamplingParams
from steering.leakcheck import EmbedFn, check_output
from steering.types import Prompt
from steering.vectors import embed

#: Strength added to every open set's alpha when a steered answer still leaks.
ESCALATION = 0.2
#: What an abstaining answer says by default: the form of the model's own not-knowing answers, with
#: no word about removal (an erasure request can itself be private).
DEFAULT_ABSTAIN_TEXT = "I don't have information about that."

Action = Literal["accept", "steer", "escalate", "abstain"]


@dataclass(frozen=True)
class Verdict:
    """What to do with one answer (see the module docstring).

    Attributes:
        action: ``accept``, ``steer``, ``escalate`` or ``abstain``.
        matches: for ``steer`` and ``escalate``, the clusters to steer with.
        boost: for ``escalate``, the strength to add to each open set's alpha.
        reason: why (``gate_on_answer``, ``leak``, ``leak_after_escalation``, ``degenerate``,
            ``closed_question``).
    """

    action: Action
    matches: tuple[GateMatch, ...] = ()
    boost: float = 0.0
    reason: str | None = None


ACCEPT = Verdict("accept")


def with_answer(prompt: Prompt, answer: str) -> Prompt:
    """The prompt followed by the model's answer as its own turn (the gate reads both, and each alone)."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return [*prompt, {"role": "assistant", "content": answer}]


def late_matches(guard: Guard, prompts: Sequence[Prompt], answers: Sequence[str],
                 state: GateState) -> list[list[GateMatch]]:
    """The gate on each prompt followed by its (unsteered) answer: what the re-check opens."""
    return guard.gate([with_answer(p, a) for p, a in zip(prompts, answers, strict=True)], state)


def question_of(prompt: Prompt) -> str:
    """The text an answer responds to: the last user turn of a chat, or the raw prompt."""
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m.get("role") == "user" and isinstance(m.get("content"), str)]
    return users[-1] if users else "\n".join(contents(prompt))


def leaking_sets(state: GateState, prompt: Prompt, answer: str, about: Sequence[str] = (),
                 embed_fn: EmbedFn | None = None) -> list[str]:
    """Ids of the active sets whose content ``answer`` shows (``steering.leakcheck``); ``about`` are
    the sets the gate opened for this prompt (their facts in the answer are anchored to it).
    ``embed_fn`` (the gate's embedder) enables the restated-document rule, with each set's document
    embeddings; it embeds only answers that add a fact too weak alone."""
    asked = "\n".join(contents(prompt))
    out = []
    for a in state.sets:
        profile = a.artifacts.leak_profile
        if profile is None:
            continue
        docs = a.artifacts.doc_embeddings
        if check_output(profile, answer, prompt=asked, about=a.forget_set_id in about, embed=embed_fn,
                        unit_vectors=docs.numpy() if docs is not None else None).leaked:
            out.append(a.forget_set_id)
    return out


def nearest_clusters(guard: Guard, state: GateState, set_ids: Sequence[str], texts: Sequence[str]) -> list[GateMatch]:
    """For each set in ``set_ids``, its cluster closest to any of ``texts`` (what a leak steers with)."""
    if not set_ids or not texts:
        return []
    emb = embed(guard.embedder, list(texts))  # [n_texts, d_embed]
    out = []
    for set_id in set_ids:
        centroids = state.get(set_id).artifacts.centroids.numpy()  # [k, d_embed]
        sims = np.asarray(emb, dtype=np.float32) @ centroids.T.astype(np.float32)
        best = sims.max(axis=0)
        cluster = int(best.argmax())
        out.append(GateMatch(set_id, cluster, float(best[cluster])))
    return out


def review(guard: Guard, state: GateState, prompt: Prompt, answer: str, *, steered: bool, boost: float = 0.0,
           matched: Sequence[GateMatch] = (), recheck: bool = True, leak_check: bool = True,
           final: bool = True) -> Verdict:
    """Decide what happens to ``answer`` (see the module docstring).

    Args:
        guard: the guarded model (its embedder gates the answer).
        state: the gate snapshot the answer was generated under.
        prompt: what the model read.
        answer: the answer so far (a stream's text up to now, when ``final`` is False).
        steered: whether the answer was generated steered.
        boost: the escalation the answer was generated with.
        matched: the clusters it was steered with.
        recheck: gate the prompt plus the answer when the prompt left the gate closed.
        leak_check: look for the forget sets' content in the answer.
        final: False for a stream's partial text: a degenerate check waits for the end.
    """
    if state.empty:
        return ACCEPT
    if not answer.strip():
        # Steering can end an answer at its first token: an empty steered answer is no reply (it
        # gets the neutral one); an empty unsteered one is the base model's own.
        return Verdict("abstain", reason="degenerate") if steered and final else ACCEPT
    if not steered:
        opened = late_matches(guard, [prompt], [answer], state)[0] if recheck else []
        leaks = leaking_sets(state, prompt, answer, [m.forget_set_id for m in opened], _embedder(guard)) \
            if leak_check else []
        missing = [s for s in leaks if s not in {m.forget_set_id for m in opened}]
        opened += nearest_clusters(guard, state, missing, [answer])
        if opened:
            return Verdict("steer", tuple(opened), 0.0, "leak" if leaks else "gate_on_answer")
        return ACCEPT
    if leak_check and is_verdict(question_of(prompt), answer):
        return Verdict("abstain", reason="closed_question")
    leaks = leaking_sets(state, prompt, answer, [m.forget_set_id for m in matched], _embedder(guard)) \
        if leak_check else []
    if leaks:
        if boost < ESCALATION:
            extra = [m for m in nearest_clusters(guard, state, leaks, [answer])
                     if (m.forget_set_id, m.cluster) not in {(x.forget_set_id, x.cluster) for x in matched}]
            return Verdict("escalate", (*matched, *extra), ESCALATION, "leak")
        return Verdict("abstain", reason="leak_after_escalation")
    if final and is_degenerate(question_of(prompt), answer, embed=_embedder(guard)):
        return Verdict("abstain", reason="degenerate")
    return ACCEPT


def _embedder(guard: Guard) -> EmbedFn:
    return lambda texts: embed(guard.embedder, list(texts))


def abstained(gen: Generation, text: str, reason: str | None, tokenizer: object) -> Generation:
    """``gen`` replaced by the neutral answer ``text`` (the model's not-knowing form)."""
    ids = tuple(tokenizer.encode(text, add_special_tokens=False))  # type: ignore[attr-defined]
    return replace(gen, text=text, finish_reason="stop", completion_tokens=len(ids), token_ids=ids,
                   steered=True, abstained=True, abstain_reason=reason)


def generate_reviewed(guard: Guard, prompts: Sequence[Prompt], params: SamplingParams = SamplingParams(), *,
                      state: GateState | None = None, recheck: bool = True, leak_check: bool = True,
                      abstain_text: str = DEFAULT_ABSTAIN_TEXT) -> list[Generation]:
    """``guard.generate`` under the answer policy (the library twin of the serving engine's path).

    Args:
        guard: the guarded model.
        prompts: chats or raw strings.
        params: decoding parameters (greedy recommended: the policy reads the base answer).
        state: gate snapshot (default: the guard's current one).
        recheck, leak_check: the policy's two checks (see ``review``).
        abstain_text: the neutral answer.

    Returns:
        One generation per prompt; ``rechecked`` marks rows steered after their first answer.
    """
    state = state or guard.state
    out = list(guard.generate(prompts, params, state=state))
    pending = list(range(len(prompts)))
    for attempt in range(3):  # steer, escalate, abstain: at most two more generations per row
        verdicts = {i: review(guard, state, prompts[i], out[i].text, steered=out[i].steered,
                              boost=out[i].boost, matched=out[i].matched, recheck=recheck,
                              leak_check=leak_check) for i in pending}
        pending = [i for i, v in verdicts.items() if v.action in ("steer", "escalate")]
        for i, v in verdicts.items():
            if v.action == "abstain":
                out[i] = abstained(out[i], abstain_text, v.reason, guard.tokenizer)
        if not pending or attempt == 2:
            break
        plans = guard.plan([prompts[i] for i in pending], state, forced=[verdicts[i].matches for i in pending],
                           boost=[verdicts[i].boost for i in pending])
        again = guard.generate([prompts[i] for i in pending], params, plans=plans)
        for i, gen, plan in zip(pending, again, plans, strict=True):
            out[i] = replace(gen, rechecked=True, boost=plan.boost)
    return out

