"""The shipped mappings produce what the targets accept: the stand-ins and the xdomea 3.0.0 schema.

Each expected golden output is sent to (or checked against) its real target, so a golden file cannot
drift away from the target's contract unnoticed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import zeep
from lxml import etree
from pydantic import TypeAdapter

from hub.mapping import Mapping, MappingFailed, load_mappings
from hub.mapping.golden import golden_context
from hub.validation import ValidationEngine
from sandbox.trade_register import Gewerbemeldung, create_trade_register
from sandbox.vehicle_registry import NS, SOAP11, WSDL_DIR, create_vehicle_registry
from tests.support import running

REPO = Path(__file__).resolve().parents[3]
MAPPINGS = load_mappings(REPO / "mappings")
GEWERBE = MAPPINGS["gewerbeanzeige-to-gewerberegister"]
GEWERBE13 = MAPPINGS["gewerbeanzeige13-to-gewerberegister"]
GEWERBE_GOLDENS = [
    pytest.param(mapping, inp, expected, id=f"{mapping.name}/{inp.name}")
    for mapping in (GEWERBE, GEWERBE13)
    for inp, expected in mapping.goldens
]
VEHICLE = MAPPINGS["vehicle-registration-to-registry"]
XDOMEA = MAPPINGS["xbau-to-xdomea-abgabe"]
FIXTURES = REPO / "tests" / "fixtures" / "xoev"
XGWA = FIXTURES / "xgewerbeanzeige"


def expected_json(path: Path) -> dict[str, object]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def trade_register() -> Iterator[httpx.Client]:
    with running(create_trade_register()) as url, httpx.Client(base_url=url) as client:
        yield client


@pytest.mark.parametrize(("mapping", "inp", "expected"), GEWERBE_GOLDENS)
def test_trade_register_accepts_the_gewerbe_goldens(
    mapping: Mapping, inp: Path, expected: Path, trade_register: httpx.Client
) -> None:
    body = expected_json(expected)
    TypeAdapter(Gewerbemeldung).validate_python(body)
    rendered = mapping.render(inp.read_bytes(), context=golden_context(inp))
    answer = trade_register.post("/api/v1/gewerbemeldungen", content=rendered.body,
                                 headers={"Content-Type": rendered.content_type, "Idempotency-Key": inp.name})
    assert answer.status_code == 201, answer.text
    assert answer.json()["meldungsart"] == body["meldungsart"]


def test_each_meldungsart_is_covered() -> None:
    kinds = {expected_json(expected)["meldungsart"] for _, expected in GEWERBE.goldens}
    assert kinds == {"anmeldung", "ummeldung", "abmeldung"}


def test_the_goldens_cover_every_kosit_sample_version() -> None:
    versions = {etree.parse(str(inp)).getroot().get("version") for inp, _ in GEWERBE.goldens}
    assert {"2.0", "2.1", "2.2"} <= versions
    assert [inp.read_bytes() for inp, _ in GEWERBE13.goldens] == [(XGWA / "xgwa1.3-valid.xml").read_bytes()]


def test_a_kosit_abmeldung_without_birth_date_fails_in_the_hub_not_at_the_register() -> None:
    # The KoSIT 2.1 Abmeldung, unchanged: its person has no birth date, which the register requires; the
    # mapping says so by field instead of sending a request that comes back 422.
    with pytest.raises(MappingFailed) as caught:
        GEWERBE.render((XGWA / "xgwa2.1-valid.xml").read_bytes(), context={})
    assert caught.value.field == "personen[0].geburtsdatum"


@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_the_2_2_sample_in_an_older_namespace_maps_alike(version: str) -> None:
    sample = (XGWA / "xgwa2.2-valid.xml").read_bytes()
    older = sample.replace(b"spezifikation/2.2", f"spezifikation/{version}".encode())
    assert GEWERBE.render(older, context={}).data == GEWERBE.render(sample, context={}).data


def test_a_version_the_mapping_does_not_list_is_not_mapped() -> None:
    sample = (XGWA / "xgwa2.2-valid.xml").read_bytes().replace(b"spezifikation/2.2", b"spezifikation/2.3")
    with pytest.raises(MappingFailed, match=r"found 0 elements \(the document's root element is "
                       r"\{http://www\.xgewerbeanzeige\.de/spezifikation/2\.3\}abh\.gewerbemeldung\.0500\)"):
        GEWERBE.render(sample, context={})
    with pytest.raises(MappingFailed, match="must select one element, found 0 elements"):
        GEWERBE.render((XGWA / "xgwa1.3-valid.xml").read_bytes(), context={})


def test_a_1_3_notification_other_than_an_anmeldung_is_refused_by_name() -> None:
    sample = (XGWA / "xgwa1.3-valid.xml").read_bytes()
    marker = b'<mm name="MeldungArt">\n               <wert>1</wert>'
    assert marker in sample
    with pytest.raises(MappingFailed, match=r"meldungsart: code '3' is not in table 'meldungart'"):
        GEWERBE13.render(sample.replace(marker, marker.replace(b">1<", b">3<")), context={})


@pytest.fixture(scope="module")
def vehicle_registry() -> Iterator[str]:
    with running(create_vehicle_registry(users={})) as url:
        yield url


@pytest.mark.parametrize("pair", VEHICLE.goldens, ids=lambda p: p[0].name)
def test_vehicle_registry_accepts_the_operation_input(pair: tuple[Path, Path], vehicle_registry: str) -> None:
    """zeep builds RegisterVehicle from the expected dict (as the SOAP adapter does); the stand-in registers it."""
    inp, expected = pair
    arguments = expected_json(expected)
    assert VEHICLE.render(inp.read_bytes(), context=golden_context(inp)).data == arguments
    client = zeep.Client(str(WSDL_DIR / "vehicle-registry.wsdl"))
    envelope = client.create_message(client.service, "RegisterVehicle", **arguments)
    answer = httpx.post(f"{vehicle_registry}/VehicleRegistry", content=etree.tostring(envelope),
                        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{NS}#RegisterVehicle"'})
    assert answer.status_code == 200, answer.text
    result = etree.fromstring(answer.content).find(f"{{{SOAP11}}}Body/{{{NS}}}RegisterVehicleResponse")
    assert result is not None
    plate = result.findtext(f"{{{NS}}}Plate") or ""
    assert plate.startswith(f"{arguments['RegistrationDistrict']}-")
    if "DesiredPlate" in arguments:
        assert plate == arguments["DesiredPlate"]


def test_an_unknown_registration_district_is_refused_by_name() -> None:
    inp = next(i for i, _ in VEHICLE.goldens if b'"09764000"' in i.read_bytes())
    payload = inp.read_bytes().replace(b'"09764000"', b'"05315000"')
    with pytest.raises(MappingFailed, match=r"RegistrationDistrict: code '05315000' is not in table"):
        VEHICLE.render(payload, context={})


@pytest.mark.parametrize("pair", XDOMEA.goldens, ids=lambda p: p[0].name)
def test_xdomea_goldens_validate_against_the_xdomea_schema(pair: tuple[Path, Path]) -> None:
    _, expected = pair
    report = ValidationEngine.from_dirs([REPO / "xsd"]).validate(expected.read_bytes())
    assert (report.standard, report.version, report.message_type) == ("xdomea", "3.0.0", "Abgabe.Abgabe.0401")
    assert report.verdict == "valid", report.summary()
    assert not report.findings, [f.message for f in report.findings]


def test_xdomea_stylesheet_refuses_a_non_xbau_message() -> None:
    sample = (XGWA / "xgwa2.2-valid.xml").read_bytes()
    with pytest.raises(MappingFailed, match=r"not an XBau message: no nachrichtenkopf\.g2g"):
        XDOMEA.render(sample, context={})
