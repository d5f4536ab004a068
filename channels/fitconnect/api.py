"""The Submission API over HTTP: bearer token, response classification, rate limits, capped reads.

Responses are classified in one place, :meth:`SubmissionApi.check`:

* 2xx: fine. 401: the token is fetched again once, then :class:`~hub.errors.Permanent` (credentials).
* 408, 425, 429, 5xx and transport errors: :class:`~hub.errors.Retriable`, with ``retry_after`` from
  ``Retry-After`` or ``RateLimit-Reset`` (also the combined ``RateLimit: …, reset=n`` form).
* every other status: :class:`~hub.errors.Permanent`, the RFC 7807 ``type``/``title`` in the message.

When a response says ``RateLimit-Remaining: 0`` no further request is sent until the reset has passed:
calls raise :class:`~hub.errors.Deferred` (nothing was sent, no retry budget spent). httpx exceptions never
leave this module.

Every body is read with a cap (``Content-Length`` checked first, then counted while streaming, after
decompression), and every JSON answer is parsed by :func:`hub.jsonsafe.loads` with the configured limits.
An answer that is too large or not the JSON we expect is the delivery service's fault, not the sender's:
:class:`AnswerTooLarge` and malformed answers are :class:`~hub.errors.Retriable`.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from hub.errors import Deferred, Permanent, Retriable
from hub.http_status import RETRIABLE
from hub.http_support import TooLarge, declared_length, read_capped, retry_after_seconds
from hub.jsonsafe import DEFAULT_JSON_LIMITS, JsonLimits, JsonRejected, loads

__all__ = ["ANSWER_MAX_BYTES", "TRANSIENT", "AnswerTooLarge", "SubmissionApi", "TooLarge", "read_capped",
           "retry_after"]

TRANSIENT = RETRIABLE  # the one status table (hub.http_status)
_EXCERPT = 300
#: listing pages, event logs, JWKS, tokens, event answers: generous for 500 entries per page
ANSWER_MAX_BYTES = 16 * 1024 * 1024
_ERROR_BODY_MAX = 64 * 1024  # of an error answer only this much is read; the rest is dropped


class AnswerTooLarge(Retriable):
    """A JSON answer of the delivery service is larger than its cap (``limit`` bytes)."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message, detail={"limit_bytes": limit})
        self.limit = limit


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
    content = response.content[:_ERROR_BODY_MAX]
    if "json" in response.headers.get("content-type", ""):
        try:
            body = loads(content, JsonLimits(max_bytes=_ERROR_BODY_MAX, max_depth=16))
        except JsonRejected:
            body = None
        if isinstance(body, dict):
            return " ".join(str(body.get(k)) for k in ("type", "title", "detail") if body.get(k))[:_EXCERPT]
    return content[:_EXCERPT].decode("utf-8", "replace") if content else ""


def _buffered(response: httpx.Response, body: bytes) -> httpx.Response:
    """A plain response holding ``body`` (already decoded): the stream is closed, nothing else is read."""
    skip = (b"content-encoding", b"content-length", b"transfer-encoding")
    headers = [(k, v) for k, v in response.headers.raw if k.lower() not in skip]
    return httpx.Response(response.status_code, headers=headers, content=body, request=response.request)


