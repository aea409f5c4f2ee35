"""Raw JSON bodies to Python values, refusing what ``json.loads`` takes but nothing downstream can:
lone surrogate escapes, integer literals too long to convert, non-finite numbers (``NaN``,
``Infinity``, ``1e999``) and nesting deeper than any request needs. Each refusal names the field."""

from __future__ import annotations

import json
import math
from typing import Any

#: Deepest nesting a request body may have (the deepest real one, a chat with text parts, has 5).
MAX_DEPTH = 32
#: Longest integer literal; Python refuses to convert more than 4,300 digits anyway.
MAX_INT_DIGITS = 100


class BodyError(ValueError):
    """A body that is not acceptable JSON; ``field`` is its dotted path, None for the whole body."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class _LongInt:
    """Stands in for an integer literal too long to convert, until its path is known."""

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _parse_int(literal: str) -> int | _LongInt:
    digits = len(literal.lstrip("-"))
    return _LongInt(digits) if digits > MAX_INT_DIGITS else int(literal)


class _Constant:
    """Stands in for ``NaN``/``Infinity`` (not JSON, but ``json`` reads them) until its path is known."""

    def __init__(self, name: str) -> None:
        self.name = name


def _surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check(value: Any, path: list[str]) -> None:
    """Walk ``value`` iteratively; raise ``BodyError`` at the first unacceptable leaf."""
    stack: list[tuple[Any, list[str]]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        field = ".".join(where) or None
        if len(where) > MAX_DEPTH:
            raise BodyError(f"expected JSON nested at most {MAX_DEPTH} levels, found deeper", field)
        if isinstance(item, str):
            if _surrogate(item):
                raise BodyError("expected valid Unicode text, found a lone surrogate escape", field)
        elif isinstance(item, _LongInt):
            raise BodyError(f"expected an integer of at most {MAX_INT_DIGITS} digits, found {item.digits}",
                            field)
        elif isinstance(item, _Constant):
            raise BodyError(f"expected a finite JSON number, found {item.name} (not JSON)", field)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise BodyError("expected a finite number, found one out of range", field)
        elif isinstance(item, dict):
            for key, sub in item.items():
                if _surrogate(key):
                    raise BodyError("expected valid Unicode keys, found a lone surrogate escape", field)
                stack.append((sub, [*where, key]))
        elif isinstance(item, list):
            stack.extend((sub, [*where, str(i)]) for i, sub in enumerate(item))


def loads(raw: bytes) -> Any:
    """The JSON value of ``raw`` (None for an empty body).

    Raises:
        BodyError: invalid JSON or UTF-8, or a value listed in the module docstring.
    """
    if not raw:
        return None
    try:
        value = json.loads(raw, parse_int=_parse_int, parse_constant=_Constant)
    except RecursionError as exc:
        raise BodyError(f"expected JSON nested at most {MAX_DEPTH} levels, found deeper") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BodyError(f"expected a JSON object, found invalid JSON ({exc})") from exc
    except ValueError as exc:  # the int-conversion limit and kin: bad input, not a server error
        raise BodyError(f"expected a JSON object, found an unreadable value ({exc})") from exc
    _check(value, [])
    return value

