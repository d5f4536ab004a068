"""The one HTTP status table: what an answer means for a delivery, and how long ``Retry-After`` asks to wait.

Every adapter that talks HTTP (REST, SOAP, the OAuth2 token endpoint, the FIT-Connect Submission API)
classifies a status here, so that the same answer never means "retry" to one and "give up" to another.

=========  ==========  ===========================================================================
status     outcome     why
=========  ==========  ===========================================================================
1xx        permanent   not a final answer; an HTTP client only sees one when the server is broken
2xx        success     (callers may give one a special meaning, e.g. REST: 202 is "accepted")
3xx        permanent   redirects are never followed: a redirect to another host could carry the body
                       and the credentials there; the target's URL must be fixed in the configuration
408        retriable   Request Timeout: the server gave up waiting; sending again can succeed
425        retriable   Too Early: the server wants the request again later (TLS early data)
429        retriable   Too Many Requests: rate limited; ``Retry-After`` says when to come back
other 4xx  permanent   the request is wrong for this target (auth, not found, refused content, 409 …);
                       sending the same bytes again gets the same answer
500        retriable   Internal Server Error: usually a passing fault (SOAP uses it for faults, whose
                       code is then what counts)
501        permanent   Not Implemented: the server does not support the method; retrying cannot help
502-504    retriable   Bad Gateway, Service Unavailable, Gateway Timeout: the target is not reachable
                       behind its proxy right now
505        permanent   HTTP Version Not Supported: the server will never speak our protocol
506        permanent   Variant Also Negotiates: the server's content negotiation is misconfigured
507        retriable   Insufficient Storage: the target's disk is full; space can be freed
508        permanent   Loop Detected: the server's resource graph loops; it will loop again
510        permanent   Not Extended: the request needs extensions we do not send
511        permanent   Network Authentication Required: a captive portal sits in the way; an
                       administrator has to sign the network in, retrying does not
520-527    retriable   CDN (Cloudflare-style) codes for an origin that is down, unreachable, timing out
                       or failing its TLS handshake: they heal when the origin comes back
other 5xx  retriable   server-side trouble (RFC 9110 §15: an unknown code is treated as the x00 of its
                       class, i.e. as 500)
<100, 6xx+ permanent   not an HTTP status
=========  ==========  ===========================================================================

``Retry-After`` (RFC 9110 §10.2.3) is honoured in both forms, delta-seconds (ASCII digits only) and an
HTTP date (always GMT; a date in the past means "now"). Anything else is ignored: the retry policy's own
backoff applies. The result is capped at :data:`RETRY_AFTER_CAP_SECONDS` so that a target cannot park a
message for years.

The FIT-Connect Submission API uses :data:`RETRIABLE` as its set of transient statuses.
"""

from __future__ import annotations

import email.utils
import enum
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from hub.errors import Permanent, Retriable

__all__ = ["RETRIABLE", "RETRY_AFTER_CAP_SECONDS", "Outcome", "Verdict", "classify_status", "raise_for_status",
           "retry_after_seconds"]

#: No ``Retry-After`` can push a retry further out than this (one day).
RETRY_AFTER_CAP_SECONDS = 24 * 3600.0
_DELTA_SECONDS = re.compile(r"[0-9]{1,12}")


class Outcome(enum.Enum):
    SUCCESS = "success"
    RETRIABLE = "retriable"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class Verdict:
    """What a status means: the outcome and, for the audit trail, why."""

    status: int
    outcome: Outcome
    why: str

    @property
    def retriable(self) -> bool:
        return self.outcome is Outcome.RETRIABLE


_EXCEPTIONS: dict[int, tuple[Outcome, str]] = {
    408: (Outcome.RETRIABLE, "request timeout: sending again can succeed"),
    425: (Outcome.RETRIABLE, "too early: the server wants the request again later"),
    429: (Outcome.RETRIABLE, "rate limited"),
    501: (Outcome.PERMANENT, "not implemented: the server does not support this method"),
    505: (Outcome.PERMANENT, "HTTP version not supported"),
    506: (Outcome.PERMANENT, "variant also negotiates: the server is misconfigured"),
    507: (Outcome.RETRIABLE, "insufficient storage: the target's disk is full"),
    508: (Outcome.PERMANENT, "loop detected on the server"),
    510: (Outcome.PERMANENT, "not extended: the request needs extensions the hub does not send"),
    511: (Outcome.PERMANENT, "network authentication required (a captive portal is in the way)"),
}


def classify_status(status: int) -> Verdict:
    """The row of the table in this module's docstring for ``status``."""
    if status in _EXCEPTIONS:
        outcome, why = _EXCEPTIONS[status]
        return Verdict(status, outcome, why)
    if 200 <= status < 300:
        return Verdict(status, Outcome.SUCCESS, "success")
    if 300 <= status < 400:
        return Verdict(status, Outcome.PERMANENT, "redirect; redirects are not followed")
    if 400 <= status < 500:
        return Verdict(status, Outcome.PERMANENT, "the target refused the request")
    if 520 <= status <= 527:
        return Verdict(status, Outcome.RETRIABLE, "the target's origin server is down or unreachable (CDN)")
    if 500 <= status < 600:
        return Verdict(status, Outcome.RETRIABLE, "server error")
    if 100 <= status < 200:
        return Verdict(status, Outcome.PERMANENT, "an informational status is not a final answer")
    return Verdict(status, Outcome.PERMANENT, "not an HTTP status")


#: Every status (100-599) the table calls retriable.
RETRIABLE = frozenset(s for s in range(100, 600) if classify_status(s).retriable)


def retry_after_seconds(value: str | None, *, now: float | None = None,
                        cap: float = RETRY_AFTER_CAP_SECONDS) -> float | None:
    """Seconds to wait from a ``Retry-After`` value; ``None`` when absent or not understood."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if _DELTA_SECONDS.fullmatch(value):
        return min(float(value), cap)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" or no zone: an HTTP date is GMT by definition
        when = when.replace(tzinfo=UTC)
    try:
        delta = when.timestamp() - (time.time() if now is None else now)
    except (OverflowError, OSError, ValueError):
        return None
    return min(max(0.0, delta), cap)


def raise_for_status(status: int, headers: Mapping[str, str], message: str,
                     detail: dict[str, Any] | None = None) -> Verdict:
    """Return the verdict for a success; raise :class:`Retriable` (with ``Retry-After``) or :class:`Permanent`.

    ``message`` says who answered (``"POST https://… answered 503"``); the table's reason is appended.
    """
    verdict = classify_status(status)
    if verdict.outcome is Outcome.SUCCESS:
        return verdict
    text = f"{message} ({verdict.why})"
    if verdict.retriable:
        raise Retriable(text, retry_after=retry_after_seconds(headers.get("retry-after")), detail=detail)
    raise Permanent(text, detail=detail)
