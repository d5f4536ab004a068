"""The Schematron → XSLT 2.0 translation follows ISO Schematron semantics (run on Saxon-HE)."""

from __future__ import annotations

from pathlib import Path

import pytest
import saxonche  # noqa: F401  (a runtime dependency: these tests must not be skipped)
from lxml import etree

from hub.validation.schematron import SchematronError, SchematronRules, compile_schematron

HEAD = '<sch:schema xmlns:sch="http://purl.oclc.org/dsdl/schematron" queryBinding="{binding}">'
DOC = b"""<t:r xmlns:t="urn:t">
  <t:a n="1">x</t:a>
  <t:a n="5">y</t:a>
  <t:b/>
</t:r>"""


def _rules(tmp_path: Path, body: str, binding: str = "xslt2", name: str = "r.sch") -> SchematronRules:
    path = tmp_path / name
    path.write_text(
        HEAD.format(binding=binding) + '<sch:ns prefix="t" uri="urn:t"/>' + body + "</sch:schema>"
    )
    return SchematronRules([path], tmp_path)


def test_assert_with_xpath2_value_of_line_and_path(tmp_path: Path) -> None:
    rules = _rules(
        tmp_path,
        """<sch:pattern><sch:rule context="t:a">
             <sch:assert id="a-small"
               test="if (@n castable as xs:integer) then xs:integer(@n) lt 3 else false()"
               >n is <sch:value-of select="@n"/> in <sch:name/></sch:assert></sch:rule></sch:pattern>""",
    )
    findings = rules.check(etree.fromstring(DOC))
    assert len(findings) == 1
    f = findings[0]
    assert (f.severity, f.rule, f.line, f.path) == ("error", "a-small", 3, "/t:r/t:a[2]")
    assert f.message == "n is 5 in t:a"


def test_first_matching_rule_per_pattern_wins(tmp_path: Path) -> None:
    rules = _rules(
        tmp_path,
        """<sch:pattern>
             <sch:rule context="t:a[@n='1']">
               <sch:assert id="first" test="false()">first</sch:assert></sch:rule>
             <sch:rule context="t:a"><sch:assert id="second" test="false()">second</sch:assert></sch:rule>
           </sch:pattern>
           <sch:pattern>
             <sch:rule context="*">
               <sch:report id="every" test="self::t:b" role="warning">b</sch:report></sch:rule>
           </sch:pattern>""",
    )
    findings = rules.check(etree.fromstring(DOC))
    assert sorted((f.rule, f.line) for f in findings) == [("every", 4), ("first", 2), ("second", 3)]
    assert next(f for f in findings if f.rule == "every").severity == "warning"


def test_abstract_rules_lets_and_includes(tmp_path: Path) -> None:
    (tmp_path / "part.sch").write_text(
        '<sch:rule xmlns:sch="http://purl.oclc.org/dsdl/schematron" id="abs" abstract="true">'
        '<sch:let name="limit" value="3"/><sch:assert id="abs-1" test="count(../t:a) lt $limit">'
        "too many</sch:assert></sch:rule>"
    )
    rules = _rules(
        tmp_path,
        """<sch:let name="global" value="'g'"/>
           <sch:pattern><sch:include href="part.sch"/>
             <sch:rule context="t:b"><sch:extends rule="abs"/>
               <sch:assert id="uses-global" test="$global = 'h'">global</sch:assert></sch:rule>
           </sch:pattern>""",
    )
    findings = rules.check(etree.fromstring(DOC))
    assert [f.rule for f in findings] == ["uses-global"]


def test_attribute_context_gets_attribute_path(tmp_path: Path) -> None:
    rules = _rules(
        tmp_path,
        '<sch:pattern><sch:rule context="@n"><sch:assert id="n1" test=". = \'1\'">n</sch:assert>'
        "</sch:rule></sch:pattern>",
    )
    [finding] = rules.check(etree.fromstring(DOC))
    assert finding.path == "/t:r/t:a[2]/@n"
    assert finding.line == 3


@pytest.mark.parametrize(
    ("body", "binding", "message"),
    [
        ("<sch:pattern/>", "dsdl:python", "queryBinding"),
        ('<sch:pattern abstract="true" id="p"/>', "xslt2", "abstract patterns"),
        (
            '<sch:pattern><sch:rule context="*"><sch:extends rule="nope"/></sch:rule></sch:pattern>',
            "xslt2",
            "unknown or cyclic",
        ),
        ('<sch:pattern><sch:include href="../../etc/x.sch"/></sch:pattern>', "xslt2", "outside the bundle"),
        (
            '<sch:pattern><sch:rule context="t:a["><sch:assert test="1">x</sch:assert></sch:rule>'
            "</sch:pattern>",
            "xslt2",
            "Saxon cannot compile",
        ),
    ],
)
def test_refused_at_load_time(tmp_path: Path, body: str, binding: str, message: str) -> None:
    with pytest.raises(SchematronError, match=message):
        _rules(tmp_path, body, binding)


def test_xbau_rules_compile(tmp_path: Path) -> None:
    xbau = Path(__file__).resolve().parents[3] / "xsd" / "xbau-2.6"
    xslt = compile_schematron(xbau / "xbau-schematron.sch", xbau)
    assert xslt.count("<xsl:template ") > 100
