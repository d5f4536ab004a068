"""The REST intake and message API: happy paths and every kind of bad input, as problem+json."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from httpx import Client
from sqlalchemy import Engine

from hub import store
from hub.db import make_engine
from tests.support import OPERATOR_TOKEN, OTHER_SENDER_TOKEN, SENDER_TOKEN, XBAU_VALID, hub_config, running
from xhub.api.app import create_app

XML = {"Content-Type": "application/xml"}


def auth(token: str = SENDER_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client(engine: Engine, db_url: str, tmp_path: Path) -> Iterator[Client]:
    config = hub_config(db_url, tmp_path, api={"max_body_bytes": 4096})
    with running(create_app(config, engine)) as url, Client(base_url=url) as c:
        yield c


def assert_problem(response: object, status: int, slug: str, detail_part: str = "") -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert body["type"] == f"urn:xoev-hub:problem:{slug}" and body["status"] == status
    assert body["title"] and detail_part in str(body["detail"])
    return body


def test_submit_is_committed_before_202(client: Client, engine: Engine) -> None:
    r = client.post("/api/v1/messages", content=XBAU_VALID.read_bytes(), headers={**auth(), **XML,
                                                                                   "X-Sender-Reference": "antrag-42"})
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "received" and body["links"]["self"].endswith(f"/api/v1/messages/{body['id']}")
    assert r.headers["location"] == body["links"]["self"]
    import uuid

    stored = store.get(engine, uuid.UUID(body["id"]))
    assert stored is not None and stored.sender_reference == "antrag-42" and stored.tenant == "memmingen"
    detail = client.get(f"/api/v1/messages/{body['id']}", headers=auth()).json()
    assert detail["events"][0]["to"] == "received" and detail["events"][0]["actor"] == "sender:portal"
    assert detail["payload_size"] == len(XBAU_VALID.read_bytes())


def test_idempotency_key_replays_and_refuses_other_payload(client: Client) -> None:
    headers = {**auth(), **XML, "Idempotency-Key": "antrag-42"}
    first = client.post("/api/v1/messages", content=b"<a/>", headers=headers)
    again = client.post("/api/v1/messages", content=b"<a/>", headers=headers)
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
    other = client.post("/api/v1/messages", content=b"<b/>", headers=headers)
    body = assert_problem(other, 422, "idempotency-key-reused", first.json()["id"])
    assert body["existing_message"] == first.json()["id"]


@pytest.mark.parametrize(
    ("headers", "body", "status", "slug", "detail"),
    [
        ({}, b"<a/>", 401, "unauthorized", "Authorization: Bearer"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, b"<a/>", 401, "unauthorized", "Bearer scheme"),
        ({"Authorization": "Bearer wrong"}, b"<a/>", 401, "invalid-token", "not known"),
        ({**auth(OPERATOR_TOKEN)}, b"<a/>", 403, "not-a-sender", "only sender tokens"),
        ({**auth(), "Content-Type": "text/plain"}, b"<a/>", 415, "unsupported-media-type", "text/plain"),
        ({**auth(), "Content-Type": "application/json"}, b"[1, 2]", 400, "malformed-json", "JSON object"),
        ({**auth(), "Content-Type": "application/json"}, b'{"a": 1,\n "b"}', 400, "malformed-json", "line 2"),
        ({**auth(), "Content-Type": "application/json"}, b"\xff\xfe{}", 400, "malformed-json", "UTF-8"),
        ({**auth(), **XML, "X-Service-Identifier": "99036"}, b"<a/>", 400, "invalid-request", "x-service-identifier"),
        ({**auth(), **XML, "X-Region-Key": "Memmingen"}, b"<a/>", 400, "invalid-request", "x-region-key"),
        ({**auth()}, b"<a/>", 415, "unsupported-media-type", "no Content-Type"),
        ({**auth(), **XML}, b"", 400, "empty-body", "empty"),
        ({**auth(), **XML}, b"   \n", 400, "empty-body", "empty"),
        ({**auth(), **XML}, b"not xml at all", 400, "malformed-xml", "line 1"),
        ({**auth(), **XML}, b"<a><b></a>", 400, "malformed-xml", "mismatch"),
        ({**auth(), **XML}, b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>', 400,
         "malformed-xml", "DOCTYPE"),
        ({**auth(), **XML}, b"<a>" + b"x" * 5000 + b"</a>", 413, "payload-too-large", "4096 bytes"),
        ({**auth(), **XML, "Idempotency-Key": "has space"}, b"<a/>", 400, "invalid-idempotency-key", "printable"),
        ({**auth(), **XML, "Idempotency-Key": "k" * 256}, b"<a/>", 400, "invalid-idempotency-key", "255"),
    ],
)
def test_bad_input_gets_a_precise_problem(client: Client, headers: dict[str, str], body: bytes, status: int,
                                          slug: str, detail: str, engine: Engine) -> None:
    r = client.post("/api/v1/messages", content=body, headers=headers)
    assert_problem(r, status, slug, detail)
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert store.list_messages(engine) == []  # nothing half-accepted


def test_json_submissions_carry_routing_facts(client: Client, engine: Engine) -> None:
    import uuid

    body = b'{"halter": {"name": "Erika Mustermann"}, "fin": "WVWZZZ1JZXW000001"}'
    r = client.post("/api/v1/messages", content=body,
                    headers={**auth(), "Content-Type": "application/json",
                             "X-Service-Identifier": "urn:de:fim:leika:leistung:99036012104000",
                             "X-Region-Key": "09764000"})
    assert r.status_code == 202, r.text
    stored = store.get(engine, uuid.UUID(r.json()["id"]))
    assert stored is not None and stored.content_type == "application/json"
    assert stored.attributes == {"service": "urn:de:fim:leika:leistung:99036012104000", "region": "09764000"}


def test_oversized_body_without_content_length_is_refused(client: Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"<a>" + b"x" * 1000

    r = client.post("/api/v1/messages", content=chunks(), headers={**auth(), **XML})
    assert_problem(r, 413, "payload-too-large")


def test_senders_see_only_their_own_messages(client: Client) -> None:
    mine = client.post("/api/v1/messages", content=b"<a/>", headers={**auth(), **XML}).json()["id"]
    assert client.get(f"/api/v1/messages/{mine}", headers=auth()).status_code == 200
    assert_problem(client.get(f"/api/v1/messages/{mine}", headers=auth(OTHER_SENDER_TOKEN)), 404,
                   "message-not-found", mine)
    assert client.get(f"/api/v1/messages/{mine}", headers=auth(OPERATOR_TOKEN)).status_code == 200
    assert client.get("/api/v1/messages", headers=auth(OTHER_SENDER_TOKEN)).json()["items"] == []
    assert [m["id"] for m in client.get("/api/v1/messages", headers=auth(OPERATOR_TOKEN)).json()["items"]] == [mine]


def test_bad_paths_and_ids(client: Client) -> None:
    assert_problem(client.get("/api/v1/messages/not-a-uuid", headers=auth()), 400, "invalid-request", "UUID")
    assert_problem(client.get("/nothing-here"), 404, "not-found", "/nothing-here")
    assert_problem(client.request("DELETE", "/api/v1/messages", headers=auth()), 405, "method-not-allowed", "DELETE")
    assert_problem(client.get("/api/v1/messages?limit=100000", headers=auth()), 400, "invalid-request", "limit")
    assert_problem(client.get("/api/v1/messages?status=lost", headers=auth()), 400, "invalid-request", "status")


def test_requeue_is_for_operators_and_dead_messages(client: Client) -> None:
    mid = client.post("/api/v1/messages", content=b"<a/>", headers={**auth(), **XML}).json()["id"]
    assert_problem(client.post(f"/api/v1/messages/{mid}/requeue", headers=auth()), 403, "not-an-operator")
    assert_problem(client.post(f"/api/v1/messages/{mid}/requeue", headers=auth(OPERATOR_TOKEN)), 409,
                   "not-requeueable", "not dead")


def test_health(client: Client) -> None:
    assert client.get("/health").json() == {"status": "ok", "live": True, "database": "ok"}
    assert client.get("/health/live").status_code == 200


def test_health_reports_an_unreachable_database(tmp_path: Path) -> None:
    url = "postgresql://nobody@127.0.0.1:1/none"
    engine = make_engine(url)
    with running(create_app(hub_config(url, tmp_path), engine)) as base, Client(base_url=base) as c:
        r = c.get("/health")
    assert_problem(r, 503, "unhealthy", "did not answer")
    engine.dispose()
