"""Forget-set documents: parse files, validate, dedupe, render for the LLM (METHOD.md step 1)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steering.errors import ForgetSetError


@dataclass(frozen=True)
class QAPair:
    """A question and the answer to forget."""

    question: str
    answer: str


@dataclass(frozen=True)
class ForgetDocuments:
    """The documents of one forget set: plain texts or QA pairs (exactly one kind)."""

    documents: tuple[str, ...] = ()
    qa: tuple[QAPair, ...] = ()

    def __len__(self) -> int:
        return len(self.documents) + len(self.qa)

    @property
    def kind(self) -> str:
        """``"qa"`` or ``"documents"``."""
        return "qa" if self.qa else "documents"

    def gate_texts(self) -> list[str]:
        """What the gate's embedder sees per document (a QA pair as question and answer)."""
        if self.qa:
            return [f"{pair.question} {pair.answer}" for pair in self.qa]
        return list(self.documents)


def make_documents(
    documents: Sequence[str] | None = None,
    qa: Sequence[QAPair | tuple[str, str]] | None = None,
    *,
    max_documents: int = 5000,
    max_chars: int = 20000,
) -> ForgetDocuments:
    """Validate and dedupe (order kept) a forget set.

    Raises:
        ForgetSetError: none or both kinds given, empty set or text, too many documents, too long.
    """
    if (documents is None) == (qa is None):
        raise ForgetSetError("expected exactly one of documents or qa, found " + (
            "both" if documents is not None else "neither"), field="documents")
    field = "documents" if documents is not None else "qa"
    items: list[Any] = list(documents if documents is not None else qa or [])
    if not items:
        raise ForgetSetError(f"expected at least one entry in {field}, found an empty list", field=field)
    if len(items) > max_documents:
        raise ForgetSetError(
            f"expected at most {max_documents} entries in {field}, found {len(items)}", field=field)
    if documents is not None:
        texts = [_check_text(t, f"documents[{i}]", max_chars) for i, t in enumerate(items)]
        return ForgetDocuments(documents=tuple(dict.fromkeys(texts)))
    pairs: list[QAPair] = []
    for i, item in enumerate(items):
        q, a = (item.question, item.answer) if isinstance(item, QAPair) else item
        pairs.append(QAPair(_check_text(q, f"qa[{i}].question", max_chars),
                            _check_text(a, f"qa[{i}].answer", max_chars)))
    return ForgetDocuments(qa=tuple(dict.fromkeys(pairs)))


def check_texts(values: Sequence[Any], field: str, *, max_items: int, max_chars: int) -> list[str]:
    """Validate a list of texts (e.g. a retain corpus) element by element; returns them stripped.

    Raises:
        ForgetSetError: too many items, a non-string or empty item, or one that is too long.
    """
    if len(values) > max_items:
        raise ForgetSetError(f"expected at most {max_items} entries in {field}, found {len(values)}", field=field)
    return [_check_text(v, f"{field}[{i}]", max_chars) for i, v in enumerate(values)]


