"""Namespace alternatives: a prefix bound to a list of URIs, chosen per document by its root element."""

from __future__ import annotations

import pytest
from lxml import etree

from hub.mapping import MappingError, MappingFailed
from hub.mapping.namespaces import MAX_BINDINGS, Namespaces
from tests.unit.mapping.conftest import MakeMapping

MAPPING = """\
[mapping]
source = "xml"
output = "json"
root = "/v:msg/v:body"
[namespaces]
v = ["urn:v:3", "urn:v:2", "urn:v:1"]
x = "urn:fixed"
[fields]
name = { xpath = "v:name", required = true }
extra = "x:extra"
code = { xpath = ["v:code/code", "v:code[not(*)]"] }
"""


def doc(ns: str, code: str = "<v:code>7</v:code>", declare: str = "") -> bytes:
    return (f'<v:msg xmlns:v="{ns}" xmlns:x="urn:fixed"{declare}><v:body><v:name>N</v:name>'
            f"<x:extra>E</x:extra>{code}</v:body></v:msg>").encode()


@pytest.mark.parametrize("ns", ["urn:v:1", "urn:v:2", "urn:v:3"])
def test_each_listed_namespace_maps(make_mapping: MakeMapping, ns: str) -> None:
    m = make_mapping(MAPPING)
    assert m.render(doc(ns), context={}).data == {"name": "N", "extra": "E", "code": "7"}


def test_version_differences_are_handled_with_alternatives(make_mapping: MakeMapping) -> None:
    m = make_mapping(MAPPING)
    assert m.render(doc("urn:v:3", code="<v:code><code>8</code></v:code>"), context={}).data["code"] == "8"


def test_an_unlisted_namespace_falls_back_to_the_first_and_fails_clearly(make_mapping: MakeMapping) -> None:
    m = make_mapping(MAPPING)
    with pytest.raises(MappingFailed, match=r"found 0 elements \(the document's root element is \{urn:v:4\}msg\)"):
        m.render(doc("urn:v:4"), context={})


def test_a_namespace_declared_on_the_root_counts(make_mapping: MakeMapping) -> None:
    m = make_mapping("""\
        [mapping]
        source = "xml"
        output = "json"
        [namespaces]
        v = ["urn:v:2", "urn:v:1"]
        [fields]
        name = "v:name"
        """)
    envelope = b'<env xmlns:v="urn:v:1"><v:name>in 1</v:name></env>'
    assert m.render(envelope, context={}).data == {"name": "in 1"}
    # the list's order decides when the root is in one listed namespace and declares another
    both = b'<v1:env xmlns:v1="urn:v:1" xmlns:v2="urn:v:2"><v2:name>in 2</v2:name><v1:name>in 1</v1:name></v1:env>'
    assert m.render(both, context={}).data == {"name": "in 2"}


def test_no_compilation_at_render_time(make_mapping: MakeMapping, monkeypatch: pytest.MonkeyPatch) -> None:
    m = make_mapping(MAPPING)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an XPath was compiled while rendering")

    monkeypatch.setattr(etree, "XPath", refuse)
    for ns in ("urn:v:1", "urn:v:3"):
        assert m.render(doc(ns), context={}).data["name"] == "N"


def test_bindings_and_choice_with_two_listed_prefixes() -> None:
    spaces = Namespaces({"f": "urn:f"}, (("a", ("urn:a2", "urn:a1")), ("b", ("urn:b2", "urn:b1", "urn:b0"))))
    bindings = spaces.bindings()
    assert len(bindings) == 6
    assert bindings[0] == {"f": "urn:f", "a": "urn:a2", "b": "urn:b2"}
    root = etree.fromstring(b'<a:r xmlns:a="urn:a1" xmlns:b="urn:b0"/>')
    assert bindings[spaces.choose(root)] == {"f": "urn:f", "a": "urn:a1", "b": "urn:b0"}
    assert spaces.choose(etree.fromstring(b"<r/>")) == 0
    assert Namespaces({"f": "urn:f"}).bindings() == [{"f": "urn:f"}]


HEADER = '[mapping]\nsource = "xml"\noutput = "json"\n[namespaces]\n'


@pytest.mark.parametrize(
    ("namespaces", "line", "message"),
    [
        ("v = []", 5, "namespaces.v: a list of alternative namespace URIs must hold non-empty strings"),
        ('v = ["urn:a", ""]', 5, "must hold non-empty strings"),
        ('v = ["urn:a", 1]', 5, "must hold non-empty strings"),
        ('v = ["urn:a", "urn:a"]', 5, "namespaces.v: a namespace URI is listed twice"),
        ("v = 1", 5, "namespaces.v: the namespace URI must be a non-empty string, or a list"),
        ('"v:w" = "urn:a"', 5, "namespaces.v:w: not a namespace prefix"),
        ('a = ["1", "2", "3", "4", "5"]\nb = ["1", "2", "3", "4"]', 4,
         f"namespaces: the alternatives make 20 combinations, each compiled once; at most {MAX_BINDINGS}"),
    ],
)
def test_namespace_errors(make_mapping: MakeMapping, namespaces: str, line: int, message: str) -> None:
    with pytest.raises(MappingError) as caught:
        make_mapping(HEADER + namespaces + '\n[fields]\nx = "v:b"\n')
    assert caught.value.line == line, str(caught.value)
    assert message in str(caught.value)


def test_an_expression_error_is_reported_once_at_load(make_mapping: MakeMapping) -> None:
    with pytest.raises(MappingError, match=r"mapping\.toml:7: fields\.x: invalid XPath"):
        make_mapping(HEADER + 'v = ["urn:a", "urn:b"]\n[fields]\nx = "v:b["\n')
