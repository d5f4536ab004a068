"""Outbound adapters in isolation: the file sink, and HTTP status classification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from adapters.file import FileAdapter, FileConfig
from adapters.rest import RestAdapter, RestConfig, classify, retry_after_seconds
from hub.errors import Permanent, Retriable
from hub.ports import AdapterConfigError, DeliveryRequest
from xhub import registry


def request(body: bytes = b"<a/>") -> DeliveryRequest:
    return DeliveryRequest("m1", "t", "xhub-m1-t", body, "application/xml")


def test_file_sink_is_idempotent_and_refuses_to_overwrite(tmp_path: Path) -> None:
    sink = FileAdapter(FileConfig(directory=tmp_path / "out"))
    first = sink.deliver(request())
    assert (tmp_path / "out" / "xhub-m1-t.xml").read_bytes() == b"<a/>" and first.reference == "xhub-m1-t.xml"
    assert sink.deliver(request()).excerpt == "already delivered"
    with pytest.raises(Permanent, match="different content"):
        sink.deliver(request(b"<b/>"))
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_file_sink_maps_os_errors(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(Permanent, match="cannot write") as info:
        FileAdapter(FileConfig(directory=not_a_dir)).deliver(request())
    assert info.value.detail["path"] == str(not_a_dir / "xhub-m1-t.xml")


def _response(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> httpx.Response:
    return httpx.Response(status, headers=headers, content=body, request=httpx.Request("POST", "http://t/x"))


@pytest.mark.parametrize("status", [200, 201, 202, 204, 409])
def test_delivered_statuses(status: int) -> None:
    assert classify(_response(status, {"X-Case-Id": "c1"})).reference == "c1"


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_transient_statuses(status: int) -> None:
    with pytest.raises(Retriable, match=str(status)):
        classify(_response(status))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 422, 501])
def test_permanent_statuses(status: int) -> None:
    with pytest.raises(Permanent) as info:
        classify(_response(status, body=b"why"))
    assert info.value.detail == {"status_code": status, "excerpt": "why"}


def test_retry_after_forms() -> None:
    assert retry_after_seconds("120") == 120
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 50 < (retry_after_seconds(soon) or 0) <= 60
    assert retry_after_seconds("soon-ish") is None and retry_after_seconds(None) is None
    with pytest.raises(Retriable) as info:
        classify(_response(429, {"Retry-After": "7"}))
    assert info.value.retry_after == 7


def test_rest_adapter_sends_key_and_maps_transport_errors() -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        if len(seen) == 2:
            raise httpx.ConnectError("refused", request=req)
        if len(seen) == 3:
            raise httpx.ReadTimeout("slow", request=req)
        return httpx.Response(201, headers={"Location": "/cases/9"})

    adapter = RestAdapter(RestConfig(url="http://target/cases", bearer_token="s3cret"))  # type: ignore[arg-type]
    adapter._client = httpx.Client(transport=httpx.MockTransport(handler))
    assert adapter.deliver(request()).reference == "/cases/9"
    assert seen[0].headers["idempotency-key"] == "xhub-m1-t" and seen[0].headers["authorization"] == "Bearer s3cret"
    with pytest.raises(Retriable, match="ConnectError"):
        adapter.deliver(request())
    with pytest.raises(Retriable, match="timed out"):
        adapter.deliver(request())
    adapter.close()


def test_registry_validates_settings() -> None:
    with pytest.raises(AdapterConfigError, match="unknown adapter 'smtp'"):
        registry.build("mail", "smtp", {})
    with pytest.raises(AdapterConfigError, match=r"targets\.dms \(file\): directory: Field required"):
        registry.build("dms", "file", {})
    assert "s3cret" not in repr(RestConfig(url="http://x", bearer_token="s3cret"))  # type: ignore[arg-type]


def _rest(handler: object, **config: object) -> RestAdapter:
    adapter = RestAdapter(RestConfig.model_validate({"url": "http://target/cases", **config}))
    adapter._client.close()
    adapter._client = httpx.Client(transport=httpx.MockTransport(handler))  # type: ignore[arg-type]
    if adapter._tokens is not None:
        adapter._tokens.client = adapter._client
    return adapter


def test_oauth2_token_is_cached_and_renewed_once_on_401() -> None:
    calls: list[str] = []
    tokens = iter(["t1", "t2"])

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(f"{req.method} {req.url.path} {req.headers.get('authorization', '')}")
        if req.url.path == "/token":
            assert b"grant_type=client_credentials" in req.content and b"client_secret=sh" in req.content
            return httpx.Response(200, json={"access_token": next(tokens), "expires_in": 3600})
        if req.headers["authorization"] == "Bearer t1" and len(calls) > 3:
            return httpx.Response(401)  # t1 was revoked meanwhile
        return httpx.Response(201)

    adapter = _rest(handler, oauth2={"token_url": "http://idp/token", "client_id": "hub", "client_secret": "sh"})
    adapter.deliver(request())
    adapter.deliver(request())
    assert calls == ["POST /token ", "POST /cases Bearer t1", "POST /cases Bearer t1"]
    adapter.deliver(request())
    assert calls[3:] == ["POST /cases Bearer t1", "POST /token ", "POST /cases Bearer t2"]
    adapter.close()


@pytest.mark.parametrize(("status", "kind"), [(401, Permanent), (400, Permanent), (503, Retriable)])
def test_oauth2_token_endpoint_failures_are_mapped_without_the_secret(status: int, kind: type[Exception]) -> None:
    adapter = _rest(lambda req: httpx.Response(status, json={"error": "invalid_client"}),
                    oauth2={"token_url": "http://idp/token", "client_id": "hub", "client_secret": "sh-secret"})
    with pytest.raises(kind) as info:
        adapter.deliver(request())
    assert "sh-secret" not in str(info.value) and "token endpoint" in str(info.value)
    adapter.close()


def test_basic_auth_url_template_and_headers() -> None:
    seen: list[httpx.Request] = []
    adapter = _rest(lambda req: seen.append(req) or httpx.Response(200, headers={"X-Case-Id": "c7"}),
                    url="http://target/{tenant}/cases/{message_id}", method="PUT", basic={"username": "u",
                                                                                        "password": "p"},
                    idempotency_header="X-Request-Id", headers={"X-Client": "xoev-hub"})
    req = DeliveryRequest("m/1", "t", "k1", b"<a/>", "application/xml", {"tenant": "memmingen"})
    assert adapter.deliver(req).reference == "c7"
    (sent,) = seen
    assert sent.method == "PUT" and sent.url.raw_path == b"/memmingen/cases/m%2F1"
    assert sent.headers["x-request-id"] == "k1" and sent.headers["x-client"] == "xoev-hub"
    assert sent.headers["authorization"] == "Basic dTpw"
    adapter.close()


@pytest.mark.parametrize(("config", "message"), [
    ({"url": "http://t/{nope}"}, "unknown placeholder"),
    ({"url": "http://t/", "bearer_token": "x", "basic": {"username": "u", "password": "p"}}, "choose one way"),
    ({"url": "http://t/", "client_cert": "/c.pem"}, "both client_cert and client_key"),
    ({"url": "ftp://t/"}, "String should match pattern"),
])
def test_rest_config_is_checked_when_loaded(config: dict[str, object], message: str) -> None:
    with pytest.raises(AdapterConfigError, match=message):
        registry.build("t", "rest", config)
