"""Chain contexts (``//a//b``) found by ``root.iter`` and the ancestors select exactly what the XPath selects.

:class:`~hub.validation.schematron_lxml.LxmlRules` answers rule contexts that are chains of element names
without XPath (``_Chains``). These tests compare, rule by rule, the nodes it finds with the nodes the
compiled context XPath selects: on every XBau fixture, on XBau messages nested inside other messages (as
``AnwendungsspezifischeErweiterungXML``, an ``xs:any`` with lax processing, allows), and on random trees
for synthetic chains; then the findings of a synthetic schema with chain and non-chain rules in one
pattern against Saxon. The per-rule "suspect" XPath (all tests and guards or-ed) is checked against the
checks one by one.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import saxonche  # noqa: F401  (a runtime dependency: these tests must not be skipped)
from lxml import etree

from hub.validation.schematron import SchematronRules
from hub.validation.schematron_lxml import LxmlRules, _Check, _Rule

ROOT = Path(__file__).resolve().parents[3]
XSD = ROOT / "xsd" / "xbau-2.6"
FIXTURES = ROOT / "tests" / "fixtures" / "xoev" / "xbau-2.6"
XBAU = "http://www.xleitstelle.de/xbau/2/6"
SCH = "http://purl.oclc.org/dsdl/schematron"


@pytest.fixture(scope="module")
def xbau() -> LxmlRules:
    schema = etree.parse(str(XSD / "xbau-schematron.sch")).getroot()
    return LxmlRules(schema, "xbau-schematron.sch")


def _fixture(name: str) -> etree._Element:
    return etree.parse(str(FIXTURES / name)).getroot()


def _x(local: str) -> str:
    return f"{{{XBAU}}}{local}"


def _nested_documents() -> dict[str, etree._Element]:
    """XBau messages inside other messages and other unusual placements of the chain names."""
    antrag = _fixture("constructed_baugenehmigung.antrag.0200.xml")
    statistik = _fixture("constructed_statistik.baugenehmigung.0421.xml")
    docs: dict[str, etree._Element] = {}

    # a whole statistics message in an application-specific extension of the application
    root = copy.deepcopy(antrag)
    extension = etree.SubElement(root[0], "anwendungsspezifischeErweiterung")
    extension.append(etree.Comment(" lax content follows "))
    extension.append(copy.deepcopy(statistik))
    extension.append(etree.ProcessingInstruction("pi", "data"))
    docs["0421 inside 0200"] = root

    # the same message type nested in itself, twice (namesake ancestors), and a second nachrichtenkopf
    root = copy.deepcopy(statistik)
    inner = copy.deepcopy(statistik)
    gebaeude = inner.find(f".//{_x('datenEinzelnesGebaeude')}")
    assert gebaeude is not None
    gebaeude.append(copy.deepcopy(statistik))
    angaben = root.find(f".//{_x('allgemeineAngaben')}")
    assert angaben is not None
    angaben.append(inner)
    docs["0421 inside 0421 inside 0421"] = root

    # chain names outside any message, a namespaced nachrichtenkopf.g2g (not the unqualified one), and
    # a message element that is not the document element
    root = etree.Element("umschlag", nsmap={None: "urn:other"})
    etree.SubElement(root, "{urn:other}nachrichtenkopf.g2g")
    etree.SubElement(root, _x("allgemeineAngaben"))
    etree.SubElement(root, "nachrichtenkopf.g2g")
    message = etree.SubElement(root, _x("statistik.baubeginn.0423"))
    etree.SubElement(etree.SubElement(message, "x"), "nachrichtenkopf.g2g").append(etree.Comment("c"))
    etree.SubElement(message, "{urn:other}nachrichtenkopf.g2g")  # a namesake in another namespace
    etree.SubElement(etree.SubElement(message, _x("heizenergie")), _x("heizenergie"))
    etree.SubElement(root, _x("anzeige.beseitigungAbsicht.0950")).append(
        etree.Element(_x("anzeige.beseitigungAbsicht.0950"))
    )
    docs["names outside messages"] = etree.fromstring(etree.tostring(root))  # a document of its own

    # an element named like a message type but in another namespace
    root = etree.fromstring(
        b"<m:statistik.baugenehmigung.0421 xmlns:m='urn:not-xbau' xmlns:x='" + XBAU.encode() + b"'>"
        b"<x:allgemeineAngaben/><nachrichtenkopf.g2g/></m:statistik.baugenehmigung.0421>"
    )
    docs["foreign namesake of a message type"] = root
    return docs


DOCUMENTS = sorted(p.name for p in FIXTURES.glob("*.xml"))
NESTED = sorted(_nested_documents())


def _assert_same_contexts(rules: LxmlRules, root: etree._Element) -> int:
    """Every chain rule's nodes equal its context XPath's; returns how many rules matched something."""
    tree = root.getroottree()
    contexts = rules._active(root)
    chain_rules = [rule for pattern in rules.patterns for rule in pattern if rule.chains]
    matched = 0
    for rule in chain_rules:
        assert rule.context is not None
        expected = rule.context(tree)
        assert contexts.nodes.get(rule, []) == expected, rule.context.path
        matched += bool(expected)
    # the candidates are in document order and hold every context node (findings are sorted by them)
    order = {element: i for i, element in enumerate(root.iter())}
    positions = [order[node] for node in contexts.candidates]
    assert positions == sorted(positions)
    assert all(node in contexts.candidates for nodes in contexts.nodes.values() for node in nodes)
    active = {rule for pattern in contexts.patterns for rule in pattern}
    assert {rule for rule in active if rule.chains} == set(contexts.nodes)
    return matched


def test_every_xbau_rule_context_is_a_chain(xbau: LxmlRules) -> None:
    rules = [rule for pattern in xbau.patterns for rule in pattern]
    assert len(rules) == 154
    assert all(rule.chains for rule in rules)
    assert len(xbau._chains.names) == 7  # one C-level walk looks for these names only


@pytest.mark.parametrize("name", DOCUMENTS)
def test_xbau_fixtures(xbau: LxmlRules, name: str) -> None:
    _assert_same_contexts(xbau, _fixture(name))


@pytest.mark.parametrize("name", NESTED)
def test_nested_and_unusual_documents(xbau: LxmlRules, name: str) -> None:
    matched = _assert_same_contexts(xbau, _nested_documents()[name])
    assert bool(matched) is (name != "foreign namesake of a message type")


# --- random trees against synthetic chains -----------------------------------------------------------

CHAINS = [
    "a",
    "p:a",
    "a//b",
    "b//a",
    "a//a",
    "a//b//c",
    "c//b//a//c",
    "a//a//a",
    "p:a//b//p:a",
    "a//c | b//c",
    "a//b | b",
    "a//b//c | c",
    "p:b//c//b | a//b",
]


def _schema(contexts: list[str], *, checks: str = "<sch:assert test='true()'>x</sch:assert>") -> str:
    patterns = "".join(
        f"<sch:pattern id='p{i}'><sch:rule context='{context}'>{checks}</sch:rule></sch:pattern>"
        for i, context in enumerate(contexts)
    )
    return (
        f"<sch:schema xmlns:sch='{SCH}' queryBinding='xslt2'><sch:ns prefix='p' uri='urn:p'/>{patterns}</sch:schema>"
    )


def _random_tree(rng: random.Random) -> etree._Element:
    names = ["a", "b", "c", "d", "{urn:p}a", "{urn:p}b", "{urn:q}a"]
    root = etree.Element(rng.choice(names))
    nodes = [root]
    for _ in range(rng.randint(0, 40)):
        parent = rng.choice(nodes)
        if rng.random() < 0.1:
            parent.append(etree.Comment("c"))
            continue
        nodes.append(etree.SubElement(parent, rng.choice(names)))
    return etree.fromstring(etree.tostring(root))


def test_random_trees_against_the_xpath() -> None:
    rules = LxmlRules(etree.fromstring(_schema(CHAINS)), "chains.sch")
    assert all(rule.chains for pattern in rules.patterns for rule in pattern)
    rng = random.Random(20240611)
    matched = 0
    for _ in range(400):
        matched += _assert_same_contexts(rules, _random_tree(rng))
    assert matched > 1000  # the trees exercise the chains


@pytest.mark.parametrize(
    ("context", "chain"),
    [
        ("a//b", True),
        ("/a//b", False),
        ("a/b", False),
        ("a//*", False),
        ("a//b[c]", False),
        ("p:*//b", False),
        ("a//child::b", False),
        ("a//b | c/d", False),
    ],
)
def test_only_name_chains_skip_the_xpath(context: str, chain: bool) -> None:
    rules = LxmlRules(etree.fromstring(_schema([context])), "one.sch")
    [[rule]] = rules.patterns
    assert rule.context is not None
    assert bool(rule.chains) is chain


# --- findings against Saxon ------------------------------------------------------------------------------

MIXED = """
<sch:schema xmlns:sch="http://purl.oclc.org/dsdl/schematron" queryBinding="xslt2">
  <sch:pattern id="mixed">
    <sch:rule context="a[@skip]"><sch:report test="true()">skipped <sch:name/></sch:report></sch:rule>
    <sch:rule context="a//b//c | a//d">
      <sch:assert test="@ok" id="c-ok">c or d without ok</sch:assert>
      <sch:report test="@bad" id="c-bad">bad <sch:value-of select="@bad"/></sch:report>
    </sch:rule>
    <sch:rule context="b//b"><sch:assert test="count(*) &lt; 2" id="b-few">many</sch:assert></sch:rule>
    <sch:rule context="b"><sch:report test="@bad" id="b-bad">plain b</sch:report></sch:rule>
  </sch:pattern>
  <sch:pattern id="single">
    <sch:rule context="a//c"><sch:report test="@bad" id="last">last rule</sch:report></sch:rule>
  </sch:pattern>
