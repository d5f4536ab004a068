"""The Schematron → XSLT 2.0 translation follows ISO Schematron semantics (run on Saxon-HE)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import saxonche  # noqa: F401  (a runtime dependency: these tests must not be skipped)
from lxml import etree

from hub.validation import ValidationEngine
from hub.validation.bundles import Bundle
from hub.validation.manifest import read_manifest
from hub.validation.schematron import (
    SchematronError,
    SchematronIncomplete,
    SchematronRules,
    _Locator,
    compile_schematron,
)
from hub.validation.schematron_xslt import _elements_only

HEAD = '<sch:schema xmlns:sch="http://purl.oclc.org/dsdl/schematron" queryBinding="{binding}">'
DOC = b"""<t:r xmlns:t="urn:t">
  <t:a n="1">x</t:a>
  <t:a n="5">y</t:a>
  <t:b/>
</t:r>"""


def _rules_file(tmp_path: Path, body: str, binding: str = "xslt2", name: str = "r.sch") -> Path:
    path = tmp_path / name
    path.write_text(
        HEAD.format(binding=binding) + '<sch:ns prefix="t" uri="urn:t"/>' + body + "</sch:schema>"
    )
    return path


def _rules(tmp_path: Path, body: str, binding: str = "xslt2", name: str = "r.sch") -> SchematronRules:
    return SchematronRules([_rules_file(tmp_path, body, binding, name)], tmp_path)


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


def test_a_check_raising_an_xpath_error_is_reported_and_the_others_still_run(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    rules = _rules(
        tmp_path,
        """<sch:pattern><sch:rule context="t:b">
             <sch:assert id="first" test="false()">first</sch:assert>
             <sch:assert id="two-a" test="normalize-space(../t:a) != ''">two a</sch:assert>
             <sch:assert id="third" test="false()">third</sch:assert></sch:rule></sch:pattern>
           <sch:pattern><sch:rule context="t:a"><sch:report id="other" test="@n = '5'">five</sch:report>
           </sch:rule></sch:pattern>""",
    )
    root = etree.fromstring(DOC)
    for check in (rules.check, rules.check):  # twice: the compiled rules are reused
        with pytest.raises(SchematronIncomplete) as raised:
            check(root)
        incomplete = raised.value
        assert [(f.rule, f.severity, f.line) for f in incomplete.findings] == [
            ("first", "error", 4),
            ("two-a", "warning", 4),
            ("third", "error", 4),
            ("other", "error", 3),
        ]
        [fault] = incomplete.faults
        assert fault.path == "/t:r/t:b"
        assert fault.message.startswith("Schematron rule two-a could not be evaluated here: XPTY0004 ")
        assert "a fault of the rule, not a finding about the document" in fault.message
        assert incomplete.reason == fault.message
    # caught inside the stylesheet: Saxon prints no error report of its own
    assert "XPTY0004" not in capfd.readouterr().err


def test_a_let_raising_an_xpath_error_stops_only_its_rule(tmp_path: Path) -> None:
    rules = _rules(
        tmp_path,
        """<sch:pattern><sch:rule id="with-let" context="t:b">
             <sch:assert id="before" test="false()">before the let</sch:assert>
             <sch:let name="v" value="normalize-space(../t:a)"/>
             <sch:assert id="after" test="$v = ''">after the let</sch:assert></sch:rule>
           <sch:rule context="t:a"><sch:assert id="a" test="@n = '1'">not one</sch:assert></sch:rule>
           </sch:pattern>""",
    )
    with pytest.raises(SchematronIncomplete) as raised:
        rules.check(etree.fromstring(DOC))
    assert [(f.rule, f.severity) for f in raised.value.findings] == [
        ("a", "error"),
        ("before", "error"),
        ("with-let", "warning"),
    ]
    assert "variable $v: " in raised.value.faults[0].message


def test_xpath_1_binding_keeps_first_node_semantics(tmp_path: Path) -> None:
    # queryBinding "xslt": XPath 1.0 takes the first of several nodes where 2.0 raises XPTY0004
    body = """<sch:pattern><sch:rule context="t:b">
                <sch:report id="first-a" test="normalize-space(../t:a) = 'x'">first a is x</sch:report>
              </sch:rule></sch:pattern>"""
    rules = _rules(tmp_path, body, binding="xslt")
    assert [f.rule for f in rules.check(etree.fromstring(DOC))] == ["first-a"]
    assert "xsl:try" not in compile_schematron(tmp_path / "r.sch", tmp_path)
    assert "xsl:try" in compile_schematron(_rules_file(tmp_path, body, name="r2.sch"), tmp_path)


def test_document_text_and_namespaced_attribute_contexts_are_located(tmp_path: Path) -> None:
    rules = _rules(
        tmp_path,
        """<sch:ns prefix="o" uri="urn:o"/>
           <sch:pattern><sch:rule context="/"><sch:report id="doc" test="true()">d</sch:report></sch:rule></sch:pattern>
           <sch:pattern><sch:rule context="t:a/text()"><sch:report id="txt" test=". = 'y'">t</sch:report>
           </sch:rule></sch:pattern>
           <sch:pattern><sch:rule context="@o:x"><sch:report id="att" test="true()">a</sch:report></sch:rule>
           </sch:pattern>""",
    )
    doc = DOC.replace(b'<t:b/>', b'<t:b xmlns:o="urn:o" o:x="1"/>')
    assert [(f.rule, f.line, f.path) for f in rules.check(etree.fromstring(doc))] == [
        ("doc", 1, "/t:r"),  # the document node: reported on the root element
        ("txt", 3, "/t:r/t:a[2]"),  # a text node: on its parent
        ("att", 4, "/t:r/t:b/@o:x"),
    ]


def test_position_keeps_its_iso_meaning(tmp_path: Path) -> None:
    # The ISO skeleton applies templates to @*|node() of each node: position() is among the siblings,
    # text nodes included (t:a[1] is the 2nd child of t:r, after the indentation)
    rules = _rules(
        tmp_path,
        """<sch:pattern><sch:rule context="t:a | t:b">
             <sch:report id="p" test="true()"><sch:value-of select="position()"/>/<sch:value-of
               select="last()"/></sch:report></sch:rule></sch:pattern>""",
    )
    assert [f.message for f in rules.check(etree.fromstring(DOC))] == ["2/7", "4/7", "6/7"]


def _many(kind: str, count: int) -> bytes:
    return b"<t:r xmlns:t='urn:t'>" + f"<t:{kind}/>".encode() * count + b"<t:e/></t:r>"


def test_findings_are_capped_with_a_summary_of_the_worst_left_out(tmp_path: Path) -> None:
    # 250 warnings first (pattern order), then 1 error: the error is cut, the summary carries its severity
    rules = _rules(
        tmp_path,
        """<sch:pattern><sch:rule context="t:w"><sch:report id="w" role="warning" test="true()">w</sch:report>
           </sch:rule></sch:pattern>
           <sch:pattern><sch:rule context="t:e"><sch:report id="e" test="true()">e</sch:report></sch:rule>
           </sch:pattern>""",
    )
    findings = rules.check(etree.fromstring(_many("w", 250)))
    assert len(findings) == 201
    assert {f.rule for f in findings[:200]} == {"w"}
    assert findings[199].path == "/t:r/t:w[200]"
    summary = findings[200]
    assert (summary.severity, summary.rule) == ("error", "schematron")
    assert summary.message == "51 more Schematron findings omitted (1 error, 50 warning)"


def test_cut_rule_faults_still_make_the_result_incomplete(tmp_path: Path) -> None:
    rules = _rules(
        tmp_path,
        """<sch:pattern><sch:rule context="t:w"><sch:report id="w" role="info" test="true()">w</sch:report>
           </sch:rule></sch:pattern>
           <sch:pattern><sch:rule context="t:e"><sch:assert id="bad" test="normalize-space(../t:w) = ''">x</sch:assert>
           </sch:rule></sch:pattern>""",
    )
    with pytest.raises(SchematronIncomplete) as raised:
        rules.check(etree.fromstring(_many("w", 200)))
    [fault] = raised.value.faults
    assert fault.severity == "warning"
    assert fault.message == "1 more Schematron findings omitted (1 rule faults)"


def test_a_pathological_megabyte_is_checked_in_one_pass(tmp_path: Path) -> None:
    # 1 MB of empty sibling elements, each one a finding: locating must not rescan the document per
    # finding (scripts/bench/validate.py times this document), and the report stays at 200 + 1
    rules = _rules(
        tmp_path,
        """<sch:pattern><sch:rule context="*"><sch:assert id="empty" test="* or normalize-space()">empty
           </sch:assert></sch:rule></sch:pattern>""",
    )
    count = (1024 * 1024) // len("<t:w/>")
    root = etree.fromstring(_many("w", count).replace(b"><", b">\n<"))
    findings = rules.check(root)
    assert len(findings) == 201
    assert (findings[199].line, findings[199].path) == (201, "/t:r/t:w[200]")
    assert findings[200].message == f"{count + 1 - 200} more Schematron findings omitted ({count + 1 - 200} error)"


def test_paths_are_those_of_lxml_getpath() -> None:
    # Findings' paths are built from per-parent tables (getpath rescans every sibling on each call); they
    # must read exactly as getpath's, for prefixed, unqualified and default-namespace elements alike.
    fixtures = Path(__file__).resolve().parents[2] / "fixtures" / "xoev"
    docs = [p.read_bytes() for p in sorted(fixtures.rglob("*.xml"))]
    docs += [
        b'<r xmlns="urn:d" xmlns:p="urn:p" xmlns:q="urn:p"><a/><p:a/><q:a/><p:a/><!-- c --><b xmlns="">'
        b'<a/><a/><x:a xmlns:x="urn:d"/><c/><a xmlns="urn:e"/></b><?pi x?><a/></r>',
        b'<p:r xmlns:p="urn:p"><a/><p:a/><a xmlns="urn:z"/><a/><p:b><c/></p:b></p:r>',
    ]
    checked = 0
    for doc in docs:
        root = etree.fromstring(doc)
        locate = _Locator(root)
        for element in root.iter(etree.Element):
            assert locate.path(element) == root.getroottree().getpath(element)
            checked += 1
    assert checked > 3000


@pytest.mark.parametrize(
    ("context", "elements_only"),
    [
        ("//*", True),
        ("xbau:a//xbau:b", True),
        ('t:a[@n = "("]', True),  # inside predicates and literals nothing counts
        ('t:x[. = "|"] | t:y', True),
        ("/ | t:a", False),  # the document node, as one branch of a union
        ("t:a union /", False),
        ("@x", False),
        ("t:a/text()", False),
        ("key('k', 'v')", False),
        ("$nodes", False),
    ],
)
def test_which_patterns_run_over_elements_only(context: str, elements_only: bool) -> None:
    assert _elements_only([context]) is elements_only


def test_a_union_with_the_document_node_still_fires_on_it(tmp_path: Path) -> None:
    rules = _rules(
        tmp_path,
        '<sch:pattern><sch:rule context="/ | t:b"><sch:report id="r" test="true()">x</sch:report></sch:rule>'
        "</sch:pattern>",
    )
    assert [(f.rule, f.path) for f in rules.check(etree.fromstring(DOC))] == [("r", "/t:r"), ("r", "/t:r/t:b")]


def test_rules_failing_as_a_whole_never_make_a_document_valid(tmp_path: Path) -> None:
    # A schema-level let raises (no xsl:try can catch a global variable): the whole file stops, and the
    # engine reports "not_checked" with the reason, not "valid".
    (tmp_path / "x.xsd").write_text(
        "<xs:schema xmlns:xs='http://www.w3.org/2001/XMLSchema' targetNamespace='urn:t' "
        "elementFormDefault='qualified'><xs:element name='r'><xs:complexType><xs:sequence>"
        "<xs:element name='a' maxOccurs='unbounded' type='xs:string'/></xs:sequence></xs:complexType>"
        "</xs:element></xs:schema>"
    )
    _rules_file(
        tmp_path,
        '<sch:let name="g" value="normalize-space(//t:a)"/><sch:pattern><sch:rule context="t:r">'
        '<sch:assert test="$g != \'z\'">x</sch:assert></sch:rule></sch:pattern>',
    )
    manifest = {"standard": "T", "version": "1", "namespaces": ["urn:t"], "entry": "x.xsd", "schematron": ["r.sch"]}
    (tmp_path / "bundle.json").write_text(json.dumps(manifest))
    engine = ValidationEngine([Bundle(tmp_path, read_manifest(tmp_path), "operator")])
    assert engine.validate(b"<t:r xmlns:t='urn:t'><t:a>1</t:a></t:r>").verdict == "valid"
    report = engine.validate(b"<t:r xmlns:t='urn:t'><t:a>1</t:a><t:a>2</t:a></t:r>")
    assert report.verdict == "not_checked"
    assert (report.reason or "").startswith("validation could not run: Saxon failed while applying the rules")
