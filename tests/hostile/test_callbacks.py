"""Hostile inputs at the FIT-Connect callback door (``POST /api/v1/fitconnect/callback``) of a running hub.

Attack classes: ``callback-timestamp`` that is not unix seconds (words, signs, exponents, fractions, hex,
other scripts' digits, non-ASCII bytes, too many digits, far past or future); ``callback-authentication``
that is not an HMAC-SHA512 (not hex, too short or long, non-ASCII) or is forged (wrong secret, altered body)
or replayed; bodies over the size limit (declared or chunked), bodies that authenticate but are not the
JSON a callback carries (not JSON, deep nesting, huge numbers, duplicate keys, wrong shape); wrong method.

Every case asserts the precise status and problem type (never a 500), and that the hub still works
afterwards: a submission waiting at the emulator is not fetched because of the hostile callback, and a
genuine callback then makes the hub fetch it, deliver it and accept it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from channels.fitconnect import callback_signature
from hub import store
from tests.hostile.fitconnect_world import CALLBACK_SECRET, World, world
from tests.support import wait_for
from xhub.runtime import build_app, serve_in_thread

pytestmark = pytest.mark.slow

NOTICE = b'{"type":"https://schema.fitko.de/fit-connect/submission-api/callbacks/new-submissions","submissionIds":[]}'


@dataclass
class Hub:
    world: World
    url: str
    http: httpx.Client

    def post(self, body: bytes | Iterator[bytes] | None = None, *,
             headers: dict[str, str | bytes] | None = None) -> httpx.Response:
        return self.http.post(f"{self.url}/api/v1/fitconnect/callback", content=NOTICE if body is None else body,
                              headers=headers or {})

    def genuine(self, body: bytes = NOTICE) -> httpx.Response:
        return self.post(body, headers=signed(body))


def signed(body: bytes, stamp: int | None = None, secret: str = CALLBACK_SECRET) -> dict[str, str | bytes]:
    ts = str(int(time.time()) if stamp is None else stamp)
    return {"callback-timestamp": ts, "callback-authentication": callback_signature(secret, ts, body)}


@pytest.fixture(scope="module")
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    # The emulator's own callbacks go to a port nobody serves: only the test's callbacks wake the poller.
    with world(request, tmp_path_factory, "sqlite") as w, \
            serve_in_thread(build_app(w.config, w.engine, embedded_worker=True)) as url, \
            httpx.Client(timeout=10) as http:
        yield Hub(w, url, http)


def assert_problem(r: httpx.Response, status: int, slug: str, text: str = "") -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == f"urn:xoev-hub:problem:{slug}" and text in body["detail"], body


def still_works(hub: Hub, hostile: httpx.Response) -> None:
    """A submission waiting meanwhile was not fetched because of ``hostile``; a genuine callback fetches it."""
    w = hub.world
    waiting = w.sender.good()
    time.sleep(0.05)  # had the hostile callback woken the poller, it would be fetching now
    assert waiting.submission_id in w.pending_at_emulator(), hostile.text
    notice = NOTICE.replace(b"[]", f'["{waiting.submission_id}"]'.encode())  # unique, as a real one would be
    assert hub.genuine(notice).json() == {"status": "ok", "action": "poll triggered"}
    wait_for(lambda: w.sender.decisions(waiting.case_id), timeout=30, interval=0.01)
    # the decision reaches the emulator just before the hub commits its end state: wait for that commit too
    wait_for(lambda: getattr(w.message(waiting.submission_id), "status", None) in {"acknowledged", "rejected"},
             timeout=30, interval=0.01)
    w.assert_accepted(waiting)


def _ts(value: str | bytes) -> dict[str, str | bytes]:
    return {"callback-timestamp": value, "callback-authentication": "0" * 128}


def _mac(value: str | bytes) -> dict[str, str | bytes]:
    return {"callback-timestamp": str(int(time.time())), "callback-authentication": value}


MALFORMED: dict[str, dict[str, str | bytes]] = {
    "timestamp a word": _ts("soon"),
    "timestamp negative": _ts("-1700000000"),
    "timestamp with an exponent": _ts("1.7e9"),
    "timestamp with a fraction": _ts("1700000000.5"),
    "timestamp in hex": _ts("0x6553F100"),
    "timestamp of 13 digits": _ts("9" * 13),
    "timestamp of 40 digits": _ts("1" * 40),
    "timestamp in Arabic-Indic digits": _ts(("\u0661\u0667" + "\u0660" * 8).encode()),  # str.isdigit(): yes
    "timestamp in superscript digits": _ts(("\u00b9\u2077" + "\u2070" * 8).encode()),
    "timestamp with a latin-1 byte": _ts(b"17000\xff0000"),
    # latin-1 superscripts: the server decodes header bytes as latin-1, and "\u00b9\u00b2".isdigit() is true
    "timestamp in latin-1 superscripts": _ts(b"\xb9\xb2\xb3" * 3),
    "authentication not hex": _mac("zz" * 64),
    "authentication of 127 hex digits": _mac("a" * 127),
    "authentication of 129 hex digits": _mac("a" * 129),
    "authentication the length of a SHA-256": _mac("a" * 64),
    "authentication of 8 kB": _mac("a" * 8192),
    "authentication with non-ASCII": _mac(("é" * 128).encode()),
}


@pytest.mark.parametrize("headers", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_headers_are_a_400_before_any_hmac(hub: Hub, headers: dict[str, str | bytes]) -> None:
    r = hub.post(headers=headers)
    assert_problem(r, 400, "callback-malformed")
    still_works(hub, r)


REFUSED: dict[str, tuple[Callable[[], tuple[bytes, dict[str, str | bytes]]], str]] = {  # made when the test runs
    "no headers": (lambda: (NOTICE, {}), "missing"),
    "no authentication": (lambda: (NOTICE, {"callback-timestamp": str(int(time.time()))}), "missing"),
    "an hour old": (lambda: (NOTICE, signed(NOTICE, int(time.time()) - 3600)), "300 s"),
    "an hour ahead": (lambda: (NOTICE, signed(NOTICE, int(time.time()) + 3600)), "300 s"),
    "timestamp zero": (lambda: (NOTICE, signed(NOTICE, 0)), "300 s"),
    "wrong secret": (lambda: (NOTICE, signed(NOTICE, secret="not-the-secret-of-this-destination-at-all")),
                     "does not match"),
    "body altered after signing": (lambda: (NOTICE + b" ", signed(NOTICE)), "does not match"),
}


@pytest.mark.parametrize(("make", "why"), REFUSED.values(), ids=REFUSED.keys())
def test_forged_stale_or_unsigned_callbacks_are_a_401(
        hub: Hub, make: Callable[[], tuple[bytes, dict[str, str | bytes]]], why: str) -> None:
    body, headers = make()
    r = hub.post(body, headers=headers)
    assert_problem(r, 401, "callback-refused", why)
    still_works(hub, r)


def test_a_replayed_callback_is_a_401(hub: Hub) -> None:
    body = b'{"type": "https://schema.fitko.de/fit-connect/submission-api/callbacks/new-submissions", "n": 1}'
    headers = signed(body)
    assert hub.post(body, headers=headers).status_code == 200
    r = hub.post(body, headers=headers)
    assert_problem(r, 401, "callback-refused", "replayed")
    still_works(hub, r)


def test_a_body_over_the_limit_is_a_413_by_its_content_length(hub: Hub) -> None:
    body = b'{"type": "x", "pad": "' + b"a" * 70_000 + b'"}'
    r = hub.post(body, headers=signed(body))
    assert_problem(r, 413, "payload-too-large")
    still_works(hub, r)


def test_a_chunked_body_over_the_limit_is_a_413_while_reading(hub: Hub) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"a" * 1024

    r = hub.post(chunks(), headers=_mac("a" * 128))
    assert_problem(r, 413, "payload-too-large")
    still_works(hub, r)


AUTHENTIC_BUT_WRONG: dict[str, bytes] = {
    "not JSON": b"new submissions, please poll",
    "empty": b"",
    "a JSON array": b'["new-submissions"]',
    "type not a string": b'{"type": ["new-submissions"]}',
    "nested 5000 deep": b'{"type": "x", "a": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "a 5000-digit number": b'{"type": "x", "n": ' + b"9" * 5000 + b"}",
    "duplicate keys": b'{"type": "x", "type": "y"}',
    "NaN": b'{"type": "x", "n": NaN}',
    "not UTF-8": b'{"type": "\xff"}',
}


@pytest.mark.parametrize("body", AUTHENTIC_BUT_WRONG.values(), ids=AUTHENTIC_BUT_WRONG.keys())
def test_an_authentic_callback_that_is_not_a_notice_is_a_400(hub: Hub, body: bytes) -> None:
    r = hub.post(body, headers=signed(body))
    assert_problem(r, 400, "callback-malformed")
    still_works(hub, r)


def test_only_post_is_allowed(hub: Hub) -> None:
    r = hub.http.get(f"{hub.url}/api/v1/fitconnect/callback")
    assert_problem(r, 405, "method-not-allowed")
    still_works(hub, r)


def test_hex_case_does_not_matter(hub: Hub) -> None:
    body = b'{"type": "https://schema.fitko.de/fit-connect/submission-api/callbacks/new-submissions", "n": 2}'
    headers = signed(body)
    headers["callback-authentication"] = str(headers["callback-authentication"]).upper()
    assert hub.post(body, headers=headers).json() == {"status": "ok", "action": "poll triggered"}


def test_every_callback_above_left_nothing_waiting(hub: Hub) -> None:
    assert hub.world.pending_at_emulator() == []
    statuses = {m.status for m in store.list_messages(hub.world.engine, limit=10_000)}
    assert statuses == {"acknowledged"}, statuses
