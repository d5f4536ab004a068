"""Detection tables and header extraction work without any schema installed."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from hub.validation.detection import HEADER_PROFILES, detect_known, extract_header, split_tag


@pytest.mark.parametrize(
    ("namespace", "root", "standard", "version"),
    [
        (
            "http://www.xgewerbeanzeige.de/spezifikation/2.2",
            "abh.gewerbemeldung.0500",
            "XGewerbeanzeige",
            "2.2",
        ),
        (
            "http://www.xgewerbeanzeige.de/spezifikation/2.0",
            "alg.gewerbemeldung.0300",
            "XGewerbeanzeige",
            "2.0",
        ),
        ("http://www.destatis.de/schema/datml-raw/2.0/de", "DatML-RAW-D", "XGewerbeanzeige", "1.3"),
        ("http://www.xleitstelle.de/xbau/2/6", "baugenehmigung.antrag.0200", "XBau", "2.6"),
        ("http://www.xleitstelle.de/xbau/kernmodul/1/3/0", "x.1120", "XBau-Kernmodul", "1.3.0"),
        ("urn:xoev-de:xdomea:schema:3.0.0", "Aussonderung.Aussonderung.0503", "xdomea", "3.0.0"),
        (
            "urn:xoev-de:xunternehmen:standard:gewerbesteuer_1.4",
            "bescheide.zinsen.0002",
            "XGewerbesteuer",
            "1.4",
        ),
    ],
)
def test_known_standards(namespace: str, root: str, standard: str, version: str) -> None:
    detected = detect_known(namespace, root)
    assert detected is not None
    assert (detected.standard, detected.version) == (standard, version)


@pytest.mark.parametrize(
    ("namespace", "root"),
    [("", "xy"), ("urn:other", "a.0001"), ("http://www.destatis.de/schema/datml-raw/2.0/de", "Other")],
)
def test_unknown(namespace: str, root: str) -> None:
    assert detect_known(namespace, root) is None


def test_split_tag() -> None:
    assert split_tag("{urn:x}a.b") == ("urn:x", "a.b")
    assert split_tag("xy") == ("", "xy")


def test_xgewerbeanzeige_header(fixtures: Path) -> None:
    root = etree.parse(str(fixtures / "xgewerbeanzeige" / "xgwa2.2-valid.xml")).getroot()
    header = extract_header(root, HEADER_PROFILES["xgewerbeanzeige"])
    assert header == {
        "message_uuid": "00000000-0000-0000-0000-000000000001",
        "type_code": "0500",
        "created_at": "2019-10-24T00:00:00+02:00",
        "author_id": "12052000",
        "reader_id": "000100",
    }


def test_auto_profile_finds_g2g_header(fixtures: Path) -> None:
    path = fixtures / "xbau-2.6" / "constructed_prozessnachrichten.eingangsbestaetigung.1120.xml"
    header = extract_header(etree.parse(str(path)).getroot(), HEADER_PROFILES["auto"])
    assert header["message_uuid"] == "6f1c2a52-1b0e-4e8e-9a55-3c1d1e0b7a11"
    assert header["reader_id"] == "bab:01001000"


def test_several_readers_give_a_list_and_type_code_falls_back_to_root_name() -> None:
    root = etree.fromstring(
        b"<m:x.nachricht.0042 xmlns:m='urn:m'><nachrichtenkopf.g2g><leser><kennung>a:1</kennung></leser>"
        b"<leser><kennung>b:2</kennung></leser></nachrichtenkopf.g2g></m:x.nachricht.0042>"
    )
    header = extract_header(root, HEADER_PROFILES["xoev-g2g"])
    assert header["reader_id"] == ["a:1", "b:2"]
    assert header["type_code"] == "0042"
    assert header["message_uuid"] is None
