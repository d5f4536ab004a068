"""OAuth2 client-credentials access token, cached until shortly before it expires; thread-safe."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx

from adapters.fitconnect.api import retry_after
from adapters.fitconnect.config import FitConnectConfig
from hub.errors import Permanent, Retriable

__all__ = ["TokenCache"]


class TokenCache:
    """One token per process, shared by all threads. Refreshed ``token_refresh_margin_seconds`` (at most
    half its lifetime) before expiry; ``token(renew=True)`` forces a new one after a 401."""

    def __init__(self, config: FitConnectConfig, client: httpx.Client,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config, self.client, self.clock = config, client, clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0

    def token(self, *, renew: bool = False) -> str:
        with self._lock:
            if renew or self._token is None or self.clock() >= self._refresh_at:
                token, lifetime = self._fetch()
                margin = min(self.config.token_refresh_margin_seconds, lifetime / 2)
                self._token, self._refresh_at = token, self.clock() + lifetime - margin
            return self._token

    def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials", "client_id": self.config.client_id,
                "client_secret": self.config.client_secret.get_secret_value()}
        if self.config.scope:
            form["scope"] = self.config.scope
        where = f"token endpoint {self.config.token_url}"
        try:
            r = self.client.post(self.config.token_url, data=form)
        except httpx.TransportError as exc:
            raise Retriable(f"{where}: {type(exc).__name__}") from None
        if r.status_code >= 500 or r.status_code in (408, 429):
            raise Retriable(f"{where} answered {r.status_code}", retry_after=retry_after(r))
        if r.status_code != 200:
            error = ""
            if "json" in r.headers.get("content-type", ""):
                try:
                    error = str(r.json().get("error", ""))
                except (ValueError, AttributeError):
                    error = ""
            raise Permanent(f"{where} refused the client credentials of {self.config.client_id!r}: "
                            f"{r.status_code} {error}".strip())
        try:
            body = r.json()
            return str(body["access_token"]), max(1.0, float(body.get("expires_in", 300)))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise Permanent(f"{where} answered 200 without a usable access_token") from None
