"""The SOAP adapter against the vehicle registry stand-in, over real loopback HTTP, in SOAP 1.1 and 1.2."""

from __future__ import annotations

import json
import ssl
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Response

from adapters.soap import NOT_MAPPED, SoapAdapter
from hub.errors import Permanent, Retriable
from hub.ports import AdapterConfigError, DeliveryRequest
from sandbox.vehicle_registry import WSDL_DIR, create_vehicle_registry
from tests.support import running
from tests.tls import make_pki
from xhub import registry as outbound
from xhub.runtime import free_port, serve_in_thread

PORTS = {"1.1": "VehicleRegistrySoap11", "1.2": "VehicleRegistrySoap12"}
OWNER = {"FamilyName": "Musterfrau", "GivenName": "Erika", "BirthDate": "1964-08-12",
         "Address": {"Street": "Marktplatz", "HouseNumber": "1", "PostalCode": "87700", "City": "Memmingen"}}
PASSWORD = "correct horse battery staple"


@pytest.fixture
def registry() -> Iterator[str]:
    with running(create_vehicle_registry()) as url:
        yield url


@pytest.fixture
def secured_registry() -> Iterator[str]:
    with running(create_vehicle_registry(users={"hub": PASSWORD})) as url:
        yield url


@pytest.fixture(params=sorted(PORTS))
def version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextmanager
def soap_adapter(url: str, version: str = "1.1", **settings: Any) -> Iterator[SoapAdapter]:
    config = {"wsdl": f"{url}/VehicleRegistry?wsdl", "port": PORTS[version], "operation": "RegisterVehicle",
              "reference_path": "RegistrationNumber", "timeout_seconds": 5, **settings}
    adapter = outbound.build("kfz", "soap", config)
    assert isinstance(adapter, SoapAdapter)
    try:
        yield adapter
    finally:
        adapter.close()


def vin() -> str:
    return "WVWZZZ1JZ" + uuid.uuid4().hex[:8].upper()


def request(key: str | None = None, **fields: Any) -> DeliveryRequest:
    body = {"Owner": OWNER, "Vin": vin(), "RegistrationDistrict": "MM", **fields}
    return DeliveryRequest(message_id=str(uuid.uuid4()), target="kfz", idempotency_key=key or f"xhub-{uuid.uuid4()}",
                           body=json.dumps(body).encode(), content_type="application/json")


