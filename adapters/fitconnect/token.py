"""The Submission API's OAuth2 client-credentials token: the shared cache, configured from FitConnectConfig.

The token endpoint's answer is read with a cap and parsed by :func:`hub.jsonsafe.loads`; an answer that is
too large or malformed is the delivery service's fault and :class:`~hub.errors.Retriable`, like a 5xx.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import httpx

from adapters.fitconnect.api import TooLarge, read_capped
from adapters.fitconnect.config import FitConnectConfig
from adapters.http_support import TokenCache as _TokenCache
from adapters.http_support import retry_after_seconds
from hub.errors import Permanent, Retriable
from hub.jsonsafe import JsonLimits, JsonRejected, loads

__all__ = ["TokenCache"]

_ANSWER_MAX = 64 * 1024  # an access token answer is a few hundred bytes
_LIMITS = JsonLimits(max_bytes=_ANSWER_MAX, max_depth=8, max_string_chars=_ANSWER_MAX)


class TokenCache(_TokenCache):
    def __init__(self, config: FitConnectConfig, client: httpx.Client,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(token_url=config.token_url, client_id=config.client_id, client_secret=config.client_secret,
                         scope=config.scope, refresh_margin_seconds=config.token_refresh_margin_seconds,
                         client=client, clock=clock)

    def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self.client_secret.get_secret_value()}
        if self.scope:
            form["scope"] = self.scope
        where = f"token endpoint {self.token_url}"
        try:
            with self.client.stream("POST", self.token_url, data=form) as r:
                body = read_capped(r, _ANSWER_MAX, truncate=r.status_code != 200)
        except httpx.TransportError as exc:
            raise Retriable(f"{where}: {type(exc).__name__}") from None
        except TooLarge:
            raise Retriable(f"{where} answered more than {_ANSWER_MAX} bytes") from None
        if r.status_code >= 500 or r.status_code in (408, 429):
            raise Retriable(f"{where} answered {r.status_code}",
                            retry_after=retry_after_seconds(r.headers.get("retry-after")))
        try:
            answer = loads(body, _LIMITS) if body.strip() else None
        except JsonRejected:
            answer = None
        if r.status_code != 200:
            error = str(answer.get("error", ""))[:100] if isinstance(answer, dict) else ""
            raise Permanent(f"{where} refused the client credentials of {self.client_id!r}: "
                            f"{r.status_code} {error}".strip())
        token = answer.get("access_token") if isinstance(answer, dict) else None
        lifetime = answer.get("expires_in", 300) if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token or not isinstance(lifetime, int | float) \
                or isinstance(lifetime, bool) or not math.isfinite(lifetime):
            raise Retriable(f"{where} answered 200 without a usable access_token/expires_in")
        return token, max(1.0, float(lifetime))
