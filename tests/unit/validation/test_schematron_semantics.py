"""ISO Schematron semantics on the Saxon engine: the shipped XBau rules and XPath 2.0 corner cases.

The expected findings were recorded from the reference path of the engine that had a second, lxml-based
path (``check_with_saxon`` at commit cde800d, one recursive walk per pattern); the one engine must give
exactly these.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest
import saxonche  # noqa: F401  (a runtime dependency: these tests must not be skipped)
from lxml import etree

from hub.validation.report import Finding
from hub.validation.schematron import SchematronError, SchematronIncomplete, SchematronRules

XBAU = Path(__file__).resolve().parents[3] / "xsd" / "xbau-2.6"
FIXTURE = (
    Path(__file__).resolve().parents[2]
    / "fixtures"
    / "xoev"
    / "xbau-2.6"
    / "constructed_prozessnachrichten.eingangsbestaetigung.1120.xml"
)
HEAD = '<sch:schema xmlns:sch="http://purl.oclc.org/dsdl/schematron" queryBinding="xslt2">'


@pytest.fixture(scope="module")
def xbau_rules() -> SchematronRules:
    return SchematronRules([XBAU / "xbau-schematron.sch", XBAU / "xbau-schematron-leere-elemente.sch"], XBAU)


def _rules(tmp_path: Path, body: str) -> SchematronRules:
    path = tmp_path / "r.sch"
    path.write_text(HEAD + '<sch:ns prefix="t" uri="urn:t"/><sch:ns prefix="o" uri="urn:o"/>' + body + "</sch:schema>")
    return SchematronRules([path], tmp_path)


def _same(rules: SchematronRules, root: etree._Element) -> list[Finding]:
    findings = rules.check(root)
    assert rules.check(root) == findings  # compiled once, run as often as needed
    return findings


# --- the shipped XBau rules -------------------------------------------------------------------------


def _statistik(
    *,
    kennung: str = "bab:01001000",
    bundesland: bool = True,
    bauherr: str = "Muster GmbH",
    kategorie: str = "7",
    raeume: str | None = "14",
    wohnungen: str = "2",
    heizung: tuple[str, str] = ("001", "002"),
    empty: str = "",
) -> etree._Element:
    raeume_el = (
        f"<xbau:anzahlRaeumebeiWohnungenMitSiebenOderMehrRaeumen>{raeume}"
        "</xbau:anzahlRaeumebeiWohnungenMitSiebenOderMehrRaeumen>"
        if raeume is not None
        else ""
    )
    land = "<bundesland>09</bundesland>" if bundesland else ""
    return etree.fromstring(
        f"""<xbau:statistik.baubeginn.0423 xmlns:xbau="http://www.xleitstelle.de/xbau/2/6">
  <nachrichtenkopf.g2g>
    <leser><verzeichnisdienst><code>DVDV</code></verzeichnisdienst><kennung>{kennung}</kennung></leser>
    <autor><verzeichnisdienst><code>DVDV</code></verzeichnisdienst><kennung>psw:1</kennung></autor>
  </nachrichtenkopf.g2g>
  <xbau:allgemeineAngaben>
    <xbau:flurstueck>{land}</xbau:flurstueck>
    <xbau:bauherr><organisation><name>{bauherr}</name></organisation></xbau:bauherr>
  </xbau:allgemeineAngaben>
  <xbau:anzahlDerWohnungenNeu>
    <xbau:kategorie><code>{kategorie}</code></xbau:kategorie>{raeume_el}
    <xbau:anzahlWohnungen>{wohnungen}</xbau:anzahlWohnungen>
  </xbau:anzahlDerWohnungenNeu>
  <xbau:heizenergie>
    <xbau:primaereHeizenergieHeizung><xbau:code><code>{heizung[0]}</code></xbau:code>
    </xbau:primaereHeizenergieHeizung>
    <xbau:sekundaereHeizenergieHeizung><xbau:code><code>{heizung[1]}</code></xbau:code>
    </xbau:sekundaereHeizenergieHeizung>
  </xbau:heizenergie>{empty}
