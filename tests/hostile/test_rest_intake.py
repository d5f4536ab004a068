"""Door: the REST intake, ``POST /api/v1/messages`` (portals and online services).

Attacks covered: malformed, duplicated and oversized headers (Content-Type and its parameters, Content-Length
and request framing, Idempotency-Key, X-Sender-Reference, routing headers, Authorization); hostile JSON
(depth, huge numbers, NaN, duplicate keys, lone surrogates, long strings, encodings) and XML (DTD/XXE, entity
expansion, depth, encodings); bodies over the size limit, declared or chunked; many near-limit bodies at once
(the memory budget); clients that stop sending mid-body; a database that goes away during the accept or just
after its commit; an unexpected error (the keep-alive connection must survive it); the Host header used to
forge links. Each case asserts the precise problem, that nothing was stored for a refused request, that what
was stored is intact, and that a normal message sent afterwards reaches ``acknowledged``.

The bulk runs on SQLite; the cases where storage matters run on PostgreSQL too.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError

from hub import store
from hub.db import make_engine
from hub.xmlsafe import XmlLimits, XmlRejected, check, parse
from tests.hostile.live_hub import XML, LiveHub, assert_problem, auth, live_hub, raw_request
from tests.support import OPERATOR_TOKEN, SENDER_TOKEN, XBAU_VALID, hub_config, running
from xhub.api.app import create_app

MAX = 64 * 1024
#: Room for four bodies of the maximum size at once.
SETTINGS: dict[str, Any] = {
    "api": {"max_body_bytes": MAX, "intake_memory_bytes": 4 * MAX, "retry_after_seconds": 2},
    "limits": {"json_max_string_chars": 1024},
}
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    """SQLite: refusals happen before anything is stored, so one backend is enough for them."""
    with live_hub(request, tmp_path_factory.mktemp("intake"), "sqlite", **SETTINGS) as live:
        yield live


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def each_hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    """Both backends, for the cases where storage matters."""
    with live_hub(request, tmp_path_factory.mktemp(f"intake-{request.param}"), request.param, **SETTINGS) as live:
        yield live


@pytest.fixture
def logs() -> Iterator[list[logging.LogRecord]]:
    """Every record of the hub and of uvicorn (whose loggers do not propagate to pytest's capture)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    loggers = [logging.getLogger(n) for n in ("hub", "channels", "adapters", "xhub", "uvicorn", "uvicorn.error")]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    yield records
    for lg, level in zip(loggers, saved, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)


def api_errors(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    """Errors and tracebacks the API or the server logged (the worker's own reports are not this door's)."""
    return [r for r in records if r.name.startswith(("xhub.api", "channels.rest", "uvicorn"))
            and (r.levelno >= logging.ERROR or r.exc_info)]


def no_tracebacks(records: list[logging.LogRecord]) -> None:
    bad = api_errors(records)
    assert not bad, [r.getMessage() for r in bad]


# --------------------------------------------------------------------------------------------------
# Headers

TWO = "two"  # marker: send this header twice

HEADER_CASES: list[tuple[str, list[tuple[str, Any]], int, str, str]] = [
    ("no-content-type", [], 415, "unsupported-media-type", "no Content-Type"),
    ("text-plain", [("Content-Type", "text/plain")], 415, "unsupported-media-type", "text/plain"),
    ("xml-latin1-charset", [("Content-Type", "application/xml; charset=iso-8859-1")], 415,
     "unsupported-media-type", "declare the encoding in the XML declaration"),
    ("json-utf16-charset", [("Content-Type", "application/json; charset=utf-16")], 415,
     "unsupported-media-type", "RFC 8259"),
    ("content-type-without-subtype", [("Content-Type", "application")], 400, "invalid-content-type",
     "type/subtype"),
    ("content-type-parameter-without-value", [("Content-Type", "application/xml; charset")], 400,
     "invalid-content-type", "malformed"),
    ("content-type-parameter-twice", [("Content-Type", "application/xml; charset=utf-8; Charset=UTF-8")], 400,
     "invalid-content-type", "twice"),
    ("media-type-longer-than-its-column", [("Content-Type", "application/" + "x" * 200 + "+xml")], 415,
     "unsupported-media-type", "application/xxx"),
    ("compressed-body", [*XML.items(), ("Content-Encoding", "gzip")], 415, "unsupported-media-type",
     "Content-Encoding 'gzip'"),
    ("content-type-twice", [("Content-Type", "application/xml"), ("Content-Type", "application/json")], 400,
     "duplicate-header", "content-type header was sent 2 times"),
    ("idempotency-key-twice", [*XML.items(), ("Idempotency-Key", "a"), ("Idempotency-Key", "b")], 400,
     "duplicate-header", "idempotency-key"),
    ("idempotency-key-with-space", [*XML.items(), ("Idempotency-Key", "has space")], 400,
     "invalid-idempotency-key", "printable"),
    ("idempotency-key-too-long", [*XML.items(), ("Idempotency-Key", "k" * 256)], 400, "invalid-idempotency-key",
     "255"),
    ("idempotency-key-empty", [*XML.items(), ("Idempotency-Key", "")], 400, "invalid-idempotency-key", "1 to 255"),
    ("idempotency-key-latin1", [*XML.items(), ("Idempotency-Key", b"schl\xfcssel")], 400,
     "invalid-idempotency-key", "ASCII"),
    ("sender-reference-too-long", [*XML.items(), ("X-Sender-Reference", "r" * 256)], 400, "invalid-request",
     "header.x-sender-reference"),
    ("sender-reference-not-utf8", [*XML.items(), ("X-Sender-Reference", b"M\xfcller")], 400, "invalid-request",
     "UTF-8"),
    ("sender-reference-twice", [*XML.items(), ("X-Sender-Reference", "a"), ("X-Sender-Reference", "b")], 400,
     "duplicate-header", "x-sender-reference"),
    ("service-identifier-not-leika", [*XML.items(), ("X-Service-Identifier", "99036")], 400, "invalid-request",
     "header.x-service-identifier"),
    ("region-key-not-a-key", [*XML.items(), ("X-Region-Key", "Memmingen")], 400, "invalid-request",
     "header.x-region-key"),
    ("headers-larger-than-the-limit", [*XML.items(), ("X-Padding", "p" * 40_000)], 431, "headers-too-large",
     "32768"),
]


@pytest.mark.parametrize(("headers", "status", "slug", "detail"), [c[1:] for c in HEADER_CASES],
                         ids=[c[0] for c in HEADER_CASES])
def test_bad_headers_are_refused_precisely(hub: LiveHub, headers: list[tuple[str, Any]], status: int, slug: str,
                                           detail: str) -> None:
    before = hub.count()
    with hub.client() as c:
        r = c.post("/api/v1/messages", content=XBAU_VALID.read_bytes(), headers=[*auth().items(), *headers])
        assert_problem(r, status, slug, detail)
        hub.still_works(before, c)


AUTH_CASES: list[tuple[str, list[tuple[str, str]], int, str, str]] = [
    ("missing", [], 401, "unauthorized", "Authorization: Bearer"),
    ("basic-scheme", [("Authorization", "Basic dXNlcjpwdw==")], 401, "unauthorized", "Bearer scheme"),
    ("bearer-without-token", [("Authorization", "Bearer")], 401, "unauthorized", "Bearer scheme"),
    ("unknown-token", [("Authorization", "Bearer " + "t" * 5000)], 401, "invalid-token", "not known"),
    ("twice", [*auth().items(), *auth().items()], 400, "duplicate-header", "authorization"),
    ("operator-token", [*auth(OPERATOR_TOKEN).items()], 403, "not-a-sender", "only sender tokens"),
]


@pytest.mark.parametrize(("headers", "status", "slug", "detail"), [c[1:] for c in AUTH_CASES],
                         ids=[c[0] for c in AUTH_CASES])
def test_who_may_submit(hub: LiveHub, headers: list[tuple[str, str]], status: int, slug: str, detail: str) -> None:
    before = hub.count()
    with hub.client() as c:
        r = c.post("/api/v1/messages", content=b"<a/>", headers=[*XML.items(), *headers])
        assert_problem(r, status, slug, detail)
        assert SENDER_TOKEN not in r.text and OPERATOR_TOKEN not in r.text and "t" * 100 not in r.text
        if status == 401:
            assert r.headers["www-authenticate"] == 'Bearer realm="xoev-hub"'
        hub.still_works(before, c)


@pytest.mark.parametrize(("content_type", "stored"), [
    ("application/xml;", "application/xml"),
    ('text/xml; charset="UTF-8"', "text/xml"),
    ("Application/Vnd.XBau+XML; version=2.6", "application/vnd.xbau+xml"),
    ("application/json ; charset=utf-8", "application/json"),
])
def test_content_types_the_hub_reads(hub: LiveHub, content_type: str, stored: str) -> None:
    body = b'{"antrag": 1}' if "json" in content_type else b"<antrag/>"
    with hub.client() as c:
        r = c.post("/api/v1/messages", content=body, headers={**auth(), "Content-Type": content_type,
                                                              "Content-Encoding": "identity"})
    assert r.status_code == 202, r.text
    assert hub.wait_done(r.json()["id"]).content_type == stored


def test_query_parameters_are_refused(hub: LiveHub) -> None:
    before = hub.count()
    with hub.client() as c:
        r = c.post("/api/v1/messages?tenant=someone-else", content=b"<a/>", headers={**auth(), **XML})
        assert_problem(r, 400, "invalid-request", "query.tenant: unknown query parameter")
        hub.still_works(before, c)


def test_sender_reference_in_utf8_is_kept(hub: LiveHub) -> None:
    reference = "Müller-Lüdenscheidt 4/2".encode()
    with hub.client() as c:
        r = c.post("/api/v1/messages", content=b"<a/>",
                   headers=[*auth().items(), *XML.items(), ("X-Sender-Reference", reference)])
    assert r.status_code == 202, r.text
    stored = hub.wait_done(r.json()["id"])
    assert stored.sender_reference == "Müller-Lüdenscheidt 4/2"


# --------------------------------------------------------------------------------------------------
# Framing the server refuses before the hub sees the request (plain 400 from uvicorn, connection closed)

HEAD = f"POST /api/v1/messages HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {SENDER_TOKEN}\r\n" \
       "Content-Type: application/xml\r\nConnection: close\r\n"
FRAMING = [
    ("content-length-not-a-number", b"Content-Length: abc\r\n\r\n<a/>"),
    ("content-length-conflicting", b"Content-Length: 4\r\nContent-Length: 5\r\n\r\n<a/>"),
    ("content-length-signed", b"Content-Length: +4\r\n\r\n<a/>"),
    ("content-length-negative", b"Content-Length: -4\r\n\r\n<a/>"),
    ("transfer-encoding-unknown", b"Transfer-Encoding: gzip\r\n\r\n<a/>"),
    ("chunk-size-not-hex", b"Transfer-Encoding: chunked\r\n\r\nzz\r\n<a/>\r\n0\r\n\r\n"),
    ("nul-in-a-header", b"X-Sender-Reference: a\x00b\r\nContent-Length: 4\r\n\r\n<a/>"),
]


@pytest.mark.parametrize("tail", [c[1] for c in FRAMING], ids=[c[0] for c in FRAMING])
def test_broken_framing_is_refused_by_the_server(hub: LiveHub, tail: bytes) -> None:
    before = hub.count()
    answer = raw_request(hub.base, HEAD.encode() + tail)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    hub.still_works(before)


def test_both_framings_at_once_are_refused(hub: LiveHub) -> None:
    """Content-Length and Transfer-Encoding together: the request smuggling pattern (RFC 9112 §6.3)."""
    before = hub.count()
    answer = raw_request(hub.base, HEAD.encode() + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                                                   b"4\r\n<a/>\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ") and b"urn:xoev-hub:problem:bad-content-length" in answer
    assert b"connection: close" in answer.lower()
    hub.still_works(before)


# --------------------------------------------------------------------------------------------------
# Bodies

DEEP_JSON = b'{"a":' * 65 + b"1" + b"}" * 65
BODY_CASES: list[tuple[str, dict[str, str], bytes, int, str, str]] = [
    ("json-too-deep", JSON, DEEP_JSON, 400, "json-too-deep", "64 levels"),
    ("json-nested-past-the-c-scanner", JSON, b'{"a":' + b"[" * 30_000 + b"]" * 30_000 + b"}", 400,
     "json-too-deep", "64 levels"),
    ("json-huge-integer", JSON, b'{"n": ' + b"9" * 5000 + b"}", 400, "json-number-too-long", "5000 characters"),
    ("json-float-overflow", JSON, b'{"n": 1e400}', 400, "json-number-out-of-range", "64-bit"),
    ("json-nan", JSON, b'{"n": NaN}', 400, "json-invalid-number", "NaN"),
    ("json-duplicate-key", JSON, b'{"fin": "A", "fin": "B"}', 400, "json-duplicate-key", "'fin'"),
    ("json-lone-surrogate", JSON, b'{"name": "\\ud800"}', 400, "json-invalid-string", "surrogate"),
    ("json-string-too-long", JSON, b'{"name": "' + b"x" * 2000 + b'"}', 400, "json-string-too-long", "1024"),
    ("json-byte-order-mark", JSON, b'\xef\xbb\xbf{"a": 1}', 400, "malformed-json", "byte-order mark"),
    ("json-not-utf8", JSON, b'{"name": "M\xfcller"}', 400, "malformed-json", "not UTF-8"),
    ("json-not-an-object", JSON, b"[1, 2]", 400, "malformed-json", "JSON object"),
    ("json-trailing-garbage", JSON, b'{"a": 1} {"b": 2}', 400, "malformed-json", "Extra data"),
    ("json-empty", JSON, b" \n ", 400, "empty-body", "empty"),
    ("xml-external-entity", XML, b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>', 400,
     "malformed-xml", "DOCTYPE"),
    ("xml-billion-laughs", XML, b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;">'
     b']><l>&b;</l>', 400, "malformed-xml", "DOCTYPE"),
    ("xml-too-deep", XML, b"<a>" * 300 + b"</a>" * 300, 400, "xml-too-deep", "256 levels"),
    ("xml-not-well-formed", XML, b"<a><b></a>", 400, "malformed-xml", "mismatch"),
    ("xml-unknown-encoding", XML, b'<?xml version="1.0" encoding="x-klingon"?><a/>', 400, "malformed-xml",
     "encoding"),
    ("xml-undefined-entity", XML, b"<a>&nbsp;</a>", 400, "malformed-xml", "nbsp"),
    ("xml-empty", XML, b"", 400, "empty-body", "empty"),
    ("over-the-size-limit", XML, b"<a>" + b"x" * MAX + b"</a>", 413, "payload-too-large", "65536 bytes"),
]


@pytest.mark.parametrize(("headers", "body", "status", "slug", "detail"), [c[1:] for c in BODY_CASES],
                         ids=[c[0] for c in BODY_CASES])
def test_hostile_bodies_are_refused_precisely(hub: LiveHub, headers: dict[str, str], body: bytes, status: int,
                                              slug: str, detail: str) -> None:
    before = hub.count()
    with hub.client() as c:
        r = c.post("/api/v1/messages", content=body, headers={**auth(), **headers})
        assert_problem(r, status, slug, detail)
        hub.still_works(before, c)


MORE_XML = [
    b"<a xmlns:x='u'><x:b/><y:c/></a>", b"<a:b:c/>", b"<a xmlns:y=''/>", b"<a x:y='1'/>", b"<a b='1' b='2'/>",
    b"<a>&#0;</a>", b"<a>\xff</a>", b"<a/><b/>", b"<a/>\x00", b"\xef\xbb\xbf<a/>", "<a>ü</a>".encode("utf-16"),
    "<!DOCTYPE a><a/>".encode("utf-16"), b"<?xml version='1.0'?><!--c--><!DOCTYPE a><a/>",
    b"<?xml version='1.0' encoding='iso-8859-1'?><a>\xfc</a>", b"<a><![CDATA[x]]></a>", b"<a>" * 200 + b"</a>" * 200,
    b"<r>" + b"x" * 10_000_001 + b"</r>", b"<r>" + b"x" * 10_000_000 + b"</r>", b"<r>" + b"&amp;" * 2_100_000 + b"</r>",
]


@pytest.mark.parametrize("limits", [XmlLimits(), XmlLimits(max_depth=100)], ids=["default-depth", "depth-100"])
def test_the_door_refuses_xml_exactly_like_the_verify_stage(limits: XmlLimits) -> None:
    """The door checks XML without building a tree (:func:`check`); verify builds it (:func:`parse`)."""
    corpus = [c[2] for c in BODY_CASES if c[1] is XML] + MORE_XML + [
        p.read_bytes() for p in sorted((Path(__file__).parents[1] / "fixtures" / "xoev").rglob("*.xml"))]

    def outcome(parser: Any, data: bytes) -> str | None:
        try:
            parser(data, limits)
        except XmlRejected as exc:
            return exc.title
        return None

    for data in corpus:
        assert outcome(check, data) == outcome(parse, data), data[:80]


def test_chunked_body_over_the_limit_is_refused(hub: LiveHub) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"<a>"
        for _ in range(100):
            yield b"x" * 4096

    before = hub.count()
    with hub.client() as c:
        r = c.post("/api/v1/messages", content=chunks(), headers={**auth(), **XML})
        assert_problem(r, 413, "payload-too-large", "65536 bytes")
        assert r.headers["connection"] == "close"  # the hub does not drain what a stranger keeps sending
    assert hub.app.state.intake_budget.in_use == 0
    hub.still_works(before)


def test_json_at_the_limits_is_accepted_and_verified_with_the_same_limits(hub: LiveHub) -> None:
    """What the door accepts, the verify stage accepts too: same parser, same [limits]."""
    body = b'{"a":' * 63 + b'{"n": ' + b"9" * 100 + b', "s": "' + b"x" * 1024 + b'"}' + b"}" * 63
    with hub.client() as c:
        r = c.post("/api/v1/messages", content=body, headers={**auth(), **JSON})
    assert r.status_code == 202, r.text
    hub.wait_done(r.json()["id"])


# --------------------------------------------------------------------------------------------------
# Storage: exactly once, memory budget, disconnects, outages (both backends)


def test_idempotency_key_replays_and_refuses_another_payload(each_hub: LiveHub) -> None:
    key = f"antrag-{uuid.uuid4()}"
    before = each_hub.count()
    with each_hub.client() as c:
        first = each_hub.submit(c, **{"Idempotency-Key": key})
        again = each_hub.submit(c, **{"Idempotency-Key": key})
        other = each_hub.submit(c, b"<other/>", **{"Idempotency-Key": key})
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert_problem(other, 422, "idempotency-key-reused", first.json()["id"])
    assert each_hub.count() == before + 1
    each_hub.wait_done(first.json()["id"])
    each_hub.still_works()


def test_sixteen_concurrent_near_limit_bodies(each_hub: LiveHub) -> None:
    """Four fit into the memory budget at once: every answer is 202 or 503 with Retry-After, never 500."""
    bodies = [b"<big n='%d'>" % i + b"x" * (MAX - 64) + b"</big>" for i in range(16)]
    answers: list[httpx.Response | None] = [None] * 16
    start = threading.Barrier(16)

    def send(i: int) -> None:
        with each_hub.client() as c:
            start.wait()
            answers[i] = c.post("/api/v1/messages", content=bodies[i], headers={**auth(), **XML})

    before = each_hub.count()
    threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    accepted = []
    for i, r in enumerate(answers):
        assert r is not None
        if r.status_code == 503:
            assert_problem(r, 503, "intake-busy", "Retry-After")
            assert r.headers["retry-after"] == "2"
        else:
            assert r.status_code == 202, r.text
            accepted.append((r.json()["id"], bodies[i]))
    assert accepted and each_hub.count() == before + len(accepted)
    for message_id, body in accepted:
        each_hub.wait_done(message_id)
        [part] = store.payload(each_hub.engine, uuid.UUID(message_id))
        assert part.body == body
    assert each_hub.app.state.intake_budget.in_use == 0
    each_hub.still_works()


def _hold(base: str, size: int) -> socket.socket:
    """A client that declares ``size`` bytes, sends a few, and then waits (it holds its reservation)."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(f"POST /api/v1/messages HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {SENDER_TOKEN}\r\n"
                 f"Content-Type: application/xml\r\nContent-Length: {size}\r\n\r\n<a>".encode())
    return sock


def test_budget_exhausted_answers_503_and_disconnects_store_nothing(
        each_hub: LiveHub, logs: list[logging.LogRecord]) -> None:
    before = each_hub.count()
    budget = each_hub.app.state.intake_budget
    holders = [_hold(each_hub.base, MAX) for _ in range(4)]
    try:
        with each_hub.client() as c:
            for _ in range(50):  # until all four holders are being read
                if budget.in_use == 4 * MAX:
                    break
                threading.Event().wait(0.05)
            r = each_hub.submit(c)
            assert_problem(r, 503, "intake-busy", "nothing was stored")
            assert r.headers["retry-after"] == "2"
    finally:
        for sock in holders:  # each client goes away in the middle of its body
            sock.close()
    for _ in range(100):
        if budget.in_use == 0:
            break
        threading.Event().wait(0.05)
    assert budget.in_use == 0
    each_hub.still_works(before)
    assert any("client disconnected" in r.getMessage() and r.levelno == logging.DEBUG for r in logs)
    no_tracebacks(logs)


def test_database_outage_answers_503_and_the_hub_recovers(each_hub: LiveHub,
                                                          logs: list[logging.LogRecord]) -> None:
    key = f"outage-{uuid.uuid4()}"
    with each_hub.outage(), each_hub.client() as c:
        r = each_hub.submit(c, **{"Idempotency-Key": key})
        assert_problem(r, 503, "database-unavailable", "same Idempotency-Key")
        assert r.headers["retry-after"] == "2"
        assert_problem(c.get("/api/v1/messages", headers=auth()), 503, "database-unavailable", "Retry-After")
        assert_problem(c.get(f"/api/v1/messages/{uuid.uuid4()}", headers=auth()), 503, "database-unavailable")
    with each_hub.client() as c:  # the portal retries with its key: stored once
        again = each_hub.submit(c, **{"Idempotency-Key": key})
        assert again.status_code == 202, again.text
    each_hub.wait_done(again.json()["id"])
    each_hub.still_works()
    no_tracebacks(logs)
    assert all(SENDER_TOKEN not in r.getMessage() for r in logs)


def test_an_unexpected_error_keeps_the_connection(each_hub: LiveHub, monkeypatch: pytest.MonkeyPatch,
                                                  logs: list[logging.LogRecord]) -> None:
    def broken(*_args: object) -> dict[str, Any]:
        raise RuntimeError("a bug in the sender view")

    with each_hub.client() as c:
        mine = each_hub.submit(c).json()["id"]
        monkeypatch.setattr("xhub.api.messages.sender_detail", broken)
        failed = c.get(f"/api/v1/messages/{mine}", headers=auth())
        assert_problem(failed, 500, "internal-error", "in its log")
        assert "a bug in the sender view" not in failed.text
        monkeypatch.undo()
        after = each_hub.submit(c)
        assert after.status_code == 202
        socket_of = [r.extensions["network_stream"].get_extra_info("client_addr") for r in (failed, after)]
        assert socket_of[0] == socket_of[1], "the connection was closed after the 500"
    errors = api_errors(logs)
    assert len(errors) == 1 and errors[0].name == "xhub.api.guard" and "RuntimeError" in errors[0].getMessage()
    each_hub.wait_done(after.json()["id"])
    each_hub.still_works()


def test_links_come_from_configuration_never_from_the_host_header(hub: LiveHub) -> None:
    with hub.client() as c:
        r = hub.submit(c, **{"Host": "evil.example", "X-Forwarded-Host": "evil.example"})
    assert r.status_code == 202
    assert r.headers["location"] == f"/api/v1/messages/{r.json()['id']}" == r.json()["links"]["self"]
    hub.wait_done(r.json()["id"])


def test_public_url_is_used_for_links(engine: Engine, db_url: str, tmp_path: Path) -> None:
    config = hub_config(db_url, tmp_path, api={"public_url": "https://hub.example.de/xhub/"})
    with running(create_app(config, engine)) as base, httpx.Client(base_url=base) as c:
        r = c.post("/api/v1/messages", content=b"<a/>", headers={**auth(), **XML, "Host": "evil.example"})
    assert r.headers["location"] == f"https://hub.example.de/xhub/api/v1/messages/{r.json()['id']}"


# --------------------------------------------------------------------------------------------------
# A commit that succeeded is answered as accepted, whatever the database does right after


def _fail_after_first_commit(engine: Engine) -> dict[str, bool]:
    """After the first commit, every statement fails as if the server had gone away."""
    state = {"committed": False, "failing": True}

    @event.listens_for(engine, "commit")
    def _committed(_conn: Any) -> None:
        state["committed"] = True

    @event.listens_for(engine, "before_cursor_execute")
    def _gone(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if state["committed"] and state["failing"]:
            raise OperationalError(statement, {}, ConnectionError("server closed the connection unexpectedly"))

    return state


def test_accepted_after_commit_even_if_the_database_fails_next(engine: Engine, db_url: str,
                                                                tmp_path: Path) -> None:
    state = _fail_after_first_commit(engine)
    config = hub_config(db_url, tmp_path)
    with running(create_app(config, engine)) as base, httpx.Client(base_url=base) as c:
        r = c.post("/api/v1/messages", content=XBAU_VALID.read_bytes(),
                   headers={**auth(), **XML, "Idempotency-Key": "committed-then-gone"})
        assert r.status_code == 202, r.text
        assert state["committed"]
        assert_problem(c.get("/api/v1/messages", headers=auth()), 503, "database-unavailable")
        state["failing"] = False
        again = c.post("/api/v1/messages", content=XBAU_VALID.read_bytes(),
                       headers={**auth(), **XML, "Idempotency-Key": "committed-then-gone"})
    assert again.status_code == 200 and again.json()["id"] == r.json()["id"]
    fresh = make_engine(db_url)
    stored = store.get(fresh, uuid.UUID(r.json()["id"]))
    fresh.dispose()
    assert stored is not None and stored.status == "received" and len(store.list_messages(engine)) == 1


def test_unreachable_database_answers_503(tmp_path: Path) -> None:
    url = "postgresql://nobody@127.0.0.1:1/none"
    engine = make_engine(url)
    with running(create_app(hub_config(url, tmp_path), engine)) as base, httpx.Client(base_url=base) as c:
        r = c.post("/api/v1/messages", content=b"<a/>", headers={**auth(), **XML})
        assert_problem(r, 503, "database-unavailable", "may not have been stored")
        assert r.headers["retry-after"] == "5"
        assert_problem(c.get("/api/v1/messages", headers=auth(OPERATOR_TOKEN)), 503, "database-unavailable")
    engine.dispose()
