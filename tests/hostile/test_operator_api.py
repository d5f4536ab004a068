"""Door: the message and operator API (``/api/v1/messages`` list, show and requeue, ``/api/v1/targets``,
``/api/v1/rules``, ``/api/v1/rules/reload``).

Attacks covered: hostile query parameters (huge, negative, fractional, empty, repeated and unknown ones,
long strings), bad message ids (not UUIDs, NUL, path traversal, very long), wrong methods and paths, malformed
or repeated Authorization headers, sender tokens on operator routes and on other senders' messages, and
information leaks through the sender's view of its message (target URLs, fault texts of a specialist
procedure, worker and operator names). A database outage answers 503. Each case asserts the precise problem,
that nothing changed, and that the hub still accepts and processes a normal message afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response

from hub import store
from tests.hostile.live_hub import XML, LiveHub, assert_problem, auth, live_hub
from tests.support import OPERATOR_TOKEN, OTHER_SENDER_TOKEN, SENDER_TOKEN, XBAU_INVALID, XBAU_VALID, running

FAULT = (b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><soap:Fault>'
         b"<soap:Reason><soap:Text>ORA-01017 login denied for kfz_owner@db-intern.kommune.local</soap:Text>"
         b"</soap:Reason></soap:Fault></soap:Body></soap:Envelope>")
SECRET_PATH = "/intern/fachverfahren-kfz/v2/einreichung"
#: What a sender must never see of the failed delivery above.
INTERNALS = ("ORA-01017", "kfz_owner", "db-intern", "fachverfahren-kfz", "127.0.0.1", "registry", "worker:",
             "operator:ops", "Permanent", "answered 400")


class Registry:
    """A specialist procedure that refuses with a SOAP fault until it is told to accept."""

    def __init__(self) -> None:
        self.accepting = False
        self.app = FastAPI()

        @self.app.post(SECRET_PATH)
        async def receive(request: Request) -> Response:
            await request.body()
            if self.accepting:
                return Response(status_code=201, headers={"Location": f"{SECRET_PATH}/4711"})
            return Response(FAULT, status_code=400, media_type="application/soap+xml")


@pytest.fixture(scope="module")
def registry() -> Iterator[tuple[Registry, str]]:
    target = Registry()
    with running(target.app) as base:
        yield target, base


def _settings(registry_url: str, tmp: Any) -> dict[str, Any]:
    """Messages of the other tenant go to the registry stand-in; everything else to the file outbox."""
    return {
        "targets": {"outbox": {"adapter": "file", "directory": str(tmp / "outbox")},
                    "registry": {"adapter": "rest", "url": registry_url + SECRET_PATH}},
        "routes": [{"name": "aschaffenburg-kfz", "match": {"tenant": "aschaffenburg"}, "targets": ["registry"]},
                   {"name": "all", "targets": ["outbox"]}],
    }


@pytest.fixture(scope="module")
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        registry: tuple[Registry, str]) -> Iterator[LiveHub]:
    tmp = tmp_path_factory.mktemp("operator")
    with live_hub(request, tmp, "sqlite", **_settings(registry[1], tmp)) as live:
        yield live


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def each_hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             registry: tuple[Registry, str]) -> Iterator[LiveHub]:
    tmp = tmp_path_factory.mktemp(f"operator-{request.param}")
    with live_hub(request, tmp, request.param, **_settings(registry[1], tmp)) as live:
        yield live


def ops() -> dict[str, str]:
    return auth(OPERATOR_TOKEN)


# --------------------------------------------------------------------------------------------------
# Query parameters and ids

LONG = "x" * 10_000
QUERY_CASES = [
    ("limit-zero", "limit=0", "query.limit"),
    ("limit-negative", "limit=-1", "query.limit"),
    ("limit-over-500", "limit=501", "query.limit"),
    ("limit-huge", "limit=" + "9" * 30, "query.limit"),
    ("limit-too-many-digits", "limit=" + "9" * 5000, "query.limit"),
    ("limit-not-a-number", "limit=abc", "query.limit"),
    ("limit-fraction", "limit=1.5", "query.limit"),
    ("limit-empty", "limit=", "query.limit"),
    ("limit-twice", "limit=1&limit=2", "query.limit: given more than once"),
    ("status-unknown", "status=lost", "query.status"),
    ("status-upper-case", "status=RECEIVED", "query.status"),
    ("status-empty", "status=", "query.status"),
    ("status-long", "status=" + LONG, "query.status"),
    ("unknown-parameter", "state=dead", "query.state: unknown query parameter (it takes status, limit)"),
    ("long-unknown-parameter", LONG + "=1", "unknown query parameter"),
]


@pytest.mark.parametrize(("query", "detail"), [c[1:] for c in QUERY_CASES], ids=[c[0] for c in QUERY_CASES])
def test_hostile_query_parameters(hub: LiveHub, query: str, detail: str) -> None:
    before = hub.count()
    with hub.client() as c:
        r = c.get(f"/api/v1/messages?{query}", headers=ops())
        assert_problem(r, 400, "invalid-request", detail)
        assert LONG not in r.text and len(r.content) < 2000  # what a stranger sent is not echoed at length
        hub.still_works(before, c)


ID_CASES = [
    ("not-a-uuid", "GET", "/api/v1/messages/not-a-uuid", 400, "invalid-request", "UUID"),
    ("very-long", "GET", "/api/v1/messages/" + "a" * 5000, 400, "invalid-request", "UUID"),
    ("nul", "GET", "/api/v1/messages/%00", 400, "invalid-request", "UUID"),
    ("encoded-traversal", "GET", "/api/v1/messages/..%2F..%2Fetc%2Fpasswd", 404, "not-found", "no resource"),
    ("unknown", "GET", f"/api/v1/messages/{uuid.UUID(int=0)}", 404, "message-not-found", "visible to you"),
    ("requeue-not-a-uuid", "POST", "/api/v1/messages/..%2Fconfig/requeue", 404, "not-found", "no resource"),
    ("requeue-unknown", "POST", f"/api/v1/messages/{uuid.UUID(int=1)}/requeue", 404, "message-not-found", ""),
    ("unknown-path", "GET", "/api/v1/" + "p" * 3000, 404, "not-found", "..."),
    ("wrong-method-on-message", "DELETE", f"/api/v1/messages/{uuid.UUID(int=2)}", 405, "method-not-allowed",
     "DELETE"),
    ("wrong-method-on-targets", "PUT", "/api/v1/targets", 405, "method-not-allowed", "PUT"),
    ("reload-by-get", "GET", "/api/v1/rules/reload", 405, "method-not-allowed", "GET"),
    ("query-on-targets", "GET", "/api/v1/targets?verbose=1", 400, "invalid-request", "it takes none"),
]


@pytest.mark.parametrize(("method", "path", "status", "slug", "detail"), [c[1:] for c in ID_CASES],
                         ids=[c[0] for c in ID_CASES])
def test_bad_ids_paths_and_methods(hub: LiveHub, method: str, path: str, status: int, slug: str,
                                   detail: str) -> None:
    before = hub.count()
    with hub.client() as c:
        r = c.request(method, path, headers=ops())
        assert_problem(r, status, slug, detail)
        assert len(r.content) < 2000
        hub.still_works(before, c)


# --------------------------------------------------------------------------------------------------
# Who may do what

OPERATOR_ROUTES = [("GET", "/api/v1/targets"), ("GET", "/api/v1/rules"), ("POST", "/api/v1/rules/reload"),
                   ("POST", "/api/v1/messages/{id}/requeue")]


@pytest.mark.parametrize(("method", "path"), OPERATOR_ROUTES, ids=[p for _, p in OPERATOR_ROUTES])
def test_sender_tokens_cannot_use_operator_routes(hub: LiveHub, method: str, path: str) -> None:
    with hub.client() as c:
        mine = hub.submit(c).json()["id"]
        hub.wait_done(mine)
        before = hub.count()
        r = c.request(method, path.format(id=mine), headers=auth())
        assert_problem(r, 403, "not-an-operator", "operator token")
        assert store.get(hub.engine, uuid.UUID(mine)).status == "acknowledged"  # type: ignore[union-attr]
        hub.still_works(before, c)


AUTH_CASES: list[tuple[str, list[tuple[str, Any]], int, str]] = [
    ("empty", [("Authorization", "")], 401, "unauthorized"),
    ("scheme-only", [("Authorization", "Bearer")], 401, "unauthorized"),
    ("basic", [("Authorization", "Basic b3BzOnB3")], 401, "unauthorized"),
    ("other-scheme", [("Authorization", f"Token {OPERATOR_TOKEN}")], 401, "unauthorized"),
    ("tab-instead-of-space", [("Authorization", f"Bearer\t{OPERATOR_TOKEN}")], 401, "unauthorized"),
    ("token-with-suffix", [("Authorization", f"Bearer {OPERATOR_TOKEN} x")], 401, "invalid-token"),
    ("token-very-long", [("Authorization", "Bearer " + "t" * 8000)], 401, "invalid-token"),
    ("token-latin1", [("Authorization", b"Bearer \xe4\xf6\xfc")], 401, "invalid-token"),
    ("twice", [*ops().items(), *ops().items()], 400, "duplicate-header"),
    ("operator-and-sender", [*ops().items(), *auth().items()], 400, "duplicate-header"),
]


@pytest.mark.parametrize(("headers", "status", "slug"), [c[1:] for c in AUTH_CASES], ids=[c[0] for c in AUTH_CASES])
def test_malformed_authorization(hub: LiveHub, headers: list[tuple[str, Any]], status: int, slug: str) -> None:
    before = hub.count()
    with hub.client() as c:
        r = c.get("/api/v1/targets", headers=headers)
        assert_problem(r, status, slug)
        for secret in (OPERATOR_TOKEN, SENDER_TOKEN, "t" * 100):
            assert secret not in r.text
        hub.still_works(before, c)


def test_the_bearer_scheme_is_case_insensitive(hub: LiveHub) -> None:
    with hub.client() as c:
        r = c.get("/api/v1/targets", headers={"Authorization": f"bearer {OPERATOR_TOKEN}"})
    assert r.status_code == 200 and {t["target"] for t in r.json()["items"]} == {"outbox", "registry"}


def test_other_senders_messages_are_invisible(hub: LiveHub) -> None:
    with hub.client() as c:
        mine = hub.submit(c).json()["id"]
        assert_problem(c.get(f"/api/v1/messages/{mine}", headers=auth(OTHER_SENDER_TOKEN)), 404,
                       "message-not-found", mine)
        listed = c.get("/api/v1/messages?limit=500", headers=auth(OTHER_SENDER_TOKEN)).json()["items"]
        assert mine not in {m["id"] for m in listed}
        assert mine in {m["id"] for m in c.get("/api/v1/messages?limit=500", headers=ops()).json()["items"]}
    hub.wait_done(mine)


def test_list_views(hub: LiveHub) -> None:
    with hub.client() as c:
        hub.wait_done(hub.submit(c).json()["id"])
        sender = c.get("/api/v1/messages?status=acknowledged&limit=1", headers=auth()).json()["items"][0]
        operator = c.get("/api/v1/messages?status=acknowledged&limit=1", headers=ops()).json()["items"][0]
    assert set(sender) == {"id", "status", "sender_reference", "standard", "standard_version", "message_type",
                           "created_at", "updated_at", "links"}
    assert operator["route"] == "all" and operator["tenant"] == "memmingen"


# --------------------------------------------------------------------------------------------------
# What a sender sees of its own message (both backends: the trail is read from storage)

SENDER_DETAIL_KEYS = {"id", "status", "sender_reference", "standard", "standard_version", "message_type",
                      "created_at", "updated_at", "links", "idempotency_key", "content_type", "payload_size",
                      "payload_sha256", "problem", "validation", "events"}


def test_a_failed_delivery_shows_the_sender_no_internals(each_hub: LiveHub,
                                                         registry: tuple[Registry, str]) -> None:
    target, _ = registry
    target.accepting = False
    with each_hub.client() as c:
        r = c.post("/api/v1/messages", content=XBAU_VALID.read_bytes(), headers={**auth(OTHER_SENDER_TOKEN), **XML})
        message_id = r.json()["id"]
        each_hub.wait_done(message_id, "dead")
        seen = c.get(f"/api/v1/messages/{message_id}", headers=auth(OTHER_SENDER_TOKEN))
        full = c.get(f"/api/v1/messages/{message_id}", headers=ops())
        assert seen.status_code == 200 and set(seen.json()) == SENDER_DETAIL_KEYS
        problem = seen.json()["problem"]
        assert problem["type"] == "urn:xoev-hub:problem:processing-stopped" and problem["category"] == "hub"
        for internal in INTERNALS:
            assert internal not in seen.text, internal
        assert "ORA-01017" in full.text and SECRET_PATH in full.text  # operators see everything
        assert full.json()["deliveries"][0]["target"] == "registry"

        target.accepting = True  # the procedure is fixed; an operator resumes the message
        requeued = c.post(f"/api/v1/messages/{message_id}/requeue", headers=ops())
        assert requeued.status_code == 200 and requeued.json()["status"] == "retry_wait"
        each_hub.wait_done(message_id)
        after = c.get(f"/api/v1/messages/{message_id}", headers=auth(OTHER_SENDER_TOKEN)).json()
    assert after["problem"] is None and after["status"] == "acknowledged"
    assert "operator" in {e["actor"] for e in after["events"]} and "ops" not in str(after)
    assert after["events"][0]["actor"] == "sender:other"
    each_hub.still_works()


def test_a_rejected_message_shows_the_sender_its_validation_report(each_hub: LiveHub) -> None:
    with each_hub.client() as c:
        message_id = each_hub.submit(c, XBAU_INVALID.read_bytes()).json()["id"]
        each_hub.wait_done(message_id, "rejected")
        seen = c.get(f"/api/v1/messages/{message_id}", headers=auth()).json()
    assert seen["problem"]["type"] == "urn:xoev-hub:problem:document-invalid"
    assert seen["problem"]["category"] == "document" and seen["problem"]["stage"] == "validate"
    report = seen["validation"]
    assert report["verdict"] == "invalid" and report["findings"]
    for finding in report["findings"]:
        assert set(finding) == {"severity", "rule", "line", "path", "message"}
    assert any(f["severity"] == "error" and f["line"] for f in report["findings"])
    assert "worker:" not in str(seen)
    each_hub.still_works()


def test_a_document_the_parser_refuses_shows_the_refusal(hub: LiveHub) -> None:
    """Stored by another way in (or before the intake checked it); the verify stage rejects it."""
    message, _ = store.accept(hub.engine, store.NewMessage("memmingen", "rest", "portal", [
        store.Part("payload", "application/xml", b"<antrag><name></antrag>")]), actor="sender:portal")
    hub.wait_done(message.id, "rejected")
    with hub.client() as c:
        seen = c.get(f"/api/v1/messages/{message.id}", headers=auth()).json()
    assert seen["problem"]["type"] == "urn:xoev-hub:problem:document-malformed"
    [finding] = seen["validation"]["findings"]
    assert finding["rule"] == "xml" and finding["line"] == 1 and "mismatch" in finding["message"]


def test_database_outage_on_operator_routes(each_hub: LiveHub) -> None:
    with each_hub.client() as c:
        mine = each_hub.submit(c).json()["id"]
        each_hub.wait_done(mine)
        with each_hub.outage():
            for method, path in [("GET", "/api/v1/messages"), ("GET", f"/api/v1/messages/{mine}"),
                                 ("GET", "/api/v1/targets"), ("POST", f"/api/v1/messages/{mine}/requeue")]:
                r = c.request(method, path, headers=ops())
                assert_problem(r, 503, "database-unavailable", "Retry-After")
                assert r.headers["retry-after"] == "5"
        assert c.get(f"/api/v1/messages/{mine}", headers=ops()).status_code == 200
    each_hub.still_works()


def test_reloading_the_rules_keeps_the_hub_working(hub: LiveHub) -> None:
    with hub.client() as c:
        r = c.post("/api/v1/rules/reload", headers=ops())
        assert r.status_code == 200 and r.json()["routes"] == ["aschaffenburg-kfz", "all"]
        assert isinstance(c.get("/api/v1/rules", headers=ops()).json()["last_reload_error"], type(None))
        hub.still_works(None, c)

