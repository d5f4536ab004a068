"""HTTP client pieces the adapters and channels share: the OAuth2 client-credentials token cache and URLs fit
for messages.

Statuses are classified in :mod:`hub.http_status` (``retry_after_seconds`` is re-exported here for
the modules that import it from this one).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from pydantic import SecretStr

from hub.errors import Permanent, Retriable
from hub.http_status import raise_for_status, retry_after_seconds
from hub.jsonsafe import JsonLimits, JsonRejected, loads

__all__ = ["BEARER_TOKEN", "TokenCache", "TooLarge", "declared_length", "read_capped", "redact_url",
           "retry_after_seconds", "transport_problem"]

#: RFC 6750 §2.1 b64token: what may follow ``Bearer``. Anything else would break the header (and httpx
#: would quote the offending value, the secret, in its exception).
BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def transport_problem(exc: httpx.TransportError) -> str:
    """A transport error for the audit trail. Errors about our own request (``LocalProtocolError``) quote
    header values, which may be credentials: only their type is shown."""
    if isinstance(exc, httpx.LocalProtocolError | httpx.UnsupportedProtocol):
        return type(exc).__name__
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def redact_url(url: str | httpx.URL) -> str:
    """``url`` for an error message or the audit trail: no password, no query values.

    ``https://user:pw@host/p?key=s3cret&wsdl`` becomes ``https://user:***@host/p?key=***&wsdl``. Anything
    that cannot be parsed is shown as ``(unparseable URL)``; it might be a secret.
    """
    try:
        parts = urlsplit(str(url))
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
        query = urlencode([(k, "***" if v else "") for k, v in parse_qsl(parts.query, keep_blank_values=True)],
                          safe="*").replace("=&", "&").removesuffix("=")
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "(unparseable URL)"


class TokenCache:
    """An OAuth2 client-credentials access token, shared by the threads of one process.

    Fetched again ``refresh_margin_seconds`` (at most half its lifetime) before it expires, and at once with
    ``token(renew=True)`` (after a 401: it may have been revoked). Token endpoint failures are mapped:
    transport errors are :class:`~hub.errors.Retriable`; 400, 401 and 403 are a refusal of the
    credentials (:class:`~hub.errors.Permanent`, with the OAuth2 ``error`` code); every other status
    follows :mod:`hub.http_status`. The client secret never appears in an error.
    """

    def __init__(self, *, token_url: str, client_id: str, client_secret: SecretStr, scope: str | None,
                 refresh_margin_seconds: float, client: httpx.Client,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.token_url, self.client_id, self.client_secret, self.scope = token_url, client_id, client_secret, scope
        self.refresh_margin_seconds, self.client, self.clock = refresh_margin_seconds, client, clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0

    def token(self, *, renew: bool = False) -> str:
        with self._lock:
            if renew or self._token is None or self.clock() >= self._refresh_at:
                token, lifetime = self._fetch()
                margin = min(self.refresh_margin_seconds, lifetime / 2)
                self._token, self._refresh_at = token, self.clock() + lifetime - margin
            return self._token

    def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self.client_secret.get_secret_value()}
        if self.scope:
            form["scope"] = self.scope
        where = f"token endpoint {redact_url(self.token_url)}"
        try:
            with self.client.stream("POST", self.token_url, data=form) as r:
                body = read_capped(r, _TOKEN_JSON.max_bytes, truncate=r.status_code != 200)
        except httpx.TransportError as exc:
            raise Retriable(f"{where}: {type(exc).__name__}") from None
        except TooLarge:  # the endpoint's fault, like a 5xx: never a reason to give a message up
            raise Retriable(f"{where} answered more than {_TOKEN_JSON.max_bytes} bytes") from None
        answer = _json_object(r, body)
        if r.status_code in _REFUSED:  # RFC 6749 §5.2: the client credentials (or the grant) were refused
            error = str(answer.get("error", ""))[:100]
            raise Permanent(f"{where} refused the client credentials of {self.client_id!r}: "
                            f"{r.status_code} {error}".strip())
        raise_for_status(r.status_code, r.headers, f"{where} answered {r.status_code}")
        token = answer.get("access_token")
        try:
            lifetime = float(answer.get("expires_in", 300))
        except (TypeError, ValueError):
            lifetime = -1.0
        if not isinstance(token, str) or not BEARER_TOKEN.fullmatch(token) or not lifetime > 0:
            # a broken answer from the endpoint heals when the endpoint is fixed: retry, as for a 5xx
            raise Retriable(f"{where} answered {r.status_code} without a usable access_token and expires_in")
        return token, max(1.0, min(lifetime, _MAX_LIFETIME))


_REFUSED = frozenset({400, 401, 403})
_MAX_LIFETIME = 24 * 3600.0  # an "expires_in" of years would keep a revoked token in use
_TOKEN_JSON = JsonLimits(max_bytes=64 * 1024, max_depth=8, max_string_chars=16 * 1024)


def _json_object(response: httpx.Response, body: bytes) -> dict[str, Any]:
    """The token endpoint's JSON object, or ``{}`` when it sent anything else."""
    if "json" not in response.headers.get("content-type", ""):
        return {}
    try:
        value = loads(body, _TOKEN_JSON)
    except JsonRejected:
        return {}
    return value if isinstance(value, dict) else {}


class TooLarge(Exception):
    """A download is larger than the limit; the caller decides what that means."""


def declared_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length", "").strip()
    return int(value) if value.isascii() and value.isdigit() else None


def read_capped(response: httpx.Response, limit: int, *, truncate: bool = False) -> bytes:
    """Read a streamed body of at most ``limit`` bytes (decoded). Over it: :class:`TooLarge`, or with
    ``truncate`` the first ``limit`` bytes. ``Content-Length`` is checked before anything is read."""
    declared = declared_length(response)
    if declared is not None and declared > limit and not truncate:
        raise TooLarge(f"the answer announces {declared} bytes; the limit is {limit}")
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limit:
            if truncate:
                return bytes(body[:limit])
            raise TooLarge(f"the answer is larger than {limit} bytes")
    return bytes(body)