def received(url: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = httpx.get(f"{url}/_received").json()["items"]
    return items


def behave(url: str, **behaviour: Any) -> None:
    httpx.post(f"{url}/_behaviour", json=behaviour).raise_for_status()


def test_delivers_and_returns_the_registration_number(registry: str, version: str) -> None:
    with soap_adapter(registry, version) as adapter:
        sent = request()
        result = adapter.deliver(sent)
    assert result.status_code == 200
    assert result.reference is not None and result.reference.startswith("KFZ-MM-")
    assert "RegisterVehicleResponse" in result.excerpt
    (item,) = received(registry)
    assert item["soap_version"] == version
    assert item["idempotency_key"] == sent.idempotency_key
    assert item["message_id"] == sent.message_id
    assert item["soap_action"] == "urn:xoev-hub:sandbox:vehicle-registry:1#RegisterVehicle"
    assert (item["outcome"], item["registration_number"]) == ("registered", result.reference)


def test_a_repeat_is_recognised_by_its_idempotency_key(registry: str, version: str) -> None:
    sent = request()
    with soap_adapter(registry, version) as adapter:
        first = adapter.deliver(sent)
        again = adapter.deliver(sent)
    assert again.reference == first.reference
    assert [(i["idempotency_key"], i["duplicate"]) for i in received(registry)] == [
        (sent.idempotency_key, False), (sent.idempotency_key, True)]


def test_the_key_also_travels_as_http_header_alone(registry: str) -> None:
    sent = request()
    with soap_adapter(registry, idempotency_header=None) as adapter:
        first = adapter.deliver(sent)
        assert adapter.deliver(sent).reference == first.reference
    assert [i["duplicate"] for i in received(registry)] == [False, True]


def test_a_client_fault_is_permanent_with_code_string_and_detail(registry: str, version: str) -> None:
    with soap_adapter(registry, version) as adapter, pytest.raises(Permanent) as caught:
        adapter.deliver(request(Vin="WVWZZZ1JZOW000001"))  # an O is not allowed in a VIN
    detail = caught.value.detail
    assert detail["fault_code"] == {"1.1": "soap:Client", "1.2": "soap:Sender"}[version]
    assert "Vin" in detail["fault_string"]
    assert "InvalidVin" in detail["fault_detail"]
    assert detail["status_code"] == {"1.1": 500, "1.2": 400}[version]


def test_a_business_rejection_is_permanent(registry: str) -> None:
    with soap_adapter(registry) as adapter:
        adapter.deliver(request(DesiredPlate="MM-AB 123"))
        with pytest.raises(Permanent, match="already assigned"):
            adapter.deliver(request(DesiredPlate="MM-AB 123"))


def test_a_server_fault_is_retriable_and_the_retry_goes_through(registry: str, version: str) -> None:
    behave(registry, fault_count=1, fault="server")
    sent = request()
    with soap_adapter(registry, version) as adapter:
        with pytest.raises(Retriable) as caught:
            adapter.deliver(sent)
        assert caught.value.detail["fault_code"] == {"1.1": "soap:Server", "1.2": "soap:Receiver"}[version]
        assert adapter.deliver(sent).reference is not None


def test_retriable_fault_codes_are_configurable(registry: str) -> None:
    behave(registry, fault_count=2, fault="server")
    with soap_adapter(registry, retriable_fault_codes=[]) as adapter, pytest.raises(Permanent):
        adapter.deliver(request())
    with soap_adapter(registry, retriable_fault_codes=["Server.Busy"]) as adapter, pytest.raises(Permanent):
        adapter.deliver(request())  # soap:Server is not soap:Server.Busy
    behave(registry, fault_count=1, fault="client")
    with soap_adapter(registry, "1.2", retriable_fault_codes=["ToldToFail"]) as adapter, pytest.raises(Retriable):
        adapter.deliver(request())  # SOAP 1.2 subcode tns:ToldToFail


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retriable(registry: str, status: int) -> None:
    behave(registry, fail_status=status, fail_count=1)
    with soap_adapter(registry) as adapter:
        with pytest.raises(Retriable, match=f"answered {status}"):
            adapter.deliver(request())
        adapter.deliver(request())


def test_429_carries_retry_after(registry: str) -> None:
    behave(registry, fail_status=429, fail_count=1, retry_after_seconds=7)
    with soap_adapter(registry, "1.2") as adapter, pytest.raises(Retriable) as caught:
        adapter.deliver(request())
    assert caught.value.retry_after == 7


def test_an_outage_is_retriable_with_the_rest_of_the_window(registry: str) -> None:
    behave(registry, outage_seconds=60)
    with soap_adapter(registry) as adapter, pytest.raises(Retriable) as caught:
        adapter.deliver(request())
    assert caught.value.retry_after is not None and 55 <= caught.value.retry_after <= 60
    assert received(registry) == []


def test_a_plain_500_without_envelope_is_retriable(registry: str) -> None:
    behave(registry, error_rate=1.0, error_status=500)
    with soap_adapter(registry) as adapter, pytest.raises(Retriable, match="without a SOAP envelope"):
        adapter.deliver(request())


@pytest.mark.parametrize(("status", "kind"), [(500, Retriable), (404, Permanent), (200, Permanent)])
def test_an_error_page_instead_of_soap(registry: str, status: int, kind: type[Exception]) -> None:
    page = FastAPI()

    @page.post("/VehicleRegistry")
    async def error_page() -> Response:
        return Response("<html><body>Oops</body></html>", status_code=status, media_type="text/html")

    with running(page) as elsewhere, soap_adapter(registry, endpoint=f"{elsewhere}/VehicleRegistry") as adapter, \
            pytest.raises(kind):
        adapter.deliver(request())


def test_a_timeout_is_retriable_and_the_retry_is_a_duplicate(registry: str, version: str) -> None:
    """The registry registers the vehicle but the answer is lost: the retry must not register it twice."""
    behave(registry, timeout_count=1, timeout_seconds=30, timeout_phase="after")
    sent = request()
    with soap_adapter(registry, version, timeout_seconds=0.5) as adapter:
        with pytest.raises(Retriable, match="timed out"):
            adapter.deliver(sent)
        result = adapter.deliver(sent)
    first, second = received(registry)
    assert (first["duplicate"], second["duplicate"]) == (False, True)
    assert first["registration_number"] == second["registration_number"] == result.reference


def test_connection_refused_is_retriable(registry: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}/VehicleRegistry"
    with soap_adapter(registry, endpoint=dead) as adapter, pytest.raises(Retriable, match="ConnectError"):
        adapter.deliver(request())


@pytest.mark.parametrize(("fields", "message"), [
    ({"Vin": None}, "Missing element Vin"),
    ({"Colour": "red"}, "unexpected keyword argument 'Colour'"),
])
def test_a_request_that_violates_the_wsdl_is_permanent(registry: str, fields: dict[str, Any], message: str) -> None:
    with soap_adapter(registry) as adapter, pytest.raises(Permanent, match=message):
        adapter.deliver(request(**fields))
    assert received(registry) == []


@pytest.mark.parametrize(("body", "content_type"), [
    (b"<RegisterVehicle/>", "application/xml"),
    (b"[1, 2]", "application/json"),
    (b"{not json", "application/json"),
])
def test_an_unmapped_message_is_permanent(registry: str, body: bytes, content_type: str) -> None:
    with soap_adapter(registry) as adapter, pytest.raises(Permanent) as caught:
        adapter.deliver(DeliveryRequest("m", "kfz", "k", body, content_type))
    assert str(caught.value).startswith(NOT_MAPPED)


@pytest.mark.parametrize("digest", [False, True])
def test_ws_security_username_token(secured_registry: str, version: str, digest: bool) -> None:
    with soap_adapter(secured_registry, version, username="hub", password=PASSWORD,
                      password_digest=digest) as adapter:
        adapter.deliver(request())
    (item,) = received(secured_registry)
    assert item["username"] == "hub"
    assert PASSWORD not in json.dumps(item)


def test_a_wrong_password_is_permanent_and_not_repeated(secured_registry: str) -> None:
    wrong = "not-the-password-4711"
    with soap_adapter(secured_registry, username="hub", password=wrong) as adapter, pytest.raises(Permanent) as caught:
        adapter.deliver(request())
    assert caught.value.detail["fault_code"] == "wsse:FailedAuthentication"
    assert wrong not in str(caught.value) and wrong not in json.dumps(caught.value.detail)
    with soap_adapter(secured_registry) as adapter, pytest.raises(Permanent, match="UsernameToken is required"):
        adapter.deliver(request())


def test_wsdl_from_a_file_with_an_endpoint_override(registry: str) -> None:
    with soap_adapter(registry, "1.2", wsdl=str(WSDL_DIR / "vehicle-registry.wsdl"),
                      endpoint=f"{registry}/VehicleRegistry") as adapter:
        assert adapter.deliver(request()).reference is not None


def test_the_wsdl_is_loaded_once_per_adapter(registry: str) -> None:
    with soap_adapter(registry, wsdl_cache="none") as adapter:
        adapter.deliver(request())
        bound = adapter._bound
        adapter.deliver(request())
        assert adapter._bound is bound


@pytest.mark.parametrize(("settings", "kind", "message"), [
    ({"operation": "ScrapVehicle"}, Permanent, "ScrapVehicle"),
    ({"port": "VehicleRegistrySoap13"}, Permanent, "no port 'VehicleRegistrySoap13'"),
    ({"service": "Elsewhere"}, Permanent, "no service 'Elsewhere'"),
    ({"wsdl": "/nonexistent/registry.wsdl"}, Permanent, "cannot load the WSDL"),
])
def test_misconfiguration_is_permanent(registry: str, settings: dict[str, Any], kind: type[Exception],
                                       message: str) -> None:
    with soap_adapter(registry, **settings) as adapter, pytest.raises(kind, match=message):
        adapter.deliver(request())


def test_an_unreachable_wsdl_url_is_retriable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with soap_adapter(url, wsdl_cache="none") as adapter, pytest.raises(Retriable, match="cannot load the WSDL"):
        adapter.deliver(request())


def test_config_keeps_secrets_and_pairs() -> None:
    with pytest.raises(AdapterConfigError, match="username and password go together"):
        outbound.build("kfz", "soap", {"wsdl": "x.wsdl", "operation": "Op", "username": "hub"})
    config = SoapAdapter.Config.model_validate({"wsdl": "x.wsdl", "operation": "Op", "username": "hub",
                                                "password": PASSWORD})
    assert PASSWORD not in repr(config) and PASSWORD not in config.model_dump_json()


def test_mutual_tls_for_the_wsdl_and_the_call(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    tls = {"ssl_certfile": str(pki.server_cert), "ssl_keyfile": str(pki.server_key),
           "ssl_ca_certs": str(pki.ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    with serve_in_thread(create_vehicle_registry(users={}), **tls) as url:
        with soap_adapter(url, ca_bundle=str(pki.ca), client_cert=str(pki.client_cert),
                          client_key=str(pki.client_key)) as adapter:
            assert adapter.deliver(request()).reference
        with soap_adapter(url, ca_bundle=str(pki.ca)) as anonymous, pytest.raises(Retriable):
            anonymous.deliver(request())  # no client certificate: the handshake fails before the WSDL loads
