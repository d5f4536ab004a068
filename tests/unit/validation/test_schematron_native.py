"""The native walk for XÖV's "no empty elements" rule selects exactly what the XPath selects."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from hub.validation.schematron_lxml import LxmlRules, _empty_leaves, _empty_leaves_mixed, _is_no_empty_elements

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "xoev"
XSD = Path(__file__).resolve().parents[3] / "xsd"
REFERENCE = etree.XPath("(//*)[not(not(not(*) and normalize-space(.) = ''))]")

CRAFTED = [
    b"<r/>",
    b"<r>\n\t </r>",
    b"<r><a/><b> </b><c>x</c><k><l/></k></r>",
    b"<r><d><!-- only a comment --></d><e> <!--c--> </e><f><!--c-->y</f><j><?pi data?></j></r>",
    b"<r><g>\xc2\xa0</g><h>&#32;&#9;&#10;&#13;</h><i><![CDATA[ ]]></i><m>&#160;</m><n>&amp;</n></r>",
    b"<x:r xmlns:x='urn:x' xmlns='urn:y'><a b='c'>\n</a><x:b>t<c/></x:b><d>\n<e> </e>\n</d></x:r>",
]


@pytest.mark.parametrize(
    "data",
    CRAFTED + [p.read_bytes() for p in sorted(FIXTURES.rglob("*.xml"))],
    ids=lambda d: d[:30].decode("utf-8", "replace") if len(d) < 400 else f"fixture-{len(d)}-bytes",
)
def test_same_nodes_as_the_xpath(data: bytes) -> None:
    tree = etree.fromstring(data).getroottree()
    assert _empty_leaves(tree) == REFERENCE(tree)


UNRESOLVED_ENTITIES = b"<!DOCTYPE r [<!ENTITY e 'x'><!ENTITY s ' '>]><r><a>&e;</a><b>&s; </b><c> </c><d><x/></d></r>"


@pytest.mark.parametrize(
    "data",
    [*CRAFTED, UNRESOLVED_ENTITIES] + [p.read_bytes() for p in sorted(FIXTURES.rglob("*.xml"))],
    ids=lambda d: d[:30].decode("utf-8", "replace") if len(d) < 400 else f"fixture-{len(d)}-bytes",
)
def test_the_comprehension_equals_the_general_walk(data: bytes) -> None:
    # without comments, PIs and entity references _empty_leaves takes a shortcut; with them it defers
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False))
    assert _empty_leaves(root.getroottree()) == _empty_leaves_mixed(root)


@pytest.mark.parametrize(
    ("test", "recognised"),
    [
        ("not(not(*) and normalize-space(.) = '')", True),
        ('not( not(*)  and normalize-space() = "" )', True),
        ("not(not(*) and normalize-space(.) = ' ')", False),
        ("not(not(*) or normalize-space(.) = '')", False),
        ("not(*) and normalize-space(.) = ''", False),
    ],
)
def test_only_the_exact_idiom_is_recognised(test: str, recognised: bool) -> None:
    assert _is_no_empty_elements(test) is recognised


def test_xbau_empty_element_rule_runs_natively() -> None:
    schema = etree.parse(str(XSD / "xbau-2.6" / "xbau-schematron-leere-elemente.sch")).getroot()
    rules = LxmlRules(schema, "xbau-schematron-leere-elemente.sch")
    [[rule]] = rules.patterns
    [check] = rule.steps
    assert getattr(check, "failing", None) is _empty_leaves
