"""Verifying FIT-Connect callbacks (the delivery service's push "new submissions" / "new events").

The delivery service POSTs JSON with two headers: ``callback-timestamp`` (unix seconds) and
``callback-authentication`` = lowercase hex HMAC-SHA512 over ``"<timestamp>.<raw body>"`` keyed with the
callback secret. We refuse a callback whose headers are missing, whose timestamp is more than five minutes
off, whose MAC does not match (compared in constant time), or whose MAC was already seen within the
window (a replay). A callback only triggers a poll: polling stays the source of truth.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict

__all__ = ["MAX_SKEW_SECONDS", "CallbackRefused", "ReplayGuard", "callback_signature", "verify_callback"]

MAX_SKEW_SECONDS = 300


class CallbackRefused(Exception):
    """The callback is not from our delivery service (or is stale or replayed). ``reason`` is loggable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
    if not stamp.isdigit() or len(stamp) > 12:
        raise CallbackRefused("callback-timestamp is not unix seconds")
    moment = time.time() if now is None else now
    if abs(moment - int(stamp)) > MAX_SKEW_SECONDS:
        raise CallbackRefused(f"callback-timestamp {stamp} is more than {MAX_SKEW_SECONDS} s from now")
    expected = callback_signature(secret, stamp, body)
    given = authentication.strip().lower()
    if not hmac.compare_digest(expected.encode("ascii"), given.encode("ascii", "replace")):
        raise CallbackRefused("callback-authentication does not match (wrong secret or altered body)")
    if seen is not None and not seen.check_and_remember(given, moment):
        raise CallbackRefused("callback replayed (same authentication seen within the window)")
