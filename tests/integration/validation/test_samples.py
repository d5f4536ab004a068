"""Every sample of the reference data gets the right verdict (the issue's acceptance list)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from lxml import etree

from hub.validation import ValidationEngine

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "xoev"
XBAU = "http://www.xleitstelle.de/xbau/2/6"


def _read(*parts: str) -> bytes:
    return FIX.joinpath(*parts).read_bytes()


def test_xbau_valid(engine: ValidationEngine) -> None:
    report = engine.validate(
        _read("xbau-2.6", "constructed_prozessnachrichten.eingangsbestaetigung.1120.xml")
    )
    assert report.verdict == "valid", report.findings
    assert (report.standard, report.version) == ("XBau", "2.6")
    assert report.message_type == "prozessnachrichten.eingangsbestaetigung.1120"
    assert report.header == {
        "message_uuid": "6f1c2a52-1b0e-4e8e-9a55-3c1d1e0b7a11",
        "type_code": "1120",
        "created_at": "2025-01-15T10:00:00+01:00",
        "author_id": "psw:00000001",
        "reader_id": "bab:01001000",
    }


@pytest.mark.parametrize(
    ("message_type", "author"),
    [
        ("baugenehmigung.antrag.0200", "psw:00000001"),
        ("beteiligung.aufforderung.0300", "bab:09161000"),
        ("statistik.baugenehmigung.0421", "bab:09161000"),
    ],
)
def test_xbau_portal_messages_valid(engine: ValidationEngine, message_type: str, author: str) -> None:
    # Constructed, schema-valid XBau 2.6 messages of portal size; they exercise the XBau Schematron.
    report = engine.validate(_read("xbau-2.6", f"constructed_{message_type}.xml"))
    assert report.verdict == "valid", report.findings
    assert report.message_type == message_type
    assert report.header["type_code"] == message_type[-4:]
    assert report.header["author_id"] == author


@pytest.mark.parametrize(
    ("message_type", "rule"),
    [
        ("baugenehmigung.antrag.0200", "sch-xbau-001"),
        ("beteiligung.aufforderung.0300", "sch-xbau-002"),
        ("statistik.baugenehmigung.0421", "sch-stat-007"),
    ],
)
def test_xbau_schematron_violations(engine: ValidationEngine, message_type: str, rule: str) -> None:
    report = engine.validate(_read("xbau-2.6", f"constructed_INVALID_schematron_{message_type}.xml"))
    assert report.verdict == "invalid"
    [error] = report.errors
    assert error.rule == rule
    assert error.line is not None and error.path is not None


def test_xbau_invalid_has_line_and_xpath(engine: ValidationEngine) -> None:
    report = engine.validate(_read("xbau-2.6", "constructed_INVALID_wrong_standard_attr.1120.xml"))
    assert report.verdict == "invalid"
    [error] = report.errors
    assert error.rule == "xsd"
    assert error.line == 7
    assert error.path == "/xbauk:prozessnachrichten.eingangsbestaetigung.1120"
    assert "fixed value constraint 'XBau-Kernmodul'" in error.message
    assert any(f.rule == "schematron" and f.severity == "info" for f in report.findings)


def test_xbau_schematron_finding_names_rule(engine: ValidationEngine) -> None:
    data = _read("xbau-2.6", "constructed_prozessnachrichten.eingangsbestaetigung.1120.xml")
    report = engine.validate(data.replace(b"<vorgang>AZ-2025-0001</vorgang>", b"<vorgang>  </vorgang>"))
    assert report.verdict == "invalid"
    [error] = report.errors
    assert (error.rule, error.line) == ("sch-xbau-gen-001", 32)
    assert error.path == "/xbauk:prozessnachrichten.eingangsbestaetigung.1120/bezug/vorgang"


@pytest.mark.parametrize("path", sorted((FIX / "xdomea-3.0.0").glob("*.xml")), ids=lambda p: p.name)
def test_xdomea_code_002_not_in_list_version_3(engine: ValidationEngine, path: Path) -> None:
    report = engine.validate(path.read_bytes())
    assert report.verdict == "invalid"
    assert (report.standard, report.version) == ("xdomea", "3.0.0")
    assert report.header["message_uuid"] == "242f44e8-bebf-4503-a086-db252c6a4277"
    errors = report.errors
    assert [(e.line, e.rule) for e in errors] == [
        (65, "urn:de:xoev:codeliste:erreichbarkeit_3"),
        (137, "urn:de:xoev:codeliste:erreichbarkeit_3"),
    ]
    assert errors[0].path is not None and errors[0].path.endswith(
        "/xdomea:Kopf/xdomea:Absender/xdomea:Kommunikation/xdomea:Kanal/code"
    )
    assert "'002'" in errors[0].message and "version 3" in errors[0].message


@pytest.mark.parametrize(
    "path", sorted((FIX / "xgewerbesteuer-1.4").glob("*.xml")), ids=lambda p: p.name[:10]
)
def test_xgewerbesteuer_valid(engine: ValidationEngine, path: Path) -> None:
    report = engine.validate(path.read_bytes())
    assert report.verdict == "valid", report.findings
    assert (report.standard, report.version) == ("XGewerbesteuer", "1.4")
    assert report.header["author_id"] == "12345678"
    assert report.header["type_code"] == path.name.split("-")[1]


@pytest.mark.parametrize(
    ("name", "version", "message_type", "author", "reader"),
    [
        ("xgwa1.3-valid.xml", "1.3", "DatML-RAW-D", "12052000", "99"),
        ("xgwa2.0-valid.xml", "2.0", "alg.gewerbemeldung.0300", "12052000", "000492949"),
        ("xgwa2.1-valid.xml", "2.1", "sta.gewerbemeldung.0100", "12052000", "491000000000"),
        ("xgwa2.2-valid.xml", "2.2", "abh.gewerbemeldung.0500", "12052000", "000100"),
        ("xgwa2.2-invalid.xml", "2.2", "abh.gewerbemeldung.0500", "12052000", "000100"),
    ],
)
def test_xgewerbeanzeige_detected_but_not_checked(
    engine: ValidationEngine, name: str, version: str, message_type: str, author: str, reader: str
) -> None:
    report = engine.validate(_read("xgewerbeanzeige", name))
    assert report.verdict == "not_checked"
    assert (report.standard, report.version, report.message_type) == (
        "XGewerbeanzeige",
        version,
        message_type,
    )
    assert report.reason is not None and report.reason.startswith("schema for namespace http://www.")
    assert report.reason.endswith("not installed")
    assert (report.header["author_id"], report.header["reader_id"]) == (author, reader)
    if version != "1.3":
        assert report.header["message_uuid"] == "00000000-0000-0000-0000-000000000001"
        assert (
            report.reason
            == f"schema for namespace http://www.xgewerbeanzeige.de/spezifikation/{version} not installed"
        )


def test_unknown_document(engine: ValidationEngine) -> None:
    report = engine.validate(_read("xgewerbeanzeige", "xy-unknown.xml"))
    assert report.verdict == "not_checked"
    assert report.standard is None
    assert (
        report.reason is not None and "unknown document: root element <xy> in no namespace" in report.reason
    )


def test_wrong_namespace_is_unknown(engine: ValidationEngine) -> None:
    data = _read("xbau-2.6", "constructed_prozessnachrichten.eingangsbestaetigung.1120.xml")
    report = engine.validate(
        data.replace(b"http://www.xleitstelle.de/xbau/kernmodul/1/3/0", b"urn:example:wrong")
    )
    assert report.verdict == "not_checked"
    assert report.reason is not None and "namespace urn:example:wrong" in report.reason


def test_unknown_root_in_installed_namespace_is_invalid(engine: ValidationEngine) -> None:
    report = engine.validate(
        b'<g:nachricht.unbekannt.9999 xmlns:g="urn:xoev-de:xunternehmen:standard:gewerbesteuer_1.4"/>'
    )
    assert report.verdict == "invalid"
    assert report.errors[0].rule == "xsd"
    assert "No matching global declaration" in report.errors[0].message


def test_shared_engine_is_cached_per_dirs(xsd_dir: Path, tmp_path: Path) -> None:
    ValidationEngine.reset_shared()
    first = ValidationEngine.shared([xsd_dir, tmp_path / "none"])
    assert ValidationEngine.shared([xsd_dir, tmp_path / "none"]) is first
    assert ValidationEngine.shared([xsd_dir]) is not first
    ValidationEngine.reset_shared()


def _two_builders(rooms: str | None = None) -> bytes:
    """The 0421 statistics message with a second Bauherr (a couple building a house): schema-valid."""
    root = etree.fromstring(_read("xbau-2.6", "constructed_statistik.baugenehmigung.0421.xml"))
    builder = root.find(f".//{{{XBAU}}}bauherr")
    assert builder is not None
    builder.addnext(copy.deepcopy(builder))
    if rooms is not None:
        [element] = root.iter(f"{{{XBAU}}}anzahlRaeumebeiWohnungenMitSiebenOderMehrRaeumen")
        element.text = rooms
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def test_xbau_rule_failing_on_a_valid_message_is_not_checked_with_the_rule_named(
    engine: ValidationEngine,
) -> None:
    # sch-stat-002 applies normalize-space() to every Bauherr's name at once: with two of them, XPath 2.0
    # raises XPTY0004. The other 153 rules still ran (nothing to report), so the verdict is "not checked"
    # (the route policy decides), naming the rule, instead of losing every other rule's result.
    report = engine.validate(_two_builders())
    assert report.verdict == "not_checked"
    assert report.reason is not None
    assert report.reason.startswith("Schematron rule sch-stat-002 could not be evaluated here: XPTY0004 ")
    [fault] = report.findings
    assert (fault.severity, fault.rule, fault.line) == ("warning", "sch-stat-002", 45)
    assert fault.path == "/xbau:statistik.baugenehmigung.0421/xbau:allgemeineAngaben"
    assert report.header["type_code"] == "0421"


def test_xbau_rule_failing_does_not_hide_other_violations(engine: ValidationEngine) -> None:
    # the same message claiming six rooms for "7 or more rooms": a real violation, so "invalid"
    report = engine.validate(_two_builders(rooms="6"))
    assert report.verdict == "invalid"
    assert [f.rule for f in report.errors] == ["sch-stat-005"]
    assert report.reason == report.errors[0].message
    assert {f.rule for f in report.findings if f.severity == "warning"} == {"sch-stat-002"}
