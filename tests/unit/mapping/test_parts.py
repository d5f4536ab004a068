"""The engine's small parts: JSON → XML tree, conversions, the TOML line locator, JSON writing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from lxml import etree

from hub.mapping.convert import CodeTable, ConversionError, Converter
from hub.mapping.jsontree import JsonRejected, json_to_tree
from hub.mapping.locate import KeyLines
from hub.mapping.mapping import dumps


def test_json_tree_shape() -> None:
    root = json_to_tree(b'{"a": {"b": [1, {"c": null}], "$d": true, "e": [[1, 2], []], "f": 1.50}, "g": []}')
    assert etree.tostring(root).decode() == (
        '<json><a><b>1</b><b><c null="true"/></b><_ key="$d">true</_>'
        "<e><item>1</item><item>2</item></e><e/><f>1.50</f></a></json>"
    )
    assert etree.tostring(json_to_tree(b'[1, "x"]')).decode() == "<json><item>1</item><item>x</item></json>"
    assert etree.tostring(json_to_tree(b'{"xmlish": 1, "a:b": 2, "1a": 3}')).decode() == (
        '<json><_ key="xmlish">1</_><_ key="a:b">2</_><_ key="1a">3</_></json>'
    )


@pytest.mark.parametrize(
    ("payload", "message"),
    [(b"{", "not JSON"), (b"\xff", "not JSON"), (b'{"a": "\\u0001"}', "cannot represent"),
     (b"[" * 100_000 + b"]" * 100_000, "nested too deeply")],
)
def test_json_tree_refusals(payload: bytes, message: str) -> None:
    with pytest.raises(JsonRejected, match=message):
        json_to_tree(payload)


def test_json_tree_size_limit() -> None:
    with pytest.raises(JsonRejected, match="the limit is 10"):
        json_to_tree(b'{"a": "0123456789"}', max_bytes=10)


@pytest.mark.parametrize(
    ("converter", "text", "value"),
    [
        (Converter("integer"), "-12", -12),
        (Converter("decimal"), "1,234.5", Decimal("1234.5")),
        (Converter("decimal", ("de",)), "1.234,5", Decimal("1234.5")),
        (Converter("boolean"), "TRUE", True),
        (Converter("boolean"), "0", False),
        (Converter("date"), "2024-02-29", "2024-02-29"),
        (Converter("date", ("%d%m%Y", "%d.%m.%Y")), "01.02.2003", "2003-02-01"),
        (Converter("date", (), "%d.%m.%Y"), "2024-02-29", "29.02.2024"),
        (Converter("datetime"), "2024-02-29T10:00:00Z", "2024-02-29T10:00:00+00:00"),
        (Converter("datetime", ("%d.%m.%Y %H:%M",)), "29.02.2024 10:30", "2024-02-29T10:30:00"),
    ],
)
def test_conversions(converter: Converter, text: str, value: object) -> None:
    assert converter(text) == value


@pytest.mark.parametrize(
    ("converter", "text", "message"),
    [
        (Converter("integer"), "1.5", "not an integer"),
        (Converter("decimal"), "1e5", "not a decimal number"),
        (Converter("boolean"), "ja", "not a boolean"),
        (Converter("date"), "2023-02-29", "not an ISO date"),
        (Converter("date", ("%d%m%Y",)), "00001965", "not a date in format %d%m%Y"),
        (Converter("datetime"), "yesterday", "not an ISO 8601 date-time"),
        (Converter("datetime", ("%Y",)), "x", "not a date-time in format %Y"),
    ],
)
def test_conversion_errors(converter: Converter, text: str, message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        converter(text)


def test_converter_option_checks() -> None:
    assert Converter("decimal", ("fr",)).check() is not None
    assert Converter("string", ("%d",)).check() is not None
    assert Converter("integer", (), "%Y").check() is not None
    assert Converter("date", ("%d%m%Y",), "%Y").check() is None


def test_code_table_lists_some_known_codes() -> None:
    table = CodeTable("t", {str(n): "x" for n in range(20)})
    with pytest.raises(ConversionError, match=r"known: 0, 1, 10, .*, …\)"):
        table("99")


def test_key_lines() -> None:
    lines = KeyLines(
        '[mapping]\nsource = "xml"\n\n[fields]\na.b = "x"\n"q.k" = { xpath = "y", when = "z" }\n'
        'text = """\n[fake]\nx = 1\n"""\n[fields.c]\nd = 1\n[[list]]\ne = 2\n'
    )
    assert lines.line(["mapping", "source"]) == 2
    assert lines.line(["fields", "a", "b"]) == 5
    assert lines.line(["fields", "q.k", "when"]) == 6
    assert lines.line(["fields", "c", "d"]) == 12
    assert lines.line(["fields", "c", "unknown"]) == 11
    assert lines.line(["fake"]) is None
    assert lines.line(["list", "e"]) == 14
    assert lines.line(["nowhere"]) is None


def test_dumps_keeps_decimal_digits() -> None:
    written = dumps({"a": Decimal("1.50"), "b": [True, None, "ü"], "c": {}})
    assert written == '{"a":1.50,"b":[true,null,"ü"],"c":{}}'.encode()
