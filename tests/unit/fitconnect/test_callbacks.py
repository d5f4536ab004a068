"""Callbacks: good, forged, stale, replayed."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from channels.fitconnect import CallbackMalformed, CallbackRefused, ReplayGuard, callback_signature, verify_callback

SECRET = "insecure_unsafe_qHScgrg_kP-R31jHUwp3GkVkGJolvBchz65b74Lzue0"
BODY = b'{"type":"https://schema.fitko.de/fit-connect/submission-api/callbacks/new-submissions","submissions":[]}'
NOW = 1_700_000_000.0


def signed(stamp: int = int(NOW), body: bytes = BODY, secret: str = SECRET) -> tuple[str, str]:
    return str(stamp), callback_signature(secret, str(stamp), body)


def test_signature_is_hmac_sha512_over_timestamp_dot_body() -> None:
    stamp, mac = signed()
    assert mac == hmac.new(SECRET.encode(), f"{stamp}.".encode() + BODY, hashlib.sha512).hexdigest()


def test_good_callback() -> None:
    stamp, mac = signed()
    verify_callback(SECRET, stamp, mac, BODY, now=NOW, seen=ReplayGuard())
    verify_callback(SECRET, stamp, mac.upper(), BODY, now=NOW + 299)  # hex case does not matter


@pytest.mark.parametrize("headers, reason", [
    ((None, "ab"), "missing"),
    (("1700000000", None), "missing"),
    (("soon", "ab"), "unix seconds"),
])
def test_missing_or_odd_headers(headers: tuple[str | None, str | None], reason: str) -> None:
    with pytest.raises(CallbackRefused, match=reason):
        verify_callback(SECRET, headers[0], headers[1], BODY, now=NOW)


@pytest.mark.parametrize("case", ["wrong secret", "altered body"])
def test_forged(case: str) -> None:
    stamp, mac = signed(secret="another-secret") if case == "wrong secret" else signed()
    body = BODY + b" " if case == "altered body" else BODY
    with pytest.raises(CallbackRefused, match="does not match"):
        verify_callback(SECRET, stamp, mac, body, now=NOW)


@pytest.mark.parametrize("stamp, mac, reason", [
    ("1700000000", "zz-not-hex", "128 hexadecimal"),
    ("1700000000", "a" * 127, "128 hexadecimal"),
    ("\u0661\u0667\u0660\u0660", "a" * 128, "ASCII digits"),  # Arabic-Indic digits: str.isdigit() says yes
    ("-1700000000", "a" * 128, "ASCII digits"),
    ("9" * 13, "a" * 128, "ASCII digits"),
])
def test_malformed_headers_are_refused_before_the_hmac(stamp: str, mac: str, reason: str) -> None:
    with pytest.raises(CallbackMalformed, match=reason):
        verify_callback(SECRET, stamp, mac, BODY, now=NOW)


@pytest.mark.parametrize("offset", [-301, 301])
def test_stale_or_from_the_future(offset: int) -> None:
    stamp, mac = signed(int(NOW) + offset)
    with pytest.raises(CallbackRefused, match="300 s"):
        verify_callback(SECRET, stamp, mac, BODY, now=NOW)


def test_replayed() -> None:
    guard = ReplayGuard()
    stamp, mac = signed()
    verify_callback(SECRET, stamp, mac, BODY, now=NOW, seen=guard)
    with pytest.raises(CallbackRefused, match="replayed"):
        verify_callback(SECRET, stamp, mac, BODY, now=NOW + 10, seen=guard)
    later, other = signed(int(NOW) + 20)
    verify_callback(SECRET, later, other, BODY, now=NOW + 20, seen=guard)  # a new callback is fine


def test_replay_memory_is_bounded() -> None:
    guard = ReplayGuard(window_seconds=600, max_entries=3)
    for i in range(10):
        assert guard.check_and_remember(f"m{i}", NOW)
    assert guard.check_and_remember("m0", NOW)  # evicted: bounded memory wins over an ancient replay
    assert not guard.check_and_remember("m9", NOW)


def test_no_secret_configured() -> None:
    stamp, mac = signed()
    with pytest.raises(CallbackRefused, match="no callback secret"):
        verify_callback("", stamp, mac, BODY, now=NOW)
