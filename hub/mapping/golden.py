"""Golden files: run a mapping on its ``golden/<case>.input.*`` and compare with ``<case>.expected.*``.

JSON is compared structurally (numbers as decimals, key order ignored); XML canonically (C14N 2.0 with
whitespace-only text removed, comments ignored). Each case renders with :data:`GOLDEN_CONTEXT`, updated
by ``<case>.context.json`` when that file exists. Used by the test suite and by operator tooling.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from lxml import etree

from hub.mapping.errors import MappingFailed
from hub.mapping.mapping import Mapping

__all__ = ["GOLDEN_CONTEXT", "GoldenResult", "canonical_xml", "check_golden", "golden_context", "load_json"]

GOLDEN_CONTEXT: dict[str, str | None] = {
    "message_id": "3f0c6b1e-7d2a-4c55-9e61-0b8f2d4a9c17",
    "tenant": "memmingen",
    "channel": "fit-connect",
    "standard": None,
    "version": None,
    "message_type": None,
    "idempotency_key": "golden-3f0c6b1e",
    "received_at": "2025-01-15T10:05:00+01:00",
}


@dataclass(frozen=True)
class GoldenResult:
    """The outcome of one golden case: ``problem`` is None when the output matches."""

    case: str
    problem: str | None
    actual: bytes | None


def golden_context(input_path: Path) -> dict[str, str | None]:
    """The render context of a golden case."""
    context = dict(GOLDEN_CONTEXT)
    extra = input_path.with_name(input_path.name.split(".input.")[0] + ".context.json")
    if extra.is_file():
        loaded = json.loads(extra.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise ValueError(f"{extra}: must hold a JSON object")
        context.update({str(k): None if v is None else str(v) for k, v in loaded.items()})
    return context


def load_json(data: bytes) -> Any:
    """JSON with exact decimals, for structural comparison."""
    return json.loads(data, parse_float=Decimal)


def canonical_xml(data: bytes) -> bytes:
    """C14N 2.0 of ``data`` without whitespace-only text and comments."""
    parser = etree.XMLParser(remove_blank_text=True, remove_comments=True, resolve_entities=False, no_network=True)
    root = etree.fromstring(data, parser)
    return bytes(etree.tostring(root, method="c14n2", with_comments=False, strip_text=True))


def _first_difference(expected: Any, actual: Any, path: str = "$") -> str | None:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in [*expected, *(k for k in actual if k not in expected)]:
            if key not in actual:
                return f"{path}.{key}: missing (expected {expected[key]!r})"
            if key not in expected:
                return f"{path}.{key}: unexpected {actual[key]!r}"
            found = _first_difference(expected[key], actual[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return f"{path}: {len(actual)} items, expected {len(expected)}"
        for index, (e, a) in enumerate(zip(expected, actual, strict=True)):
            found = _first_difference(e, a, f"{path}[{index}]")
            if found:
                return found
        return None
    if type(expected) is not type(actual) or expected != actual:
        return f"{path}: {actual!r}, expected {expected!r}"
    return None


def check_golden(mapping: Mapping, input_path: Path, expected_path: Path) -> GoldenResult:
    """Render one golden input and compare it with the expected output."""
    case = input_path.name.split(".input.")[0]
    try:
        rendered = mapping.render(input_path.read_bytes(), context=golden_context(input_path))
    except MappingFailed as exc:
        return GoldenResult(case, f"mapping failed: {exc}", None)
    expected = expected_path.read_bytes()
    if mapping.output == "json":
        difference = _first_difference(load_json(expected), load_json(rendered.body))
        return GoldenResult(case, difference, rendered.body)
    if canonical_xml(expected) != canonical_xml(rendered.body):
        return GoldenResult(case, "the XML differs from the expected file (canonical form)", rendered.body)
    return GoldenResult(case, None, rendered.body)
