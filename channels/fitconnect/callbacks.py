"""Verifying FIT-Connect callbacks (the delivery service's push "new submissions" / "new events").

The delivery service POSTs JSON with two headers: ``callback-timestamp`` (unix seconds) and
``callback-authentication`` = lowercase hex HMAC-SHA512 over ``"<timestamp>.<raw body>"`` keyed with the
callback secret. We refuse a callback whose headers are missing, whose timestamp is more than five minutes
off, whose MAC does not match (compared in constant time), or whose MAC was already seen within the
window (a replay). A callback only triggers a poll: polling stays the source of truth.

Shapes are checked before any HMAC is computed: the timestamp must be 1 to 12 ASCII digits (no sign, no
other scripts' digits, no exponent), the authentication exactly 128 hex characters.
:class:`CallbackMalformed` says a header is there but cannot be what the protocol sends.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections import OrderedDict

__all__ = ["MAX_SKEW_SECONDS", "CallbackMalformed", "CallbackRefused", "ReplayGuard", "callback_signature",
           "verify_callback"]

MAX_SKEW_SECONDS = 300
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_MAC = re.compile(r"[0-9a-fA-F]{128}")


class CallbackRefused(Exception):
    """The callback is not from our delivery service (or is stale or replayed). ``reason`` is loggable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CallbackMalformed(CallbackRefused):
    """A callback header is present but has a shape the protocol never sends (answer 400)."""


class ReplayGuard:
    """Remembers the MACs of accepted callbacks for the window; thread-safe, bounded."""

    def __init__(self, window_seconds: float = 2 * MAX_SKEW_SECONDS, max_entries: int = 100_000) -> None:
        self.window, self.max_entries = window_seconds, max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def check_and_remember(self, mac: str, now: float) -> bool:
        """True if ``mac`` is new (and now remembered); False if it was seen within the window."""
        with self._lock:
            while self._seen and (next(iter(self._seen.values())) < now - self.window
                                  or len(self._seen) >= self.max_entries):
                self._seen.popitem(last=False)
            if mac in self._seen:
                return False
            self._seen[mac] = now
            return True


def callback_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``callback-authentication`` value for ``body`` sent at ``timestamp`` (for senders and tests)."""
    return hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha512).hexdigest()


def verify_callback(secret: str, timestamp: str | None, authentication: str | None, body: bytes, *,
                    now: float | None = None, seen: ReplayGuard | None = None) -> None:
    """Raise :class:`CallbackRefused` unless the callback is authentic, fresh and new."""
    if not secret:
        raise CallbackRefused("no callback secret configured")
    if not timestamp or not authentication:
        raise CallbackRefused("callback-timestamp or callback-authentication header missing")
    stamp = timestamp.strip()
    if not _TIMESTAMP.fullmatch(stamp):
        raise CallbackMalformed("callback-timestamp is not unix seconds (1 to 12 ASCII digits)")
    given = authentication.strip().lower()
    if not _MAC.fullmatch(given):
        raise CallbackMalformed("callback-authentication is not an HMAC-SHA512 (128 hexadecimal characters)")
    moment = time.time() if now is None else now
    if abs(moment - int(stamp)) > MAX_SKEW_SECONDS:
        raise CallbackRefused(f"callback-timestamp {stamp} is more than {MAX_SKEW_SECONDS} s from now")
    expected = callback_signature(secret, stamp, body)
    if not hmac.compare_digest(expected.encode("ascii"), given.encode("ascii")):
        raise CallbackRefused("callback-authentication does not match (wrong secret or altered body)")
    if seen is not None and not seen.check_and_remember(given, moment):
        raise CallbackRefused("callback replayed (same authentication seen within the window)")
