"""Forget-set files for ``guardit forget add``: JSONL, TXT (one document per line) and CSV with a header.

The format comes from the file name's extension and is never guessed from the content: a CSV's first
row must name its columns (``question`` and ``answer``, or ``text``), so a header is never registered
as a document.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from steering import read_forget_file
from steering.errors import ForgetSetError
from steering.forget_set import ForgetDocuments, is_jsonl, json_lines, make_documents, text_lines

JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})
TEXT_SUFFIXES = frozenset({".txt", ".text"})
CSV_SUFFIXES = frozenset({".csv", ".tsv"})
FORMATS = "JSONL ({\"text\"} or {\"question\", \"answer\"} per line), .txt (one document per line) or " \
          ".csv/.tsv (header row naming question,answer or text)"


def read_forget_input(path: Path, *, max_documents: int, max_chars: int = 20000) -> ForgetDocuments:
    """Read a forget (or retain) file in any supported format.

    Args:
        path: the file; its extension selects the format.
        max_documents: the registry's document cap.
        max_chars: longest document, in characters.

    Returns:
        The validated, deduplicated documents.

    Raises:
        ForgetSetError: an unknown extension, an unreadable file, a malformed line or a CSV without a
            header naming its columns (``field="file"``).
    """
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES or suffix in TEXT_SUFFIXES:
        return read_forget_file(path, max_documents=max_documents)
    if suffix in CSV_SUFFIXES:
        return _read_csv(path, delimiter="\t" if suffix == ".tsv" else ",", max_documents=max_documents,
                         max_chars=max_chars)
    raise ForgetSetError(f"expected a forget file in {FORMATS}, found {path.name!r} with extension "
                         f"{suffix or '(none)'!r}", field="file")


def _read_csv(path: Path, *, delimiter: str, max_documents: int, max_chars: int) -> ForgetDocuments:
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ForgetSetError(f"expected a readable UTF-8 file at {path}, found: {exc}", field="file") from exc
    try:
        reader = csv.reader(io.StringIO(raw), delimiter=delimiter)
        rows = [row for row in reader if any(c.strip() for c in row)]
    except csv.Error as exc:
        raise ForgetSetError(f"{path.name}: expected valid CSV, found {exc}", field="file") from exc
    if not rows:
        raise ForgetSetError(f"{path.name}: expected at least one document, found none", field="file")
    header = [cell.strip().lower() for cell in rows[0]]
    body = rows[1:]
    if "question" in header and "answer" in header:
        q, a = header.index("question"), header.index("answer")
        pairs = [(_cell(path, row, q, n), _cell(path, row, a, n)) for n, row in enumerate(body, start=2)]
        if not pairs:
            raise ForgetSetError(f"{path.name}: expected at least one row under the header, found none",
                                 field="file")
        return make_documents(qa=pairs, max_documents=max_documents, max_chars=max_chars)
    if "text" in header:
        t = header.index("text")
        texts = [_cell(path, row, t, n) for n, row in enumerate(body, start=2)]
        if not texts:
            raise ForgetSetError(f"{path.name}: expected at least one row under the header, found none",
                                 field="file")
        return make_documents(texts, max_documents=max_documents, max_chars=max_chars)
    found = ",".join(rows[0])[:120]
    raise ForgetSetError(f"{path.name}: expected a header row naming the columns question,answer or text, "
                         f"found {found!r}", field="file")


def _cell(path: Path, row: list[str], index: int, line: int) -> str:
    value = row[index].strip() if index < len(row) else ""
    if not value:
        raise ForgetSetError(f"{path.name} line {line}: expected a non-empty value in column {index + 1}, "
                             "found none", field="file")
    return value


def describe(docs: ForgetDocuments, path: Path) -> str:
    """What was read, for the user: ``40 QA pairs from forget01.jsonl``."""
    n = len(docs)
    what = ("QA pair" if docs.kind == "qa" else "document") + ("" if n == 1 else "s")
    return f"{n} {what} from {path.name}"


def read_prompts(path: Path) -> list[str]:
    """Prompts for ``guardit gate --file``: JSONL with a ``prompt`` or ``question`` per line, else one
    prompt per line.

    Raises:
        ForgetSetError: an unreadable file or a malformed line (``field="file"``).
    """
    lines = text_lines(path)
    if not is_jsonl(path):
        return [line.strip() for _, line in lines]
    prompts = []
    for n, obj in json_lines(path, lines):
        text = obj.get("prompt", obj.get("question")) if isinstance(obj, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise ForgetSetError(f"{path.name} line {n}: expected a string 'prompt' or 'question' field",
                                 field="file")
        prompts.append(text)
    return prompts