</xbau:statistik.baubeginn.0423>""".encode()
    )


@pytest.mark.parametrize(
    ("variant", "expected_rules"),
    [
        ({}, []),
        ({"kennung": "BAB-1"}, ["sch-xbau-001"]),
        ({"bundesland": False}, ["sch-stat-001", "sch-xbau-gen-001"]),  # flurstueck is empty then
        ({"bauherr": " "}, ["sch-stat-002", "sch-xbau-gen-001"]),
        ({"raeume": None}, ["sch-stat-004"]),
        ({"raeume": "10"}, ["sch-stat-005"]),
        ({"kategorie": "5", "raeume": None, "wohnungen": "1"}, []),
        ({"heizung": ("014", "001")}, ["sch-stat-003"]),
        ({"empty": "<xbau:leer/><xbau:leer2>  </xbau:leer2>"}, ["sch-xbau-gen-001", "sch-xbau-gen-001"]),
    ],
)
def test_xbau_statistik_messages(
    xbau_rules: SchematronRules, variant: dict[str, object], expected_rules: list[str]
) -> None:
    root = _statistik(**variant)  # type: ignore[arg-type]
    # statistik rules use XPath 2.0 (if/then/else, exists, matches, arithmetic)
    findings = _same(xbau_rules, root)
    assert sorted(str(f.rule) for f in findings) == sorted(expected_rules)


def test_xbau_rules_raising_in_xpath2_are_reported_per_rule(xbau_rules: SchematronRules) -> None:
    root = _statistik(wohnungen="x", bundesland=False)  # 7 * 'x' is a dynamic error in XPath 2.0
    with pytest.raises(SchematronIncomplete, match="Cannot convert") as raised:
        xbau_rules.check(root)
    # the rule computing with anzahlWohnungen is reported as a fault; the others still ran, and
    # sch-stat-001 (no Bundesland) and sch-xbau-gen-001 (the now empty flurstueck) are reported as usual
    faults = raised.value.faults
    assert [(f.rule, f.severity) for f in faults] == [("sch-stat-005", "warning")]
    assert [f.rule for f in raised.value.findings if f not in faults] == ["sch-stat-001", "sch-xbau-gen-001"]


def test_xbau_kernmodul_message(xbau_rules: SchematronRules) -> None:
    data = FIXTURE.read_bytes()
    assert _same(xbau_rules, etree.fromstring(data)) == []
    broken = data.replace(b"<vorgang>AZ-2025-0001</vorgang>", b"<vorgang>  </vorgang>")
    broken = broken.replace(b"<name>Antragsportal Musterland</name>", b"<name/>")
    [first, second] = _same(xbau_rules, etree.fromstring(broken))
    assert (first.rule, first.line, first.path) == (
        "sch-xbau-gen-001",
        28,
        "/xbauk:prozessnachrichten.eingangsbestaetigung.1120/nachrichtenkopf.g2g/autor/name",
    )
    assert (second.line, second.severity) == (32, "error")


# --- Schematron semantics ------------------------------------------------------------

DOC = etree.fromstring(
    b"""<t:r xmlns:t="urn:t" xmlns:o="urn:o">
  <t:a n="1" o:x="p">x<!-- c --> y</t:a>
  <t:a n="5">z</t:a>
  <t:a n="abc"><t:b/><t:b>2</t:b></t:a>
  <t:b/>
  <u>   </u>
