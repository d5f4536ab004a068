"""The vehicle registry stand-in spoken to in raw SOAP 1.1 and 1.2, as any client would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from lxml import etree

from sandbox.vehicle_registry import NS, SOAP11, SOAP12, create_vehicle_registry
from tests.support import running

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
ACTION = f"{NS}#RegisterVehicle"
OWNER = ("<v:Owner><v:FamilyName>Musterfrau</v:FamilyName><v:GivenName>Erika</v:GivenName>"
         "<v:BirthDate>1964-08-12</v:BirthDate><v:Address><v:Street>Marktplatz</v:Street>"
         "<v:HouseNumber>1</v:HouseNumber><v:PostalCode>87700</v:PostalCode><v:City>Memmingen</v:City>"
         "</v:Address></v:Owner>")


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with running(create_vehicle_registry(users={})) as url, httpx.Client(base_url=url) as http:
        yield http


def envelope(soap: str = SOAP11, *, vin: str = "WVWZZZ1JZXW000001", plate: str | None = None,
             key: str | None = None, header: str = "", district: str = "MM") -> bytes:
    headers = (f"<v:IdempotencyKey>{key}</v:IdempotencyKey>" if key else "") + header
    wish = f"<v:DesiredPlate>{plate}</v:DesiredPlate>" if plate else ""
    return (f'<s:Envelope xmlns:s="{soap}" xmlns:v="{NS}"><s:Header>{headers}</s:Header><s:Body>'
            f"<v:RegisterVehicle>{OWNER}<v:Vin>{vin}</v:Vin><v:RegistrationDistrict>{district}"
            f"</v:RegistrationDistrict>{wish}</v:RegisterVehicle></s:Body></s:Envelope>").encode()


def call(client: httpx.Client, body: bytes, soap: str = SOAP11, **headers: str) -> httpx.Response:
    content_type = "text/xml; charset=utf-8" if soap == SOAP11 else f'application/soap+xml; action="{ACTION}"'
    extra = {"SOAPAction": f'"{ACTION}"'} if soap == SOAP11 else {}
    return client.post("/VehicleRegistry", content=body, headers={"Content-Type": content_type, **extra, **headers})


def fault(response: httpx.Response) -> dict[str, Any]:
    doc = etree.fromstring(response.content)
    return {
        "faultcode": doc.findtext(".//faultcode"),
        "value": doc.findtext(f".//{{{SOAP12}}}Code/{{{SOAP12}}}Value"),
        "subcode": doc.findtext(f".//{{{SOAP12}}}Subcode/{{{SOAP12}}}Value"),
        "code": doc.findtext(f".//{{{NS}}}RegistrationFault/{{{NS}}}Code"),
    }


def test_the_wsdl_is_served_with_the_servers_own_address(client: httpx.Client) -> None:
    wsdl = client.get("/VehicleRegistry?wsdl")
    assert wsdl.status_code == 200 and wsdl.headers["content-type"].startswith("text/xml")
    doc = etree.fromstring(wsdl.content)
    locations = {a.get("location") for a in doc.iter("{*}address")}
    assert locations == {str(client.base_url).rstrip("/") + "/VehicleRegistry"}
    assert client.get("/vehicle-registry.xsd").content.startswith(b"<?xml")


@pytest.mark.parametrize(("soap", "media_type"), [(SOAP11, "text/xml"), (SOAP12, "application/soap+xml")])
def test_registers_in_the_callers_soap_version(client: httpx.Client, soap: str, media_type: str) -> None:
    response = call(client, envelope(soap, key="k1"), soap)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    doc = etree.fromstring(response.content)
    assert etree.QName(doc).namespace == soap
    assert doc.findtext(f".//{{{NS}}}RegistrationNumber", "").startswith("KFZ-MM-")
    assert doc.findtext(f".//{{{NS}}}Plate") == "MM-XH 1"


def test_a_desired_plate_is_assigned_once(client: httpx.Client) -> None:
    first = call(client, envelope(plate="MM-EK 64"))
    assert etree.fromstring(first.content).findtext(f".//{{{NS}}}Plate") == "MM-EK 64"
    taken = call(client, envelope(vin="WVWZZZ1JZXW000002", plate="MM-EK 64"))
    assert (taken.status_code, fault(taken)["faultcode"], fault(taken)["code"]) == (
        500, "soap:Client", "PlateNotAvailable")
    elsewhere = call(client, envelope(vin="WVWZZZ1JZXW000003", plate="M-EK 64"))
    assert fault(elsewhere)["code"] == "InvalidPlate"


def test_idempotency_key_in_soap_header_or_http_header(client: httpx.Client) -> None:
    first = call(client, envelope(key="same"))
    again = call(client, envelope(key="same"))
    assert first.content == again.content
    by_http = call(client, envelope(vin="WVWZZZ1JZXW000009"), **{"Idempotency-Key": "http-key"})
    assert call(client, envelope(vin="WVWZZZ1JZXW000009"), **{"Idempotency-Key": "http-key"}).content == by_http.content
    items = client.get("/_received").json()["items"]
    assert [(i["idempotency_key"], i["duplicate"], i["outcome"]) for i in items] == [
        ("same", False, "registered"), ("same", True, "duplicate"),
        ("http-key", False, "registered"), ("http-key", True, "duplicate")]


def test_without_a_key_a_second_registration_of_the_vehicle_is_refused(client: httpx.Client) -> None:
    call(client, envelope())
    again = call(client, envelope())
    assert fault(again)["code"] == "VehicleAlreadyRegistered"


def test_a_reused_key_with_another_request_is_a_client_fault(client: httpx.Client) -> None:
    call(client, envelope(key="k"))
    other = call(client, envelope(vin="WVWZZZ1JZXW000005", key="k"), SOAP11)
    assert fault(other)["code"] == "IdempotencyKeyReused"


@pytest.mark.parametrize(("soap", "status", "faultcode", "value"), [
    (SOAP11, 500, "soap:Client", None), (SOAP12, 400, None, "soap:Sender")])
def test_an_invalid_vin_is_a_client_fault(client: httpx.Client, soap: str, status: int, faultcode: str | None,
                                          value: str | None) -> None:
    response = call(client, envelope(soap, vin="WVWZZZ1JZXW00000Q"), soap)
    got = fault(response)
    assert (response.status_code, got["faultcode"], got["value"], got["code"]) == (
        status, faultcode, value, "InvalidVin")
    if soap == SOAP12:
        assert got["subcode"] == "tns:InvalidVin"


def test_schema_violations_and_malformed_requests_are_client_faults(client: httpx.Client) -> None:
    assert fault(call(client, envelope(district="mm")))["code"] == "SchemaViolation"
    assert fault(call(client, b"<not-closed"))["code"] == "MalformedRequest"
    assert fault(call(client, b"<Envelope/>"))["code"] == "MalformedRequest"
    unknown = envelope().replace(b"RegisterVehicle>", b"ScrapVehicle>")
    assert fault(call(client, unknown))["code"] == "UnknownOperation"


def test_version_mismatch_and_must_understand(client: httpx.Client) -> None:
    mismatch = call(client, envelope(SOAP12), SOAP11)
    assert fault(mismatch)["faultcode"] == "soap:VersionMismatch"
    header = '<x:Trace xmlns:x="urn:other" s:mustUnderstand="1">on</x:Trace>'
    assert fault(call(client, envelope(header=header)))["faultcode"] == "soap:MustUnderstand"
    optional = '<x:Trace xmlns:x="urn:other">on</x:Trace>'
    assert call(client, envelope(header=optional)).status_code == 200


def test_other_content_types_are_refused(client: httpx.Client) -> None:
    response = client.post("/VehicleRegistry", content=envelope(), headers={"Content-Type": "application/json"})
    assert response.status_code == 415


def test_ws_security_is_checked_when_users_are_configured() -> None:
    token = (f'<wsse:Security xmlns:wsse="{WSSE}" s:mustUnderstand="1"><wsse:UsernameToken>'
             "<wsse:Username>hub</wsse:Username><wsse:Password>{pw}</wsse:Password>"
             "</wsse:UsernameToken></wsse:Security>")
    with running(create_vehicle_registry(users={"hub": "geheim"})) as url, httpx.Client(base_url=url) as client:
        assert fault(call(client, envelope()))["faultcode"] == "wsse:FailedAuthentication"
        wrong = call(client, envelope(SOAP12, header=token.format(pw="falsch")), SOAP12)
        assert (wrong.status_code, fault(wrong)["subcode"]) == (400, "wsse:FailedAuthentication")
        assert call(client, envelope(header=token.format(pw="geheim"))).status_code == 200
        items = client.get("/_received").json()["items"]
    assert [i["username"] for i in items] == [None, "hub", "hub"]
    assert "geheim" not in str(items) and "falsch" not in str(items)


def test_told_to_fault_answers_a_proper_fault(client: httpx.Client) -> None:
    client.post("/_behaviour", json={"fault_count": 2, "fault": "server"}).raise_for_status()
    assert fault(call(client, envelope()))["faultcode"] == "soap:Server"
    response = call(client, envelope(SOAP12), SOAP12)
    assert (response.status_code, fault(response)["value"]) == (500, "soap:Receiver")
    assert client.get("/_received").json()["count"] == 0