def _check_text(value: Any, field: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise ForgetSetError(f"expected {field} to be a string, found {type(value).__name__}", field=field)
    text = value.strip()
    if not text:
        raise ForgetSetError(f"expected {field} to be non-empty text, found an empty string", field=field)
    if len(text) > max_chars:
        raise ForgetSetError(f"expected {field} of at most {max_chars} characters, found {len(text)}",
                             field=field)
    return text


def text_lines(path: Path) -> list[tuple[int, str]]:
    """The non-blank lines of a UTF-8 file with their 1-based numbers (``ForgetSetError`` naming
    ``file`` when it cannot be read)."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ForgetSetError(f"expected a readable UTF-8 file at {path}, found: {exc}", field="file") from exc
    return [(n, line) for n, line in enumerate(raw.splitlines(), start=1) if line.strip()]


def json_lines(path: Path, lines: list[tuple[int, str]]) -> list[tuple[int, Any]]:
    """Each numbered line parsed as JSON (``ForgetSetError`` naming ``file`` and the line if not)."""
    out = []
    for n, line in lines:
        try:
            out.append((n, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise ForgetSetError(f"{path.name} line {n}: expected a JSON object, found invalid JSON "
                                 f"({exc.msg})", field="file") from exc
    return out


def is_jsonl(path: Path) -> bool:
    """Whether a file is read as JSON lines (by its extension)."""
    return path.suffix.lower() in {".jsonl", ".json", ".ndjson"}


def read_forget_file(path: Path, *, max_documents: int = 5000) -> ForgetDocuments:
    """Read a forget FILE: JSONL of ``{"text"}`` or ``{"question", "answer"}``; ``.txt`` one per line.

    Raises:
        ForgetSetError: unreadable file, malformed line (named by its 1-based number), mixed kinds.
    """
    lines = text_lines(path)
    if not is_jsonl(path):
        return make_documents([line for _, line in lines], max_documents=max_documents)
    texts: list[str] = []
    pairs: list[tuple[str, str]] = []
    for n, obj in json_lines(path, lines):
        if isinstance(obj, dict) and isinstance(obj.get("text"), str):
            texts.append(obj["text"])
        elif isinstance(obj, dict) and isinstance(obj.get("question"), str) and isinstance(obj.get("answer"), str):
            pairs.append((obj["question"], obj["answer"]))
        else:
            raise ForgetSetError(f"{path.name} line {n}: expected an object with a string 'text' or string "
                                 f"'question' and 'answer', found {_describe(obj)}", field="file")
    if texts and pairs:
        raise ForgetSetError(f"{path.name}: expected one kind of line, found {len(texts)} 'text' lines and "
                             f"{len(pairs)} QA lines", field="file")
    if not texts and not pairs:
        raise ForgetSetError(f"{path.name}: expected at least one document, found none", field="file")
    if pairs:
        return make_documents(qa=pairs, max_documents=max_documents)
    return make_documents(texts, max_documents=max_documents)


def _describe(obj: Any) -> str:
    if isinstance(obj, dict):
        return "keys " + ", ".join(sorted(map(str, obj))) if obj else "an empty object"
    return type(obj).__name__


@dataclass(frozen=True)
class RenderedText:
    """Text fed to the LLM, and the character spans of its own content.

    Only tokens starting inside ``spans`` are pooled: a chat template's system prompt and role
    markup are format, not content, and would otherwise dominate the steering direction.
    """

    text: str
    spans: tuple[tuple[int, int], ...]

    @classmethod
    def plain(cls, text: str) -> RenderedText:
        """A text whose every character is content."""
        return cls(text, ((0, len(text)),))


def chat_prompt(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """A chat rendered with the model's template, ready for the assistant's reply."""
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True))
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"


def render_documents(tokenizer: Any, docs: ForgetDocuments) -> list[RenderedText]:
    """Render documents for PSV pooling: QA pairs as a chat turn (user = question, assistant = answer)."""
    if not docs.qa:
        return [RenderedText.plain(text) for text in docs.documents]
    return [render_qa(tokenizer, pair) for pair in docs.qa]


def render_qa(tokenizer: Any, pair: QAPair) -> RenderedText:
    """One QA pair in the chat template; the question and the answer are the content spans."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": pair.question}, {"role": "assistant", "content": pair.answer}]
        text = str(tokenizer.apply_chat_template(messages, tokenize=False))
    else:
        text = f"Question: {pair.question}\nAnswer: {pair.answer}"
    q_start = text.find(pair.question)
    a_start = text.find(pair.answer, max(q_start, 0) + len(pair.question))
    if q_start < 0 or a_start < 0:  # a template that rewrites content: pool everything
        return RenderedText.plain(text)
    return RenderedText(text, ((q_start, q_start + len(pair.question)), (a_start, a_start + len(pair.answer))))


def render_texts(texts: Iterable[str]) -> list[RenderedText]:
    """Plain texts (retain corpus) rendered as they are."""
    return [RenderedText.plain(t) for t in texts]
