"""REST adapter (httpx): one request per delivery, with an idempotency key, auth and mutual TLS.

Responses are classified by :func:`classify` with the hub's one status table (:mod:`hub.http_status`):
2xx is delivered, and so is 409 here (the target already has a case with this idempotency key); 408, 425,
429 and most 5xx are transient (``Retry-After`` honoured); 3xx (redirects are never followed), 501, 505
and every other 4xx are permanent. Transport errors (refused, reset, TLS, timeouts) are transient.
httpx exceptions never leave this module, and URLs in messages have their password and query values
removed.

Auth, one of: ``bearer_token``; ``basic`` (username, password); ``oauth2`` client credentials, with the
access token cached until shortly before it expires and fetched again once when the target answers 401.
"""

from __future__ import annotations

import ssl
import string
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import httpx
from pydantic import Field, SecretStr, field_validator, model_validator

from hub.errors import Permanent, Retriable
from hub.http_status import raise_for_status
from hub.http_support import BEARER_TOKEN, TokenCache, redact_url, retry_after_seconds, transport_problem
from hub.ports import AdapterConfig, DeliveryRequest, DeliveryResult

__all__ = ["RestAdapter", "RestConfig", "classify", "retry_after_seconds"]

EXCERPT = 500
#: Placeholders a URL template may use; values are URL-quoted.
URL_FIELDS = {"message_id", "target", "idempotency_key", "tenant", "standard", "message_type", "xoev_message_uuid"}


class BasicAuth(AdapterConfig):
    username: str
    password: SecretStr


class OAuth2ClientCredentials(AdapterConfig):
    token_url: str = Field(pattern=r"^https?://")
    client_id: str
    client_secret: SecretStr
    scope: str | None = None
    refresh_margin_seconds: float = Field(30.0, ge=0, description="fetch a new token this long before expiry")


class RestConfig(AdapterConfig):
    url: str = Field(pattern=r"^https?://", description="may use {message_id}, {tenant}, {message_type}, …")
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    timeout_seconds: float = Field(30.0, gt=0)
    connect_timeout_seconds: float = Field(5.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    idempotency_header: str = "Idempotency-Key"
    bearer_token: SecretStr | None = None
    basic: BasicAuth | None = None
    oauth2: OAuth2ClientCredentials | None = None
    client_cert: Path | None = Field(None, description="PEM certificate for mutual TLS")
    client_key: Path | None = Field(None, description="PEM private key for mutual TLS")
    ca_bundle: Path | None = Field(None, description="PEM CAs to trust instead of the system store")

    @field_validator("url")
    @classmethod
    def _template(cls, url: str) -> str:
        names = {name for _, name, _, _ in string.Formatter().parse(url) if name is not None}
        unknown = names - URL_FIELDS
        if unknown:
            raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; allowed: {sorted(URL_FIELDS)}")
        return url

    @field_validator("bearer_token")
    @classmethod
    def _token_chars(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and not BEARER_TOKEN.fullmatch(token.get_secret_value()):
            raise ValueError("a bearer token is letters, digits and -._~+/ (optionally = at the end)")
        return token

    @model_validator(mode="after")
    def _one_auth(self) -> RestConfig:
        given = [n for n in ("bearer_token", "basic", "oauth2") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"choose one way to authenticate, not {' and '.join(given)}")
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("mutual TLS needs both client_cert and client_key")
        return self


def classify(response: httpx.Response) -> DeliveryResult:
    """Delivered → result; otherwise raise the mapped error kind."""
    status = response.status_code
    excerpt = response.text[:EXCERPT] if response.content else ""
    detail: dict[str, Any] = {"status_code": status, "excerpt": excerpt}
    reason = f"{response.request.method} {redact_url(response.request.url)} answered {status}"
    if 300 <= status < 400 and "location" in response.headers:
        detail["location"] = redact_url(response.headers["location"])
        reason += f" (a redirect to {detail['location']})"
    if status != 409:  # 409 Conflict: the target already has this key, which is what a retry wanted
        raise_for_status(status, response.headers, reason, detail)
    reference = response.headers.get("location") or response.headers.get("x-case-id")
    return DeliveryResult(reference=reference, status_code=status, excerpt=excerpt)


class RestAdapter:
    name: ClassVar[str] = "rest"
    Config: ClassVar[type[AdapterConfig]] = RestConfig

    def __init__(self, config: RestConfig) -> None:
        self.config = config
        timeout = httpx.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds)
        self._client = httpx.Client(timeout=timeout, follow_redirects=False, verify=self._tls(config))
        self._tokens = None
        if config.oauth2 is not None:
            o = config.oauth2
            self._tokens = TokenCache(token_url=o.token_url, client_id=o.client_id, client_secret=o.client_secret,
                                      scope=o.scope, refresh_margin_seconds=o.refresh_margin_seconds,
                                      client=self._client)

    @staticmethod
    def _tls(config: RestConfig) -> ssl.SSLContext | bool:
        if config.client_cert is None and config.ca_bundle is None:
            return True
        try:
            context = ssl.create_default_context(cafile=str(config.ca_bundle) if config.ca_bundle else None)
            if config.client_cert is not None and config.client_key is not None:
                context.load_cert_chain(str(config.client_cert), str(config.client_key))
        except (OSError, ssl.SSLError) as exc:
            raise Permanent(f"cannot load the TLS material: {exc}") from None
        return context

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        fields = {"message_id": request.message_id, "target": request.target,
                  "idempotency_key": request.idempotency_key, **request.meta}
        url = self.config.url.format_map({k: quote(str(fields.get(k) or ""), safe="") for k in URL_FIELDS})
        headers = {**self.config.headers, "Content-Type": request.content_type,
                   self.config.idempotency_header: request.idempotency_key, "X-Xhub-Message-Id": request.message_id}
        response = self._send(url, request.body, headers, renew=False)
        if response.status_code == 401 and self._tokens is not None:
            response = self._send(url, request.body, headers, renew=True)  # the token may have been revoked
        return classify(response)

    def _send(self, url: str, body: bytes, headers: dict[str, str], *, renew: bool) -> httpx.Response:
        auth: httpx.Auth | None = None
        if self.config.bearer_token is not None:
            headers = {**headers, "Authorization": f"Bearer {self.config.bearer_token.get_secret_value()}"}
        elif self._tokens is not None:
            headers = {**headers, "Authorization": f"Bearer {self._tokens.token(renew=renew)}"}
        elif self.config.basic is not None:
            auth = httpx.BasicAuth(self.config.basic.username, self.config.basic.password.get_secret_value())
        try:
            return self._client.request(self.config.method, url, content=body, headers=headers, auth=auth)
        except httpx.TimeoutException as exc:
            raise Retriable(f"{redact_url(url)}: timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise Retriable(f"{redact_url(url)}: {transport_problem(exc)}") from None

    def close(self) -> None:
        self._client.close()
