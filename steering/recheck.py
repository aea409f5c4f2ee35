"""Answer re-check (our addition to GUARD-IT, arXiv 2605.12765): gate the prompt *and* the answer.

A prompt can ask about a forgotten person without naming them ("Who directed Jackie Brown?"); the
unsteered answer then names them. Here the gate is run again on the chat plus the unsteered answer,
and a row whose gate opens only then is generated again, steered by the clusters that opened.
Rows whose gate opened on the prompt are steered from the first token as usual; rows that stay closed
keep the base model's answer (the no-op property holds). Non-streaming only: a streamed answer
cannot be taken back once its first tokens are out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from steering.gates import ActiveSet, GateMatch, GateState
from steering.guard import Generation, Guard, SamplingParams
from steering.types import Prompt


def with_answer(prompt: Prompt, answer: str) -> Prompt:
    """The prompt followed by the model's answer (an assistant turn for a chat)."""
    if isinstance(prompt, str):
        return f"{prompt}{answer}"
    return [*prompt, {"role": "assistant", "content": answer}]


def late_matches(guard: Guard, prompts: Sequence[Prompt], answers: Sequence[str],
                 state: GateState) -> list[list[GateMatch]]:
    """The gate on each prompt followed by its (unsteered) answer: what the re-check opens."""
    return guard.gate([with_answer(p, a) for p, a in zip(prompts, answers, strict=True)], state)


def forced_state(state: GateState, matches: Sequence[GateMatch]) -> GateState:
    """A snapshot that opens exactly ``matches`` for any prompt (their sets' own alpha, r and mu)."""
    by_set: dict[str, list[int]] = {}
    for m in matches:
        by_set.setdefault(m.forget_set_id, []).append(m.cluster)
    sets = []
    for set_id, clusters in by_set.items():
        active = state.get(set_id)
        art = active.artifacts
        keep = sorted(set(clusters))
        # Only the kept clusters, with the paper rule at T = -1: every cosine reaches it.
        only = replace(art, centroids=art.centroids[keep], psvs=art.psvs[keep], gate="paper",
                       doc_embeddings=None, subject=None)
        sets.append(ActiveSet(set_id, only, -1.0, active.alpha))
    return GateState(tuple(sets))


def generate_rechecked(guard: Guard, prompts: Sequence[Prompt], params: SamplingParams = SamplingParams(), *,
                       state: GateState | None = None) -> list[Generation]:
    """``guard.generate`` with the answer re-check (see the module docstring).

    Args:
        guard: the guarded model.
        prompts: chats or raw strings.
        params: decoding parameters (greedy recommended: the re-check reads the base answer).
        state: gate snapshot (default: the guard's current one).

    Returns:
        One generation per prompt; a re-checked row reports the matches that opened on its answer.
    """
    state = state or guard.state
    first = guard.generate(prompts, params, steer=True, state=state)
    closed = [i for i, g in enumerate(first) if not g.steered]
    if not closed or state.empty:
        return first
    late = late_matches(guard, [prompts[i] for i in closed], [first[i].text for i in closed], state)
    out = list(first)
    groups: dict[tuple[tuple[str, int], ...], list[int]] = {}
    for i, matches in zip(closed, late, strict=True):
        if matches:
            groups.setdefault(tuple((m.forget_set_id, m.cluster) for m in matches), []).append(i)
    for rows in groups.values():
        matches = late[closed.index(rows[0])]
        again = guard.generate([prompts[i] for i in rows], params, steer=True, state=forced_state(state, matches))
        for i, gen in zip(rows, again, strict=True):
            out[i] = replace(gen, matched=tuple(matches), rechecked=True)
    return out
