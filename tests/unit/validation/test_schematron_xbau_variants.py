"""The shipped XBau 2.6 rules on variants of the constructed messages: the findings rule by rule.

``xbau-schematron.sch`` is written in XPath 2.0 (``if … then … else``, ``exists()``, ``matches()``,
sequence comparisons, arithmetic on element values). Each case mutates a fixture at one of those idioms'
edges; the expected rule ids (``None``: a rule raised an XPath error, reported as a fault) were recorded
from the reference Saxon path of the earlier two-engine code (commit cde800d) and hold on the one engine.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import saxonche  # noqa: F401  (a runtime dependency: these tests must not be skipped)
from lxml import etree

from hub.validation.bundles import load_bundles
from hub.validation.report import Finding
from hub.validation.schematron import SchematronIncomplete, SchematronRules

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "xoev" / "xbau-2.6"
XBAU = "http://www.xleitstelle.de/xbau/2/6"
NS = {"xbau": XBAU}
STATISTIK = "constructed_statistik.baugenehmigung.0421.xml"
ANTRAG = "constructed_baugenehmigung.antrag.0200.xml"
BETEILIGUNG = "constructed_beteiligung.aufforderung.0300.xml"

Mutation = Callable[[etree._Element], None]


@pytest.fixture(scope="module")
def rules() -> SchematronRules:
    bundle = {b.folder.name: b for b in load_bundles([ROOT / "xsd"])[0]}["xbau-2.6"]
    return SchematronRules([bundle.folder / rel for rel in bundle.manifest.schematron], bundle.folder)


def _parse(name: str) -> etree._Element:
    return etree.parse(str(FIXTURES / name)).getroot()


def _outcome(rules: SchematronRules, root: etree._Element) -> list[Finding] | None:
    """The findings; ``None`` when a rule raised an XPath error (then each fault names its rule)."""
    try:
        return rules.check(root)
    except SchematronIncomplete as incomplete:
        assert incomplete.faults and all(f.severity == "warning" for f in incomplete.faults)
        return None


# --- the constructed fixtures -------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("constructed_*.xml")))
def test_constructed_messages(rules: SchematronRules, name: str) -> None:
    text = (FIXTURES / name).read_text(encoding="utf-8")
    violated = re.search(r"violates Schematron (\S+) only", text)
    findings = _outcome(rules, _parse(name))
    assert findings is not None
    assert [f.rule for f in findings] == ([violated.group(1)] if violated else [])


# --- variants: edge cases of the XPath 2.0 idioms -------------------------------------------------------


def _nodes(root: etree._Element, path: str) -> list[etree._Element]:
    found = root.xpath(path, namespaces=NS)
    assert isinstance(found, list) and found, path
    return [n for n in found if isinstance(n, etree._Element)]


def text(path: str, value: str) -> Mutation:
    def mutate(root: etree._Element) -> None:
        for node in _nodes(root, path):
            node.text = value

    return mutate


def twice(path: str, value: str | None = None) -> Mutation:
    def mutate(root: etree._Element) -> None:
        node = _nodes(root, path)[0]
        twin = copy.deepcopy(node)
        if value is not None:
            twin.text = value
        node.addnext(twin)

    return mutate


def drop(path: str) -> Mutation:
    def mutate(root: etree._Element) -> None:
        for node in _nodes(root, path):
            parent = node.getparent()
            assert parent is not None
            parent.remove(node)

    return mutate


def rename_root(tag: str) -> Mutation:
    def mutate(root: etree._Element) -> None:
        root.tag = f"{{{XBAU}}}{tag}"

    return mutate


def add(path: str, tag: str) -> Mutation:
    def mutate(root: etree._Element) -> None:
        etree.SubElement(_nodes(root, path)[0], f"{{{XBAU}}}{tag}").append(etree.fromstring("<name>A</name>"))

    return mutate


LESER = "nachrichtenkopf.g2g/leser"
AUTOR = "nachrichtenkopf.g2g/autor"
BRI = ".//xbau:bruttoRauminhaltBRI"
KG300 = ".//xbau:kostengruppe300"
KG400 = ".//xbau:kostengruppe400"
VOLL = ".//xbau:anzahlVollgeschosse"
GESAMT = ".//xbau:gesamtanzahlWohnungen"
BAUTAETIGKEIT = ".//xbau:artDerBautaetigkeit/code"
WOHNGEBAEUDE = ".//xbau:artDesWohngebaeudes/code"
KATEGORIE = ".//xbau:anzahlDerWohnungenNeu/xbau:kategorie/code"
RAEUME = ".//xbau:anzahlRaeumebeiWohnungenMitSiebenOderMehrRaeumen"
WOHNUNGEN = ".//xbau:anzahlDerWohnungenNeu/xbau:anzahlWohnungen"
FAMILIENNAME = ".//xbau:bauherr/xbau:bauherr//familienname/name"
BUNDESLAND = ".//xbau:flurstueck/bundesland"
HEIZUNG = ".//xbau:heizenergie/xbau:primaereHeizenergieHeizung/xbau:code/code"
HEIZUNG2 = ".//xbau:heizenergie/xbau:sekundaereHeizenergieHeizung/xbau:code/code"
NEUBAU_ONLY = [f"sch-stat-{n:03d}" for n in range(8, 16)]
EMPTY = "sch-xbau-gen-001"  # xbau-schematron-leere-elemente.sch: no empty elements

# (document, mutations, rule ids of the findings in document order; None: a rule raises an
# XPath 2.0 error there, which is reported as a fault of that rule while the others run)
CASES: list[tuple[str, list[Mutation], list[str] | None]] = [
    # sch-xbau-001/002: if (…/code = 'DVDV') then matches(…/kennung, '^[a-z]{3}:\d+$') else true()
    (STATISTIK, [text(f"{LESER}/kennung", "sta:09000000\n")], ["sch-xbau-001"]),  # $ is not before \n
    (STATISTIK, [text(f"{LESER}/kennung", "\nsta:09000000")], ["sch-xbau-001"]),
    (STATISTIK, [text(f"{LESER}/kennung", "STA:1")], ["sch-xbau-001"]),
    (STATISTIK, [text(f"{LESER}/kennung", "sta:")], ["sch-xbau-001"]),
    (STATISTIK, [text(f"{AUTOR}/kennung", "ba:1")], ["sch-xbau-002"]),
    (STATISTIK, [text(f"{AUTOR}/kennung", "bab:0916 1000")], ["sch-xbau-002"]),
    (STATISTIK, [text(f"{LESER}/kennung", "sta:\u0660\u0669")], []),  # Arabic-Indic digits are \d
    (STATISTIK, [text(f"{LESER}/kennung", "st\u00e4:09")], ["sch-xbau-001"]),  # non-ASCII: Saxon
    (STATISTIK, [twice(f"{LESER}/kennung")], None),  # matches() of two strings: a type error
    (STATISTIK, [text(f"{LESER}/verzeichnisdienst/code", "X"), text(f"{LESER}/kennung", "?")], []),
    (STATISTIK, [text(f"{LESER}/verzeichnisdienst/code", "X"), twice(f"{LESER}/kennung")], []),
    (STATISTIK, [twice(f"{LESER}/verzeichnisdienst/code", "X"), text(f"{LESER}/kennung", "?")], ["sch-xbau-001"]),
    (STATISTIK, [drop(f"{LESER}/kennung")], ["sch-xbau-001"]),  # matches((), …) matches ''
    # sch-stat-007: arithmetic on Baukosten and BRI (decimals, converted as XPath 2.0 casts them)
    (STATISTIK, [text(BRI, "6.94")], ["sch-stat-007"]),
    (STATISTIK, [text(BRI, "692.5")], []),  # (21500000 + 6200000) / 69250 = 400 exactly
    (STATISTIK, [text(BRI, "692.49")], ["sch-stat-007"]),  # 400.0057…
    (STATISTIK, [text(BRI, "1846.66")], []),  # 150.0005…
    (STATISTIK, [text(BRI, "1846.67")], ["sch-stat-007"]),  # 149.9997…
    (STATISTIK, [text(BRI, " 850.50\n")], []),
    (STATISTIK, [text(BRI, "850.")], []),
    (STATISTIK, [text(BRI, "0")], []),  # the if-condition BRI > 0 is false
    (STATISTIK, [text(BRI, "-850.5")], []),
    (STATISTIK, [drop(BRI)], []),
    (STATISTIK, [text(BRI, "8.505e2")], []),  # a double literal
    (STATISTIK, [text(BRI, "abc")], None),  # XPath 2.0: cannot convert to double
    (STATISTIK, [text(BRI, "")], None),
    (STATISTIK, [twice(BRI)], None),
    (STATISTIK, [drop(KG300)], ["sch-stat-007"]),  # () + x is (), and () >= 150 is false
    (STATISTIK, [drop(KG300), drop(KG400)], []),
    (STATISTIK, [text(KG300, "215000"), text(KG400, "62000")], ["sch-stat-007"]),
    (STATISTIK, [twice(KG300)], None),
    (STATISTIK, [text(KG400, "6.2e6")], []),
    # sch-stat-006: anzahlVollgeschosse <= 3 for one-dwelling houses; general comparisons with ('1','2')
    (STATISTIK, [text(VOLL, "4")], ["sch-stat-006"]),
    (STATISTIK, [text(VOLL, " 4\n")], ["sch-stat-006"]),
    (STATISTIK, [text(VOLL, "3.0")], []),
    (STATISTIK, [text(VOLL, "3.5")], ["sch-stat-006"]),
    (STATISTIK, [text(VOLL, "vier")], None),
    (STATISTIK, [text(VOLL, "4"), text(GESAMT, "2")], []),
    (STATISTIK, [text(VOLL, "4"), text(GESAMT, "1.0")], ["sch-stat-006"]),
    (STATISTIK, [text(VOLL, "4"), text(WOHNGEBAEUDE, "3")], []),
    (STATISTIK, [text(VOLL, "4"), twice(WOHNGEBAEUDE, "3")], ["sch-stat-006"]),
    (STATISTIK, [text(GESAMT, "x")], None),
    (STATISTIK, [twice(GESAMT, "2")], []),  # existential in XPath 2.0
    # sch-stat-008 to 015: if (artDerBautaetigkeit/code = '3') then not(exists(…)) else true()
    (STATISTIK, [text(BAUTAETIGKEIT, "3")], NEUBAU_ONLY),
    (STATISTIK, [twice(BAUTAETIGKEIT, "3")], NEUBAU_ONLY),
    (
        STATISTIK,
        [text(BAUTAETIGKEIT, "3"), drop(".//xbau:kuehlung"), drop(VOLL)],
        [r for r in NEUBAU_ONLY if r not in ("sch-stat-012", "sch-stat-014")],
    ),
    # sch-stat-004/005: kategorie 7 needs the number of rooms, which must be >= 7 * anzahlWohnungen
    (STATISTIK, [text(KATEGORIE, "5")], ["sch-stat-004"]),
    (STATISTIK, [drop(RAEUME)], ["sch-stat-004"]),
    (STATISTIK, [text(KATEGORIE, "5"), drop(RAEUME)], []),
    (STATISTIK, [text(RAEUME, "6")], ["sch-stat-005"]),
    (STATISTIK, [text(RAEUME, "7")], []),
    (STATISTIK, [text(RAEUME, "8"), text(WOHNUNGEN, "2")], ["sch-stat-005"]),
    (STATISTIK, [drop(WOHNUNGEN)], []),  # R < 7 * () is false
    (STATISTIK, [text(RAEUME, "")], None),
    (STATISTIK, [text(WOHNUNGEN, "1e0")], []),
    (STATISTIK, [twice(WOHNUNGEN)], None),
    # sch-stat-001/002/003
    (STATISTIK, [drop(BUNDESLAND)], ["sch-stat-001"]),
    (STATISTIK, [text(FAMILIENNAME, " ")], ["sch-stat-002", EMPTY]),  # file by file
    (STATISTIK, [twice(FAMILIENNAME)], None),  # normalize-space() of two names
    (STATISTIK, [add(".//xbau:bauherr/xbau:bauherr", "organisation")], []),
    (STATISTIK, [text(HEIZUNG, "001"), text(HEIZUNG2, "014")], ["sch-stat-003"]),
    # the other messages
    (ANTRAG, [text(f"{AUTOR}/kennung", "psw:1\n")], ["sch-xbau-002"]),
    (ANTRAG, [twice(f"{AUTOR}/verzeichnisdienst/code", "X")], []),
    (BETEILIGUNG, [text(f"{LESER}/kennung", "")], ["sch-xbau-001", EMPTY]),
    (BETEILIGUNG, [rename_root("anzeige.beseitigungAbsicht.0950")], ["sch-anz-001"]),
    (BETEILIGUNG, [rename_root("anzeige.beseitigungAbsicht.0950"), add(".", "anzeigender")], []),
    (BETEILIGUNG, [rename_root("statistik.baubeginn.0423"), text(f"{AUTOR}/kennung", "1")], ["sch-xbau-002"]),
]


@pytest.mark.parametrize(("document", "mutations", "expected"), CASES)
def test_variants(
    rules: SchematronRules,
    document: str,
    mutations: list[Mutation],
    expected: list[str] | None,
) -> None:
    root = _parse(document)
    for mutate in mutations:
        mutate(root)
    findings = _outcome(rules, root)
    assert (None if findings is None else [f.rule for f in findings]) == expected


def test_random_combinations(rules: SchematronRules) -> None:
    """Combinations of the mutations above, on the statistics message: findings or rule faults, never an
    engine failure, and the same answer twice (the compiled rules keep no state between documents)."""
    mutations = [m for document, ms, _ in CASES if document == STATISTIK for m in ms]
    pick = random.Random(20250601)
    for _ in range(60):
        root = _parse(STATISTIK)
        for mutate in pick.sample(mutations, pick.randint(2, 4)):
            try:
                mutate(root)
            except AssertionError:  # an earlier mutation removed what this one needs
                continue
        assert _outcome(rules, root) == _outcome(rules, root)