class SubmissionApi:
    """Thin, thread-safe wrapper over one ``httpx.Client``; ``token`` returns the bearer token.

    ``json_limits`` bound the shape of every JSON answer (depth, numbers); sizes are per call."""

    def __init__(self, base_url: str, http: httpx.Client, token: Callable[..., str],
                 clock: Callable[[], float] = time.monotonic, *,
                 json_limits: JsonLimits = DEFAULT_JSON_LIMITS) -> None:
        self.base_url, self.http, self.token, self.clock = base_url, http, token, clock
        self.json_limits = json_limits
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

    def request(self, method: str, path: str, *, what: str, allow: tuple[int, ...] = (),
                max_bytes: int = ANSWER_MAX_BYTES, **kw: Any) -> httpx.Response:
        """Send with the bearer token (fetched again once after a 401); the body is read with ``max_bytes``
        (:class:`AnswerTooLarge` beyond it). Statuses in ``allow`` are returned to the caller instead of
        being classified (e.g. 409 for events)."""
        self._gate(what)
        response = self._send(method, path, what=what, renew=False, max_bytes=max_bytes, **kw)
        if response.status_code == 401:
            response = self._send(method, path, what=what, renew=True, max_bytes=max_bytes, **kw)
        if response.status_code in allow:
            self._note_limits(response)
            return response
        return self.check(response, what)

    def _send(self, method: str, path: str, *, what: str, renew: bool, max_bytes: int, **kw: Any) -> httpx.Response:
        headers = {**kw.pop("headers", {}), "Authorization": f"Bearer {self.token(renew=renew)}"}
        return self.exchange(self.http.build_request(method, self.url(path), headers=headers, **kw), what=what,
                             max_bytes=max_bytes)

    def exchange(self, request: httpx.Request, *, what: str, max_bytes: int) -> httpx.Response:
        """Send ``request`` and read its answer with a cap: the one place that touches the network for
        JSON exchanges. Transport errors are :class:`~hub.errors.Retriable`."""
        try:
            response = self.http.send(request, stream=True)
            try:
                body = read_capped(response, max_bytes if response.is_success else _ERROR_BODY_MAX,
                                   truncate=not response.is_success)
            finally:
                response.close()
        except TooLarge as exc:
            raise AnswerTooLarge(f"{what}: {exc}", max_bytes) from None
        except httpx.TransportError as exc:
            raise Retriable(f"{what}: {type(exc).__name__} talking to {self.base_url}") from None
        return _buffered(response, body)

    def parse_json(self, response: httpx.Response, *, what: str, max_bytes: int = ANSWER_MAX_BYTES) -> Any:
        """The answer's JSON within the limits; a malformed answer is :class:`~hub.errors.Retriable`."""
        limits = dataclasses.replace(self.json_limits, max_bytes=max_bytes, max_string_chars=max_bytes)
        try:
            return loads(response.content, limits)
        except JsonRejected as exc:
            raise Retriable(f"{what}: the delivery service answered {response.status_code} without usable JSON "
                            f"({exc.title}: {exc.detail})", detail={"problem": exc.slug}) from None

    def get_json(self, path: str, *, what: str, params: dict[str, Any] | None = None,
                 max_bytes: int = ANSWER_MAX_BYTES) -> Any:
        response = self.request("GET", path, what=what, params=params, max_bytes=max_bytes)
        return self.parse_json(response, what=what, max_bytes=max_bytes)

    def download(self, path: str, dest: Path, *, what: str, max_bytes: int) -> int:
        """Stream a response body to ``dest`` (via ``dest.part``); returns its size. Never buffers the body.
        :class:`TooLarge` when ``Content-Length`` or the bytes received exceed ``max_bytes``."""
        self._gate(what)
        part = dest.with_name(dest.name + ".part")
        for renew in (False, True):
            try:
                with self.http.stream("GET", self.url(path), headers={
                        "Authorization": f"Bearer {self.token(renew=renew)}", "Accept": "application/jose"}) as r:
                    if r.status_code == 401 and not renew:
                        continue
                    if not r.is_success:
                        self.check(_buffered(r, read_capped(r, _ERROR_BODY_MAX, truncate=True)), what)
                    self._note_limits(r)
                    declared = declared_length(r)
                    if declared is not None and declared > max_bytes:
                        raise TooLarge(f"{what}: announces {declared} bytes, more than {max_bytes}")
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
        response = self.check(self.exchange(self.http.build_request("GET", self.url("/.well-known/jwks.json")),
                                            what=what, max_bytes=ANSWER_MAX_BYTES), what)
        body = self.parse_json(response, what=what)
        if not isinstance(body, dict) or not isinstance(body.get("keys"), list):
            raise Retriable(f"{what}: no 'keys' list")
        return body
