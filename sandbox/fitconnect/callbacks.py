"""Callbacks (push notifications) of the delivery service, authenticated with an HMAC.

Headers: ``callback-timestamp`` (unix seconds) and ``callback-authentication``, the lowercase hex
HMAC-SHA512 over ``"<callback-timestamp>.<raw body>"`` with the callback secret. A failed delivery is
logged and forgotten: polling is the source of truth, as in FIT-Connect.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

__all__ = ["NEW_EVENTS", "NEW_SUBMISSIONS", "Callback", "deliver", "sign"]

log = logging.getLogger(__name__)

NEW_SUBMISSIONS = "https://schema.fitko.de/fit-connect/submission-api/callbacks/new-submissions"
NEW_EVENTS = "https://schema.fitko.de/fit-connect/submission-api/callbacks/new-events"
TIMEOUT_SECONDS = 5.0


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``callback-authentication`` for ``body`` sent at ``timestamp``."""
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha512).hexdigest()


@dataclass(frozen=True)
class Callback:
    """One notification to send: ``kind`` is :data:`NEW_SUBMISSIONS` or :data:`NEW_EVENTS`."""

    url: str
    secret: str
    kind: str
    submissions: Sequence[tuple[str, str, str]]  # (destinationId, submissionId, caseId)

    def body(self) -> bytes:
        return json.dumps({
            "type": self.kind,
            "submissionIds": [s for _, s, _ in self.submissions],
            "submissions": [{"destinationId": d, "submissionId": s, "caseId": c} for d, s, c in self.submissions],
        }, separators=(",", ":")).encode()


def deliver(callback: Callback) -> bool:
    """POST ``callback`` once; True when the receiver answered 2xx. Never raises for the receiver's faults."""
    body = callback.body()
    timestamp = int(time.time())
    headers = {"content-type": "application/json", "callback-timestamp": str(timestamp),
               "callback-authentication": sign(callback.secret, timestamp, body)}
    try:
        response = httpx.post(callback.url, content=body, headers=headers, timeout=TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        log.warning("callback to %s failed: %s: %s", callback.url, type(exc).__name__, exc)
        return False
    if not response.is_success:
        log.warning("callback to %s answered %s", callback.url, response.status_code)
        return False
    log.info("callback %s delivered to %s", callback.kind.rsplit("/", 1)[-1], callback.url)
    return True
