"""Forget-set documents (arXiv 2605.12765, METHOD.md step 1): validation, files, rendering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from steering.errors import ForgetSetError
from steering.forget_set import (
    QAPair,
    RenderedText,
    check_texts,
    make_documents,
    read_forget_file,
    render_documents,
    render_qa,
)


def test_documents_are_stripped_and_deduplicated_in_order() -> None:
    docs = make_documents(["  b ", "a", "b", "c"])
    assert docs.documents == ("b", "a", "c")
    assert docs.kind == "documents" and len(docs) == 3
    assert docs.gate_texts() == ["b", "a", "c"]


def test_qa_pairs_accept_tuples_and_embed_question_with_answer() -> None:
    docs = make_documents(qa=[("Who?", "Ann"), QAPair("Who?", "Ann"), ("Where?", " Rome ")])
    assert docs.qa == (QAPair("Who?", "Ann"), QAPair("Where?", "Rome"))
    assert docs.kind == "qa"
    assert docs.gate_texts() == ["Who? Ann", "Where? Rome"]


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        (dict(documents=[]), "documents", "at least one entry in documents, found an empty list"),
        (dict(qa=[]), "qa", "at least one entry in qa, found an empty list"),
        (dict(documents=["a"], qa=[("q", "a")]), "documents", "exactly one of documents or qa, found both"),
        (dict(), "documents", "exactly one of documents or qa, found neither"),
        (
            dict(documents=["a", "b", "c"], max_documents=2),
            "documents",
            "at most 2 entries in documents, found 3",
        ),
        (dict(documents=["ok", 3]), "documents[1]", "documents[1] to be a string, found int"),
        (dict(documents=["ok", "   "]), "documents[1]", "documents[1] to be non-empty text"),
        (dict(documents=["x" * 11], max_chars=10), "documents[0]", "at most 10 characters, found 11"),
        (dict(qa=[("q", "a"), ("q2", "")]), "qa[1].answer", "qa[1].answer to be non-empty text"),
        (dict(qa=[(None, "a")]), "qa[0].question", "qa[0].question to be a string, found NoneType"),
    ],
)
def test_bad_forget_sets_are_refused_naming_the_field(
    kwargs: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ForgetSetError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        make_documents(**kwargs)
    assert info.value.field == field


def test_check_texts_names_the_bad_element() -> None:
    assert check_texts([" a ", "b"], "retain", max_items=5, max_chars=10) == ["a", "b"]
    with pytest.raises(ForgetSetError) as info:
        check_texts(["a", ""], "retain", max_items=5, max_chars=10)
    assert info.value.field == "retain[1]"
    with pytest.raises(ForgetSetError, match="at most 1 entries in retain, found 2"):
        check_texts(["a", "b"], "retain", max_items=1, max_chars=10)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_of_texts_and_of_qa_pairs_are_read(tmp_path: Path) -> None:
    texts = _write(tmp_path, "t.jsonl", '{"text": "one"}\n\n{"text": "two"}\n')
    assert read_forget_file(texts).documents == ("one", "two")
    qa = _write(
        tmp_path, "q.jsonl", '{"question": "Q1", "answer": "A1"}\n{"question": "Q2", "answer": "A2"}\n'
    )
    assert read_forget_file(qa).qa == (QAPair("Q1", "A1"), QAPair("Q2", "A2"))
    plain = _write(tmp_path, "p.txt", "first line\n\n  second line \n")
    assert read_forget_file(plain).documents == ("first line", "second line")


def test_malformed_jsonl_names_the_one_based_line_counting_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.jsonl", '{"text": "ok"}\n\n{"text": broken}\n')
    with pytest.raises(
        ForgetSetError, match=r"bad\.jsonl line 3: expected a JSON object, found invalid JSON"
    ) as info:
        read_forget_file(path)
    assert info.value.field == "file"


def test_a_jsonl_line_without_text_or_question_answer_names_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "keys.jsonl", '{"text": "ok"}\n{"question": "only"}\n')
    with pytest.raises(ForgetSetError, match=r"line 2: .*found keys question"):
        read_forget_file(path)
    path = _write(tmp_path, "list.jsonl", '{"text": "ok"}\n[1, 2]\n')
    with pytest.raises(ForgetSetError, match=r"line 2: .*found list"):
        read_forget_file(path)


def test_mixed_or_empty_files_are_refused(tmp_path: Path) -> None:
    mixed = _write(tmp_path, "m.jsonl", '{"text": "t"}\n{"question": "q", "answer": "a"}\n')
    with pytest.raises(ForgetSetError, match="1 'text' lines and 1 QA lines"):
        read_forget_file(mixed)
    empty = _write(tmp_path, "e.jsonl", "\n\n")
    with pytest.raises(ForgetSetError, match="at least one document, found none"):
        read_forget_file(empty)
    with pytest.raises(ForgetSetError) as info:
        read_forget_file(tmp_path / "missing.jsonl")
    assert info.value.field == "file"


def test_a_qa_pair_without_chat_template_pools_only_question_and_answer(char_tokenizer: Any) -> None:
    rendered = render_qa(char_tokenizer, QAPair("Who wrote it?", "Ann Lee"))
    assert rendered.text == "Question: Who wrote it?\nAnswer: Ann Lee"
    assert [rendered.text[lo:hi] for lo, hi in rendered.spans] == ["Who wrote it?", "Ann Lee"]


def test_plain_documents_are_content_from_first_to_last_character(char_tokenizer: Any) -> None:
    docs = make_documents(["alpha beta"])
    assert render_documents(char_tokenizer, docs) == [RenderedText("alpha beta", ((0, 10),))]
