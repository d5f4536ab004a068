"""HTTP sink: POSTs (or PUTs) the message to one URL with an ``Idempotency-Key`` header.

Responses are classified in one place, :func:`classify`: 2xx and 409 ("already have it") are delivered;
408, 425, 429 and 5xx are transient (``Retry-After`` honoured); every other status is permanent.
Transport errors (refused, reset, timeouts) are transient. httpx exceptions never leave this module.
"""

from __future__ import annotations

import email.utils
import time
from typing import ClassVar, Literal

import httpx
from pydantic import Field, SecretStr

from adapters.base import AdapterConfig, DeliveryRequest, DeliveryResult
from hub.errors import Permanent, Retriable

EXCERPT = 500
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


class HttpConfig(AdapterConfig):
    url: str = Field(pattern=r"^https?://")
    method: Literal["POST", "PUT"] = "POST"
    timeout_seconds: float = Field(30.0, gt=0)
    connect_timeout_seconds: float = Field(5.0, gt=0)
    bearer_token: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict)


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


def classify(response: httpx.Response) -> DeliveryResult:
    """Delivered → result; otherwise raise the mapped error kind."""
    excerpt = response.text[:EXCERPT] if response.content else ""
    detail = {"status_code": response.status_code, "excerpt": excerpt}
    if response.is_success or response.status_code == 409:
        reference = response.headers.get("location") or response.headers.get("x-case-id")
        return DeliveryResult(reference=reference, status_code=response.status_code, excerpt=excerpt)
    reason = f"{response.request.method} {response.request.url} answered {response.status_code}"
    if response.status_code in _TRANSIENT_STATUS:
        raise Retriable(reason, retry_after=retry_after_seconds(response.headers.get("retry-after")), detail=detail)
    raise Permanent(reason, detail=detail)


class HttpAdapter:
    name: ClassVar[str] = "http"
    Config: ClassVar[type[AdapterConfig]] = HttpConfig

    def __init__(self, config: HttpConfig) -> None:
        self.config = config
        timeout = httpx.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds)
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        headers = {
            **self.config.headers,
            "Content-Type": request.content_type,
            "Idempotency-Key": request.idempotency_key,
            "X-Xhub-Message-Id": request.message_id,
        }
        if self.config.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self.config.bearer_token.get_secret_value()}"
        try:
            response = self._client.request(self.config.method, self.config.url, content=request.body, headers=headers)
        except httpx.TimeoutException as exc:
            raise Retriable(f"{self.config.url}: timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise Retriable(f"{self.config.url}: {type(exc).__name__}: {exc}") from None
        return classify(response)

    def close(self) -> None:
        self._client.close()
