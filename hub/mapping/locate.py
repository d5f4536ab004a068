"""Line numbers for TOML keys: ``tomllib`` gives values only, error messages need ``file:line``.

A light scan of the source, not a second TOML parser: it follows table headers (``[a.b]``,
``[[a.b]]``), ``key = value`` lines (dotted and quoted keys) and the keys of one-line inline tables, and
records the first line each key path appears on. Lines inside multi-line strings are skipped. Looking up
a path falls back to its longest recorded prefix, so every error points at least at the enclosing table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["KeyLines", "parse_key"]

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_KEY_PART = r"(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')"
_ASSIGN_IN_INLINE = re.compile(rf"[{{,]\s*({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")


def parse_key(text: str) -> tuple[list[str], str] | None:
    """Split a (dotted, possibly quoted) TOML key at the start of ``text``; returns (parts, rest) or None."""
    parts: list[str] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos >= len(text):
            return None
        quote = text[pos]
        if quote in "\"'":
            end = text.find(quote, pos + 1)
            if end < 0:
                return None
            parts.append(text[pos + 1 : end])
            pos = end + 1
        else:
            match = _BARE.match(text, pos)
            if match is None:
                return None
            parts.append(match.group())
            pos = match.end()
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == ".":
            pos += 1
            continue
        return parts, text[pos:]


class KeyLines:
    """First line of each key path in one TOML source."""

    def __init__(self, source: str) -> None:
        self._lines: dict[tuple[str, ...], int] = {}
        table: list[str] = []
        in_multiline: str | None = None
        for number, raw in enumerate(source.splitlines(), start=1):
            line = raw.strip()
            if in_multiline is not None:
                if in_multiline in line:
                    in_multiline = None
                continue
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                header = line.strip("[").split("]", 1)[0]
                parsed = parse_key(header)
                if parsed is not None:
                    table = parsed[0]
                    self._record(table, number)
                continue
            parsed = parse_key(line)
            if parsed is None or not parsed[1].startswith("="):
                continue
            path = [*table, *parsed[0]]
            self._record(path, number)
            value = parsed[1][1:].strip()
            for delimiter in ('"""', "'''"):
                if value.startswith(delimiter) and value.count(delimiter) == 1:
                    in_multiline = delimiter
            if value.startswith("{"):
                for match in _ASSIGN_IN_INLINE.finditer(value):
                    inner = parse_key(match.group(1))
                    if inner is not None:
                        self._record([*path, *inner[0]], number)

    def _record(self, path: Sequence[str], number: int) -> None:
        for end in range(1, len(path) + 1):
            self._lines.setdefault(tuple(path[:end]), number)

    def line(self, path: Sequence[str]) -> int | None:
        """The line of ``path``, else of its longest recorded prefix, else None."""
        for end in range(len(path), 0, -1):
            found = self._lines.get(tuple(path[:end]))
            if found is not None:
                return found
        return None
