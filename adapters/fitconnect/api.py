"""The Submission API over HTTP: bearer token, response classification, rate limits, streamed downloads.

Responses are classified in one place, :meth:`SubmissionApi.check`:

* 2xx: fine. 401: the token is fetched again once, then :class:`~hub.errors.Permanent` (credentials).
* 408, 425, 429, 5xx and transport errors: :class:`~hub.errors.Retriable`, with ``retry_after`` from
  ``Retry-After`` or ``RateLimit-Reset`` (also the combined ``RateLimit: …, reset=n`` form).
* every other status: :class:`~hub.errors.Permanent`, the RFC 7807 ``type``/``title`` in the message.

When a response says ``RateLimit-Remaining: 0`` no further request is sent until the reset has passed:
calls raise :class:`~hub.errors.Deferred` (nothing was sent, no retry budget spent). httpx exceptions never
leave this module.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from adapters.http_support import retry_after_seconds
from hub.errors import Deferred, Permanent, Retriable

__all__ = ["TRANSIENT", "SubmissionApi", "TooLarge", "retry_after"]

TRANSIENT = frozenset({408, 425, 429, 500, 502, 503, 504})
_EXCERPT = 300


class TooLarge(Exception):
    """A download is larger than the limit; the caller decides what that means."""


def _ratelimit(response: httpx.Response, name: str) -> str | None:
    value: str | None = response.headers.get(f"ratelimit-{name}")
    if value is None:  # draft-ietf-httpapi-ratelimit-headers ≥ 07: RateLimit: limit=10, remaining=0, reset=30
        match = re.search(rf"\b{name}=(\d+)", response.headers.get("ratelimit", ""))
        value = match.group(1) if match else None
    return value


def retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait before the next request, from ``Retry-After`` or the ``RateLimit`` reset."""
    seconds = retry_after_seconds(response.headers.get("retry-after"))
    return seconds if seconds is not None else retry_after_seconds(_ratelimit(response, "reset"))


def _problem(response: httpx.Response) -> str:
    if "json" in response.headers.get("content-type", ""):
        try:
            body = response.json()
            if isinstance(body, dict):
                return " ".join(str(body.get(k)) for k in ("type", "title", "detail") if body.get(k))[:_EXCERPT]
        except ValueError:
            pass
    return response.text[:_EXCERPT] if response.content else ""


class SubmissionApi:
    """Thin, thread-safe wrapper over one ``httpx.Client``; ``token`` returns the bearer token."""

    def __init__(self, base_url: str, http: httpx.Client, token: Callable[..., str],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.base_url, self.http, self.token, self.clock = base_url, http, token, clock
        self._lock = threading.Lock()
        self._blocked_until = 0.0

    def url(self, path: str) -> str:
        return self.base_url + path

    def _gate(self, what: str) -> None:
        with self._lock:
            wait = self._blocked_until - self.clock()
        if wait > 0:
            raise Deferred(f"{what}: rate limit of the delivery service exhausted; not sent", retry_after=wait)

    def _note_limits(self, response: httpx.Response) -> None:
        remaining = _ratelimit(response, "remaining")
        if remaining is not None and remaining.strip() == "0":
            wait = retry_after(response) or 1.0
            with self._lock:
                self._blocked_until = max(self._blocked_until, self.clock() + wait)

    def check(self, response: httpx.Response, what: str) -> httpx.Response:
        """Return a 2xx response; raise the mapped error kind for anything else."""
        self._note_limits(response)
        status = response.status_code
        if 200 <= status < 300:
            return response
        detail: dict[str, Any] = {"status_code": status, "problem": _problem(response)}
        reason = f"{what}: delivery service answered {status} {detail['problem']}".rstrip()
        if status in TRANSIENT:
            raise Retriable(reason, retry_after=retry_after(response), detail=detail)
        if status == 401:
            raise Permanent(f"{what}: the access token was refused twice; check client_id/client_secret",
                            detail=detail)
        if status == 403:
            raise Permanent(f"{what}: forbidden; is the client allowed to subscribe to this destination?",
                            detail=detail)
        raise Permanent(reason, detail=detail)

    def request(self, method: str, path: str, *, what: str, allow: tuple[int, ...] = (), **kw: Any) -> httpx.Response:
        """Send with the bearer token (fetched again once after a 401). Statuses in ``allow`` are returned
        to the caller instead of being classified (e.g. 409 for events)."""
        self._gate(what)
        response = self._send(method, path, what=what, renew=False, **kw)
        if response.status_code == 401:
            response = self._send(method, path, what=what, renew=True, **kw)
        if response.status_code in allow:
            self._note_limits(response)
            return response
        return self.check(response, what)

    def _send(self, method: str, path: str, *, what: str, renew: bool, **kw: Any) -> httpx.Response:
        headers = {**kw.pop("headers", {}), "Authorization": f"Bearer {self.token(renew=renew)}"}
        try:
            return self.http.request(method, self.url(path), headers=headers, **kw)
        except httpx.TransportError as exc:
            raise Retriable(f"{what}: {type(exc).__name__} talking to {self.base_url}") from None

    def get_json(self, path: str, *, what: str, params: dict[str, Any] | None = None) -> Any:
        response = self.request("GET", path, what=what, params=params)
        try:
            return response.json()
        except ValueError:
            raise Retriable(f"{what}: the delivery service answered {response.status_code} without JSON") from None

    def download(self, path: str, dest: Path, *, what: str, max_bytes: int) -> int:
        """Stream a response body to ``dest`` (via ``dest.part``); returns its size. Never buffers the body."""
        self._gate(what)
        part = dest.with_name(dest.name + ".part")
        for renew in (False, True):
            try:
                with self.http.stream("GET", self.url(path), headers={
                        "Authorization": f"Bearer {self.token(renew=renew)}", "Accept": "application/jose"}) as r:
                    if r.status_code == 401 and not renew:
                        continue
                    if not r.is_success:
                        r.read()
                        self.check(r, what)
                    self._note_limits(r)
                    size = 0
                    with part.open("wb") as out:
                        for chunk in r.iter_bytes(1 << 20):
                            size += len(chunk)
                            if size > max_bytes:
                                raise TooLarge(f"{what}: larger than {max_bytes} bytes")
                            out.write(chunk)
                part.replace(dest)
                return size
            except httpx.TransportError as exc:
                part.unlink(missing_ok=True)
                raise Retriable(f"{what}: {type(exc).__name__} while downloading") from None
            except BaseException:
                part.unlink(missing_ok=True)
                raise
        raise Permanent(f"{what}: the access token was refused twice")  # pragma: no cover - loop exits above

    def jwks(self) -> dict[str, Any]:
        """The delivery service's public keys (``/.well-known/jwks.json``, no token needed)."""
        what = "GET /.well-known/jwks.json"
        self._gate(what)
        try:
            response = self.http.get(self.url("/.well-known/jwks.json"))
        except httpx.TransportError as exc:
            raise Retriable(f"{what}: {type(exc).__name__}") from None
        self.check(response, what)
        try:
            body = response.json()
        except ValueError:
            raise Retriable(f"{what}: not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("keys"), list):
            raise Retriable(f"{what}: no 'keys' list")
        return body
