"""Conformance suite: every outbound adapter, against a stand-in over real loopback HTTP.

Each adapter gets a :class:`Harness` that knows how to build it against a running stand-in, what a
well-formed request looks like for it, and how to ask the stand-in what it saw. The checks are the
same for all: it delivers, it sends the idempotency key, a repeat is harmless, errors are mapped to
the hub's kinds (and nothing else escapes), timeouts are honoured.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from adapters.rest import RestAdapter, RestConfig
from adapters.soap import SoapAdapter, SoapConfig
from hub.errors import HubError, Permanent, Retriable
from hub.ports import DeliveryRequest, OutboundAdapter
from sandbox.recorder import create_recorder
from sandbox.vehicle_registry import create_vehicle_registry
from xhub.runtime import serve_in_thread


@dataclass
class Harness:
    name: str
    serve: Callable[[], AbstractContextManager[str]]  # starts the stand-in, yields its base URL
    build: Callable[[str, float], OutboundAdapter]  # (base URL, timeout seconds) -> adapter
    request: Callable[[str], DeliveryRequest]  # idempotency key -> a valid request
    seen_keys: Callable[[str], list[str]]  # base URL -> idempotency keys the stand-in received, in order
    behave: Callable[[str, dict[str, Any]], None]  # base URL, {"fail_status"/"fail_count"/"delay_seconds"}


def _rest_harness() -> Harness:
    def seen(url: str) -> list[str]:
        return [i["idempotency_key"] for i in httpx.get(f"{url}/_received").json()["items"]]

    return Harness(
        name="rest",
        serve=lambda: serve_in_thread(create_recorder()),
        build=lambda url, timeout: RestAdapter(RestConfig(url=f"{url}/inbox/cases", timeout_seconds=timeout)),
        request=lambda key: DeliveryRequest("m-1", "registry", key, b"<antrag/>", "application/xml"),
        seen_keys=seen,
        behave=lambda url, b: httpx.post(f"{url}/_behaviour", json=b).raise_for_status(),
    )


def _soap_harness() -> Harness:
    owner = {"FamilyName": "Mustermann", "GivenName": "Erika", "BirthDate": "1980-02-01",
             "Address": {"Street": "Marktplatz", "HouseNumber": "1", "PostalCode": "87700", "City": "Memmingen"}}
    body = json.dumps({"Owner": owner, "Vin": "WVWZZZ1JZXW000001", "RegistrationDistrict": "MM"}).encode()

    def seen(url: str) -> list[str]:
        return [i["idempotency_key"] for i in httpx.get(f"{url}/_received").json()["items"]]

    return Harness(
        name="soap",
        serve=lambda: serve_in_thread(create_vehicle_registry()),
        build=lambda url, timeout: SoapAdapter(SoapConfig(
            wsdl=f"{url}/VehicleRegistry?wsdl", operation="RegisterVehicle", reference_path="RegistrationNumber",
            timeout_seconds=timeout)),
        request=lambda key: DeliveryRequest("m-1", "kfz", key, body, "application/json"),
        seen_keys=seen,
        behave=lambda url, b: httpx.post(f"{url}/_behaviour", json=b).raise_for_status(),
    )


HARNESSES = [_rest_harness(), _soap_harness()]


@pytest.fixture(params=HARNESSES, ids=lambda h: h.name)
def harness(request: pytest.FixtureRequest) -> Harness:
    h: Harness = request.param
    return h


@pytest.fixture
def stand_in(harness: Harness) -> Iterator[str]:
    with harness.serve() as url:
        yield url


def _adapter(harness: Harness, url: str, timeout: float = 10.0) -> Iterator[OutboundAdapter]:
    adapter = harness.build(url, timeout)
    try:
        yield adapter
    finally:
        getattr(adapter, "close", lambda: None)()


def test_delivers_and_sends_the_idempotency_key(harness: Harness, stand_in: str) -> None:
    for adapter in _adapter(harness, stand_in):
        result = adapter.deliver(harness.request("key-1"))
        assert result.excerpt or result.reference
        adapter.deliver(harness.request("key-1"))  # a repeat is a success, not an error
    assert harness.seen_keys(stand_in) == ["key-1", "key-1"]


@pytest.mark.parametrize(("status", "kind"), [(503, Retriable), (500, Retriable), (429, Retriable),
                                              (400, Permanent), (422, Permanent)])
def test_maps_target_errors(harness: Harness, stand_in: str, status: int, kind: type[HubError]) -> None:
    harness.behave(stand_in, {"fail_status": status, "fail_count": 1})
    for adapter in _adapter(harness, stand_in):
        with pytest.raises(kind):
            adapter.deliver(harness.request("key-2"))
        adapter.deliver(harness.request("key-2"))  # the stand-in recovered; the same key goes through


def test_unreachable_target_is_transient(harness: Harness) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"  # bound, not listening: connection refused
        for adapter in _adapter(harness, closed):
            with pytest.raises(Retriable):
                adapter.deliver(harness.request("key-3"))


def test_honours_its_timeout(harness: Harness, stand_in: str) -> None:
    harness.behave(stand_in, {"delay_seconds": 5})
    for adapter in _adapter(harness, stand_in, timeout=0.3):
        with pytest.raises(Retriable, match="timed out"):
            adapter.deliver(harness.request("key-4"))