</t:r>"""
)


def test_first_rule_wins_order_roles_and_messages(tmp_path: Path) -> None:
    rules = _rules(
        tmp_path,
        """<sch:let name="g" value="'global'"/>
        <sch:pattern>
          <sch:let name="p" value="count(//t:a)"/>
          <sch:rule context="t:a[@n = '1']" role="warning">
            <sch:assert id="first" test="false()">first <sch:value-of select="@n"/> <sch:name/></sch:assert>
            <sch:report id="also" test="@o:x" flag="info">flagged <sch:value-of select="@o:x"/></sch:report>
          </sch:rule>
          <sch:rule context="t:a | t:b">
            <sch:assert id="second" test="$p = 3 and t:b">second <sch:value-of select="."/>|<sch:value-of
              select="t:b"/>|<sch:value-of select="$g"/>|<sch:value-of select="t:b = '2'"/></sch:assert>
          </sch:rule>
        </sch:pattern>
        <sch:pattern>
          <sch:rule context="/t:r/*[not(self::t:a)]">
            <sch:report id="not-a" test="not(normalize-space())" role="caution">empty
              <sch:emph>element</sch:emph> <sch:name path="."/></sch:report>
          </sch:rule>
        </sch:pattern>""",
    )
    findings = _same(rules, DOC)
    assert [(f.rule, f.severity, f.path) for f in findings] == [
        ("first", "warning", "/t:r/t:a[1]"),  # the rule's role
        ("also", "info", "/t:r/t:a[1]"),  # the report's flag
        ("second", "error", "/t:r/t:a[2]"),  # t:a[1] was taken by the first rule
        ("second", "error", "/t:r/t:a[3]/t:b[1]"),
        ("second", "error", "/t:r/t:a[3]/t:b[2]"),
        ("second", "error", "/t:r/t:b"),
        ("not-a", "warning", "/t:r/t:b"),  # patterns in order, nodes in document order within each
        ("not-a", "warning", "/t:r/u"),
    ]
    assert findings[0].message == "first 1 t:a"
    assert findings[2].message == "second z||global|false"
    assert findings[4].message == "second 2||global|false"
    assert findings[6].message == "empty element t:b"


def test_rule_level_lets_and_value_of_lists(tmp_path: Path) -> None:
    rules = _rules(
        tmp_path,
        """<sch:pattern><sch:rule context="t:r">
             <sch:let name="as" value="t:a"/>
             <sch:assert id="before" test="count($as) = 2">n=<sch:value-of select="$as/@n"/></sch:assert>
             <sch:let name="k" value="local-name(.)"/>
             <sch:report id="after" test="$k = 'r'">k=<sch:value-of select="$k"/> a=<sch:value-of
               select="$as"/></sch:report>
           </sch:rule></sch:pattern>""",
    )
    findings = _same(rules, DOC)
    assert [f.message for f in findings] == ["n=1 5 abc", "k=r a=x y z 2"]


def _write(tmp_path: Path, test: str) -> Path:
    path = tmp_path / "one.sch"
    path.write_text(
        HEAD + '<sch:ns prefix="t" uri="urn:t"/><sch:ns prefix="o" uri="urn:o"/>'
        '<sch:pattern><sch:rule context="t:a">'
        f'<sch:report id="r" test={quoteattr(test)}>hit</sch:report></sch:rule></sch:pattern></sch:schema>'
    )
    return path


# (test of a report on every t:a, the paths it reports) or, where XPath 2.0 raises on some t:a,
# ("incomplete", every finding as (rule, severity, path)): XPath 1.0 would answer differently for most.
EXPRESSIONS: list[tuple[str, list[str] | tuple[str, list[tuple[str, str, str]]]]] = [
    ("@n = '1'", ['/t:r/t:a[1]']),
    ("@n != '1'", ['/t:r/t:a[2]', '/t:r/t:a[3]']),
    ("t:b = ''", ['/t:r/t:a[3]']),
    ("t:b != ''", ['/t:r/t:a[3]']),
    (". = 'z'", ['/t:r/t:a[2]']),
    ("normalize-space(.) = 'x y'", ['/t:r/t:a[1]']),
    ('string-length(@n) = 3', ['/t:r/t:a[3]']),
    ("contains(@n, 'b')", ['/t:r/t:a[3]']),
    ("starts-with(string(.), 'x')", ['/t:r/t:a[1]']),
    ("substring-before(@n, 'c') = 'ab'", ['/t:r/t:a[3]']),
    ("translate(@n, 'abc', 'ABC') = 'ABC'", ['/t:r/t:a[3]']),
    ("concat(@n, '-', name()) = '5-t:a'", ['/t:r/t:a[2]']),
    ("local-name(.) = 'a' and namespace-uri() = 'urn:t'", ['/t:r/t:a[1]', '/t:r/t:a[2]', '/t:r/t:a[3]']),
    ('count(t:b) = 2', ['/t:r/t:a[3]']),
    ('count(t:b) > 1', ['/t:r/t:a[3]']),
    ("count(t:b[. = '2']) = count(t:b[2])", ['/t:r/t:a[1]', '/t:r/t:a[2]', '/t:r/t:a[3]']),
    ("not(*) or t:b[last()] = '2'", ['/t:r/t:a[1]', '/t:r/t:a[2]', '/t:r/t:a[3]']),
    ('../t:b', ['/t:r/t:a[1]', '/t:r/t:a[2]', '/t:r/t:a[3]']),
    ("following-sibling::t:a/@n = '5'", ['/t:r/t:a[1]']),
    ("preceding::t:a[1]/@n = '1'", ['/t:r/t:a[2]']),
    ("ancestor::t:r/u = '   '", ['/t:r/t:a[1]', '/t:r/t:a[2]', '/t:r/t:a[3]']),
    ('boolean(@o:x)', ['/t:r/t:a[1]']),
    ('t:b[1] | t:b[2]', ['/t:r/t:a[3]']),
    ("(t:b)[2] = '2'", ['/t:r/t:a[3]']),
    ("//u = '   '", ['/t:r/t:a[1]', '/t:r/t:a[2]', '/t:r/t:a[3]']),
    ('true() = not(false())', ['/t:r/t:a[1]', '/t:r/t:a[2]', '/t:r/t:a[3]']),
    ('exists(t:b)', ['/t:r/t:a[3]']),
    ("empty(t:b) or t:b = ('2', '3')", ['/t:r/t:a[1]', '/t:r/t:a[2]', '/t:r/t:a[3]']),
    ("if (@n = '1') then exists(@o:x) else not(@o:x)", ['/t:r/t:a[1]', '/t:r/t:a[2]', '/t:r/t:a[3]']),
    ("if (@n = 'abc') then true() else @n > 2", ['/t:r/t:a[2]', '/t:r/t:a[3]']),
    ("matches(@n, '^[a-z]+$') or matches(@n, '^\\d$')", ['/t:r/t:a[1]', '/t:r/t:a[2]', '/t:r/t:a[3]']),
    ("matches(., '\\s')", ['/t:r/t:a[1]']),
    ('t:b[2] * 2 = 4 and not(t:b[2] div 0 < 0)', ['/t:r/t:a[3]']),
    ('@n < t:b', []),
    ('@n < 3', ('incomplete', [('r', 'error', '/t:r/t:a[1]'), ('r', 'warning', '/t:r/t:a[3]')])),
    ('@n = 1', ('incomplete', [('r', 'error', '/t:r/t:a[1]'), ('r', 'warning', '/t:r/t:a[3]')])),
    (
        "normalize-space(t:b) = ''",
        ("incomplete", [("r", "error", "/t:r/t:a[1]"), ("r", "error", "/t:r/t:a[2]"), ("r", "warning", "/t:r/t:a[3]")]),
    ),
    ("matches(t:b, '2')", ('incomplete', [('r', 'warning', '/t:r/t:a[3]')])),
    ('count(t:b) + 1 = 3', ['/t:r/t:a[3]']),
    ('position() = 1', []),
]


@pytest.mark.parametrize(("test", "expected"), EXPRESSIONS)
def test_xpath2_expressions(tmp_path: Path, test: str, expected: object) -> None:
    rules = SchematronRules([_write(tmp_path, test)], tmp_path)
    if isinstance(expected, list):
        assert [f.path for f in _same(rules, DOC)] == expected
        return
    with pytest.raises(SchematronIncomplete) as raised:
        rules.check(DOC)
    assert expected == ("incomplete", [(f.rule, f.severity, f.path) for f in raised.value.findings])


# --- nodes taken by earlier rules, lets, messages, errors ----------------------------------------


def test_nodes_an_earlier_rule_took_are_not_checked_again(tmp_path: Path) -> None:
    # t:a[3] has n="abc", on which "@n < 3" raises in XPath 2.0; the first rule takes it in both patterns,
    # so the check that would raise never looks at it
    rules = _rules(
        tmp_path,
        """<sch:pattern>
             <sch:rule context="t:a[@n = 'abc']"><sch:report id="abc" test="true()">abc</sch:report></sch:rule>
             <sch:rule context="t:a"><sch:assert id="small" test="@n &lt; 3">big</sch:assert></sch:rule>
             <sch:rule context="t:b"><sch:report id="b" test="false()">b</sch:report></sch:rule>
           </sch:pattern>
           <sch:pattern>
             <sch:rule context="t:a[@n = 'abc']"><sch:report id="abc2" test="false()">abc</sch:report></sch:rule>
             <sch:rule context="t:a"><sch:assert id="small2" test="@n &lt; 3">big</sch:assert></sch:rule>
           </sch:pattern>""",
    )
    findings = _same(rules, DOC)
    assert [(f.rule, f.path) for f in findings] == [
        ("small", "/t:r/t:a[2]"),  # document order within a pattern
        ("abc", "/t:r/t:a[3]"),
        ("small2", "/t:r/t:a[2]"),
    ]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        # rule with a let; t:a[3] has two t:b
        (
            """<sch:rule context="t:a"><sch:let name="k" value="local-name()"/>
              <sch:report id="r" test="$k = 'a' and normalize-space(t:b[1]) = ''">x</sch:report></sch:rule>""",
            [('r', '/t:r/t:a[1]', 'x'), ('r', '/t:r/t:a[2]', 'x'), ('r', '/t:r/t:a[3]', 'x')],
        ),
        (
            """<sch:rule context="t:a"><sch:let name="k" value="local-name()"/>
              <sch:report id="r" test="$k = 'a' and normalize-space(t:b) = ''">x</sch:report></sch:rule>""",
            (
                "incomplete",
                [("r", "error", "/t:r/t:a[1]"), ("r", "error", "/t:r/t:a[2]"), ("r", "warning", "/t:r/t:a[3]")],
            ),
        ),
        # a let that raises: the rule is reported (its id, here none), the others run
        (
            """<sch:rule context="t:a"><sch:let name="k" value="normalize-space(t:b)"/>
              <sch:report id="r" test="$k = '2'">x</sch:report></sch:rule>""",
            ('incomplete', [('schematron', 'warning', '/t:r/t:a[3]')]),
        ),
        (
            """<sch:rule context="t:a[1] | t:a[2]"><sch:let name="k" value="normalize-space(t:b)"/>
              <sch:report id="r" test="$k = ''">x</sch:report></sch:rule>""",
            [('r', '/t:r/t:a[1]', 'x'), ('r', '/t:r/t:a[2]', 'x')],
        ),
        # a message part: only evaluated for the nodes that report
        (
            """<sch:rule context="t:a"><sch:report id="r" test="@n = '5'">v=<sch:value-of
              select="normalize-space(t:b)"/></sch:report></sch:rule>""",
            [('r', '/t:r/t:a[2]', 'v=')],
        ),
        (
            """<sch:rule context="t:a"><sch:report id="r" test="t:b">v=<sch:value-of
              select="normalize-space(t:b)"/></sch:report></sch:rule>""",
            ('incomplete', [('r', 'warning', '/t:r/t:a[3]')]),
        ),
        (
            """<sch:rule context="t:a"><sch:report id="r" test="exists(@o:x)">v=<sch:value-of
              select="if (@n = '1') then exists(@o:x) else false()"/> <sch:value-of
              select="matches(@n, '\\d')"/></sch:report></sch:rule>""",
            [('r', '/t:r/t:a[1]', 'v=true true')],
        ),
    ],
)
def test_lets_and_messages_per_node(tmp_path: Path, rule: str, expected: object) -> None:
    rules = _rules(tmp_path, f"<sch:pattern>{rule}</sch:pattern>")
    if isinstance(expected, list):
        assert [(f.rule, f.path, f.message) for f in _same(rules, DOC)] == expected
        return
    with pytest.raises(SchematronIncomplete) as raised:  # several t:b where XPath 2.0 wants one
        rules.check(DOC)
    assert expected == ("incomplete", [(f.rule, f.severity, f.path) for f in raised.value.findings])
    assert all("XPTY0004" in f.message for f in raised.value.faults)


@pytest.mark.parametrize(
    ("let", "expected"),
    [
        ("exists(//t:b[2])", "g=true"),
        ("normalize-space(//u)", "g="),
        ("normalize-space(//t:b)", None),  # three t:b: XPath 2.0 raises
    ],
)
def test_global_lets(tmp_path: Path, let: str, expected: str | None) -> None:
    rules = _rules(
        tmp_path,
        f"""<sch:let name="g" value="{let}"/><sch:pattern>
              <sch:rule context="t:r"><sch:report id="g" test="true()">g=<sch:value-of select="$g"/></sch:report>
              </sch:rule></sch:pattern>""",
    )
    if expected is not None:
        assert [f.message for f in _same(rules, DOC)] == [expected]
        return
    # a global variable cannot be caught in a rule's xsl:try: its error stops the whole file
    with pytest.raises(SchematronError) as raised:
        rules.check(DOC)
    assert not isinstance(raised.value, SchematronIncomplete)


def test_regex_prefix_of_the_schema_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "re.sch"
    path.write_text(
        HEAD + '<sch:ns prefix="t" uri="urn:t"/><sch:ns prefix="re" uri="urn:t"/><sch:ns prefix="xh" uri="urn:t"/>'
        '<sch:pattern><sch:rule context="re:a"><sch:report id="r" test="matches(@n, \'^\\d$\') and xh:b and @n &lt; 3"'
        ">x</sch:report></sch:rule></sch:pattern></sch:schema>"
    )
    rules = SchematronRules([path], tmp_path)
    doc = etree.fromstring(b'<t:r xmlns:t="urn:t"><t:a n="1"><t:b/></t:a><t:a n="4"><t:b/></t:a></t:r>')
    assert [f.path for f in _same(rules, doc)] == ["/t:r/t:a[1]"]
