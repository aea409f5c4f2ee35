"""Real-knowledge items the model actually knows, grouped by topic (for forgetting what it knows)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from evals.metrics import contains_answer
from steering.guard import Guard, SamplingParams
from steering.vectors import embed


@dataclass(frozen=True)
class KnowledgeItem:
    """A question with a short reference answer, and what the base model said."""

    source: str
    index: int
    question: str
    answer: str
    base_output: str = ""
    known: bool = False
    topic: int = -1


def chat(question: str) -> list[dict[str, str]]:
    """A one-turn chat."""
    return [{"role": "user", "content": question}]


def answer_all(guard: Guard, items: Sequence[KnowledgeItem], *, steer: bool, max_new_tokens: int = 24,
               batch_size: int = 16) -> list[str]:
    """Greedy answers of the guarded (or base) model, batched."""
    outputs: list[str] = []
    params = SamplingParams(max_new_tokens=max_new_tokens)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        outputs.extend(g.text for g in guard.generate([chat(i.question) for i in chunk], params, steer=steer))
    return outputs


def select_known(guard: Guard, items: Sequence[KnowledgeItem], *, max_new_tokens: int = 24,
                 batch_size: int = 16) -> list[KnowledgeItem]:
    """Run the base model (no steering) and mark the items whose answer contains the reference."""
    outputs = answer_all(guard, items, steer=False, max_new_tokens=max_new_tokens, batch_size=batch_size)
    return [replace(item, base_output=out, known=contains_answer(out, item.answer))
            for item, out in zip(items, outputs, strict=True)]


def topic_groups(embedder: object, items: Sequence[KnowledgeItem], *, k: int = 8, seed: int = 0) -> list[KnowledgeItem]:
    """Assign each item a topic: k-means (fixed seed) over sentence embeddings of question + answer."""
    from sklearn.cluster import KMeans

    vectors = embed(embedder, [f"{i.question} {i.answer}" for i in items])
    labels = KMeans(n_clusters=min(k, len(items)), n_init=10, random_state=seed).fit(vectors).labels_
    return [replace(item, topic=int(label)) for item, label in zip(items, labels, strict=True)]


def largest_topic(items: Sequence[KnowledgeItem]) -> int:
    """The topic with the most items (lowest label on ties)."""
    labels = np.array([i.topic for i in items])
    values, counts = np.unique(labels, return_counts=True)
    return int(values[np.argmax(counts)])
