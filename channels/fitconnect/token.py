"""The Submission API's OAuth2 client-credentials token: the shared cache, configured from FitConnectConfig.

The cache (:class:`hub.http_support.TokenCache`) reads the token endpoint's answer with a cap and parses
it with :func:`hub.jsonsafe.loads`; an answer that is too large or malformed is the delivery service's fault and
:class:`~hub.errors.Retriable`, like a 5xx.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from channels.fitconnect.config import FitConnectConfig
from hub.http_support import TokenCache as _TokenCache

__all__ = ["TokenCache"]


class TokenCache(_TokenCache):
    def __init__(self, config: FitConnectConfig, client: httpx.Client,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(token_url=config.token_url, client_id=config.client_id, client_secret=config.client_secret,
                         scope=config.scope, refresh_margin_seconds=config.token_refresh_margin_seconds,
                         client=client, clock=clock)