</sch:schema>
"""

DOCS = [
    "<a><b><c/><c ok='1'/><d/></b><b bad='1'><b><x/><y/></b></b></a>",
    "<r><a skip='1'><b><c/></b></a><a><b><b><c ok='1' bad='2'/></b></b><d ok='1'/></a><c bad='1'/></r>",
    "<r><!-- c --><a><?pi x?><d/><b><a><b><c bad='3'/></b></a></b></a><b bad='1'><c/></b></r>",
    "<a>" + "".join(f"<b><c ok='1' bad='{i}'/></b>" for i in range(12)) + "<b><b/><b bad='x'/></b></a>",
]


@pytest.mark.parametrize("doc", DOCS)
def test_findings_equal_saxon(tmp_path: Path, doc: str) -> None:
    path = tmp_path / "mixed.sch"
    path.write_text(MIXED)
    rules = SchematronRules([path], tmp_path)
    root = etree.fromstring(doc)
    reference = rules.check_with_saxon(root)
    assert reference  # every document fails some check
    assert rules.check_with_lxml(root) == reference
    _assert_same_contexts(rules._lxml[0], root)


# --- the suspect XPath equals the checks one by one ------------------------------------------------------


def _checks_fire(rule: _Rule, node: etree._Element) -> bool:
    steps = [step for step in rule.steps if isinstance(step, _Check)]
    return any((step.guard is not None and step.guard(node)) or step.test(node) for step in steps)


def _mutants() -> list[etree._Element]:
    """The statistics message with one element at a time hollowed out: its text "x", its children gone."""
    statistik = _fixture("constructed_statistik.baugenehmigung.0421.xml")
    out = []
    for index in range(1, len(list(statistik.iter(etree.Element))), 3):
        doc = copy.deepcopy(statistik)
        target = list(doc.iter(etree.Element))[index]
        for child in list(target):
            target.remove(child)
        target.text = "x"
        out.append(doc)
    return out


def test_suspect_is_the_disjunction_of_the_checks(xbau: LxmlRules) -> None:
    docs = [_fixture(name) for name in DOCUMENTS] + list(_nested_documents().values()) + _mutants()
    seen = {True: 0, False: 0}
    for root in docs:
        contexts = xbau._active(root)
        for rule, nodes in contexts.nodes.items():
            if rule.suspect is None:
                assert rule.has_let or len(rule.steps) == 1
                continue
            for node in nodes:
                fires = _checks_fire(rule, node)
                assert bool(rule.suspect(node)) is fires
                seen[fires] += 1
    assert seen[True] > 5 and seen[False] > 20
