"""Safe JSON parsing: the one parser for JSON that comes from outside the hub.

REST intake bodies, FIT-Connect data and metadata, callbacks and event tokens all go through
:func:`loads`. Python's ``json`` module alone accepts things the hub must not process, or fails on them
with an exception type nobody expects (``RecursionError`` on deep nesting, ``ValueError`` from ``int`` on
a 5,000-digit number). Defences, in the order they apply:

1. size: more than ``JsonLimits.max_bytes`` is refused before decoding;
2. encoding: strict UTF-8 (RFC 8259 §8.1), no byte-order mark;
3. depth: arrays and objects nested deeper than ``max_depth`` are refused; the C scanner's own recursion
   guard is mapped to the same answer, so no ``RecursionError`` ever escapes;
4. numbers: longer than ``max_number_chars`` are refused before conversion; ``NaN`` and ``Infinity``
   are refused (they are not JSON);
5. strings and keys: longer than ``max_string_chars`` are refused; a lone surrogate escape
   (``"\\ud800"``) is refused, since it cannot be stored or re-encoded as UTF-8;
6. objects: a duplicate key is refused (RFC 8259 leaves the meaning open; two readers could disagree).

A refusal is a :class:`JsonRejected` with a short ``title``, a precise ``detail`` that can be shown to
the sender as it is, a ``slug`` for the problem type, and the ``line`` when the parser knows it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_JSON_LIMITS", "JsonLimits", "JsonRejected", "loads"]


@dataclass(frozen=True)
class JsonLimits:
    """Upper bounds for one JSON document. The defaults suit application data and protocol metadata."""

    max_bytes: int = 50 * 1024 * 1024
    max_depth: int = 64
    max_number_chars: int = 100
    max_string_chars: int = 10 * 1024 * 1024


DEFAULT_JSON_LIMITS = JsonLimits()


class JsonRejected(ValueError):
    """The bytes are not a JSON document the hub will process. ``title`` is short, ``detail`` is precise."""

    def __init__(self, slug: str, title: str, detail: str, line: int | None = None) -> None:
        super().__init__(f"{title}: {detail}")
        self.slug = slug
        self.title = title
        self.detail = detail
        self.line = line


_SURROGATE = re.compile("[\ud800-\udfff]")


class _Refusal(Exception):
    """Raised from inside the decoder's hooks; turned into :class:`JsonRejected` by :func:`loads`."""

    def __init__(self, rejected: JsonRejected) -> None:
        self.rejected = rejected


def _decoder(limits: JsonLimits) -> json.JSONDecoder:
    def number(text: str, kind: type[int] | type[float]) -> int | float:
        if len(text) > limits.max_number_chars:
            raise _Refusal(JsonRejected("json-number-too-long", "Number too long",
                                        f"a number has {len(text)} characters; the limit is "
                                        f"{limits.max_number_chars}"))
        value = kind(text)
        if isinstance(value, float) and value in (float("inf"), float("-inf")):
            raise _Refusal(JsonRejected("json-number-out-of-range", "Number out of range",
                                        f"the number {text[:40]} does not fit a 64-bit floating point value"))
        return value

    def constant(name: str) -> Any:
        raise _Refusal(JsonRejected("json-invalid-number", "Not valid JSON",
                                    f"{name} is not a JSON value (RFC 8259 has no NaN or Infinity)"))

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                shown = key if len(key) <= 60 else key[:57] + "..."
                raise _Refusal(JsonRejected("json-duplicate-key", "Duplicate key",
                                            f"the key {shown!r} appears twice in the same object"))
            out[key] = value
        return out

    return json.JSONDecoder(
        parse_int=lambda t: number(t, int),
        parse_float=lambda t: number(t, float),
        parse_constant=constant,
        object_pairs_hook=pairs,
    )


def _check_tree(value: Any, limits: JsonLimits) -> None:
    """Depth, string length and surrogates, iteratively: a stack of one iterator per open array or object,
    so neither a deep tree (recursion) nor a wide one (a copy of every item) costs more than its depth."""
    if isinstance(value, str):
        _check_string(value, limits)
    if not isinstance(value, dict | list):
        return
    stack: list[Iterator[Any]] = [_items(value, limits)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, str):
                _check_string(item, limits)
            elif isinstance(item, dict | list):
                if len(stack) >= limits.max_depth:
                    raise _too_deep(limits)
                if item:  # an empty one has nothing to check inside
                    stack.append(_items(item, limits))
                    break
        else:
            stack.pop()


def _items(node: dict[str, Any] | list[Any], limits: JsonLimits) -> Iterator[Any]:
    if isinstance(node, list):
        yield from node
        return
    for key, item in node.items():
        _check_string(key, limits)
        yield item


def _check_string(text: str, limits: JsonLimits) -> None:
    if len(text) > limits.max_string_chars:
        raise JsonRejected("json-string-too-long", "String too long",
                           f"a string has {len(text)} characters; the limit is {limits.max_string_chars}")
    if _SURROGATE.search(text):
        raise JsonRejected("json-invalid-string", "Not valid JSON",
                           "a string contains a lone UTF-16 surrogate escape (\\ud800-\\udfff), which is not a "
                           "character")


def _too_deep(limits: JsonLimits) -> JsonRejected:
    return JsonRejected("json-too-deep", "JSON too deeply nested",
                        f"arrays and objects are nested deeper than {limits.max_depth} levels")


def loads(data: bytes | bytearray | str, limits: JsonLimits = DEFAULT_JSON_LIMITS) -> Any:
    """Parse one JSON document within ``limits``, or raise :class:`JsonRejected`. Never anything else."""
    if isinstance(data, bytes | bytearray):
        if len(data) > limits.max_bytes:
            raise JsonRejected("payload-too-large", "Document too large",
                               f"the document has {len(data)} bytes; the limit is {limits.max_bytes} bytes")
        if data.startswith(b"\xef\xbb\xbf"):
            raise JsonRejected("malformed-json", "Not valid JSON",
                               "the document starts with a byte-order mark; JSON must not (RFC 8259 §8.1)")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonRejected("malformed-json", "Not valid JSON",
                               f"the document is not UTF-8 (byte {exc.start}: {exc.reason})") from None
    else:
        text = data
        if len(text) > limits.max_bytes:
            raise JsonRejected("payload-too-large", "Document too large",
                               f"the document has {len(text)} characters; the limit is {limits.max_bytes}")
    if not text.strip():
        raise JsonRejected("empty-body", "Empty document", "the document is empty")
    try:
        value = _decoder(limits).decode(text)
    except _Refusal as refusal:
        raise refusal.rejected from None
    except RecursionError:
        raise _too_deep(limits) from None
    except json.JSONDecodeError as exc:
        raise JsonRejected("malformed-json", "Not valid JSON", f"line {exc.lineno} column {exc.colno}: {exc.msg}",
                           line=exc.lineno) from None
    except (ValueError, OverflowError) as exc:  # int() or float() refusing a token the scanner accepted
        raise JsonRejected("malformed-json", "Not valid JSON", f"a number cannot be read: {exc}") from None
    _check_tree(value, limits)
    return value
