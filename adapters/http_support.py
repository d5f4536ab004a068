"""HTTP pieces the adapters share: ``Retry-After`` parsing and the OAuth2 client-credentials token cache."""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable

import httpx
from pydantic import SecretStr

from hub.errors import Permanent, Retriable

__all__ = ["TokenCache", "retry_after_seconds"]


def retry_after_seconds(value: str | None) -> float | None:
    """Parse ``Retry-After`` (delta-seconds or HTTP date) into seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class TokenCache:
    """An OAuth2 client-credentials access token, shared by the threads of one process.

    Fetched again ``refresh_margin_seconds`` (at most half its lifetime) before it expires, and at once with
    ``token(renew=True)`` (after a 401: it may have been revoked). Token endpoint failures are mapped:
    transport errors, 408, 429 and 5xx are :class:`~hub.errors.Retriable`; a refusal is
    :class:`~hub.errors.Permanent`. The client secret never appears in an error.
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
        where = f"token endpoint {self.token_url}"
        try:
            r = self.client.post(self.token_url, data=form)
        except httpx.TransportError as exc:
            raise Retriable(f"{where}: {type(exc).__name__}") from None
        if r.status_code >= 500 or r.status_code in (408, 429):
            raise Retriable(f"{where} answered {r.status_code}",
                            retry_after=retry_after_seconds(r.headers.get("retry-after")))
        if r.status_code != 200:
            error = ""
            if "json" in r.headers.get("content-type", ""):
                try:
                    error = str(r.json().get("error", ""))
                except (ValueError, AttributeError):
                    error = ""
            raise Permanent(f"{where} refused the client credentials of {self.client_id!r}: "
                            f"{r.status_code} {error}".strip())
        try:
            body = r.json()
            return str(body["access_token"]), max(1.0, float(body.get("expires_in", 300)))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise Permanent(f"{where} answered 200 without a usable access_token") from None
