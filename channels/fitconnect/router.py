"""``POST /api/v1/fitconnect/callback``: the delivery service's push, checked, then it wakes the poller.

Order of checks, each before any work is spent on the next: the callback is configured (``404``); the
body's size (``Content-Length`` first, then counted while reading, chunked or not: ``413``); the
headers' shapes (``400 callback-malformed``); timestamp window, HMAC (constant time) and replay
(``401 callback-refused``); only then the body is parsed as JSON within the limits (``400
callback-malformed``). A callback only triggers a poll: polling stays the source of truth, so nothing a
callback says is trusted beyond "look now".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import Request

from adapters.fitconnect import CallbackMalformed, CallbackRefused, ReplayGuard, verify_callback
from hub.api.problems import Problem
from hub.config import HubConfig
from hub.jsonsafe import JsonRejected, loads

__all__ = ["MAX_CALLBACK_BYTES", "receive"]

log = logging.getLogger(__name__)

MAX_CALLBACK_BYTES = 64 * 1024  # a callback lists a few submission ids


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    too_large = Problem(413, "payload-too-large", "Payload too large",
                        f"a callback must not exceed {MAX_CALLBACK_BYTES} bytes")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise Problem(400, "bad-content-length", "Invalid Content-Length", "Content-Length must be a number")
        if int(declared) > MAX_CALLBACK_BYTES:
            raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_CALLBACK_BYTES:
            raise too_large
    return bytes(body)


async def receive(request: Request, config: HubConfig, guard: ReplayGuard,
                  on_callback: Callable[[], None] | None) -> dict[str, Any]:
    """Check one callback (see the module docstring) and wake the poller."""
    fc = config.fitconnect
    if fc is None or fc.callback_secret is None or on_callback is None:
        raise Problem(404, "callbacks-not-configured", "Callbacks not configured",
                      "this hub has no FIT-Connect callback secret; it polls instead")
    body = await _body(request)
    try:
        verify_callback(fc.callback_secret.get_secret_value(), request.headers.get("callback-timestamp"),
                        request.headers.get("callback-authentication"), body, seen=guard)
    except CallbackMalformed as exc:
        raise Problem(400, "callback-malformed", "Malformed callback", exc.reason) from None
    except CallbackRefused as exc:
        log.warning("FIT-Connect callback refused from %s: %s", request.client.host if request.client else "?",
                    exc.reason)
        raise Problem(401, "callback-refused", "Callback refused", exc.reason) from None
    try:
        notice = loads(body, config.limits.json_limits(MAX_CALLBACK_BYTES))
    except JsonRejected as exc:
        raise Problem(400, "callback-malformed", "Malformed callback", f"the body is not JSON: {exc.detail}") \
            from None
    if not isinstance(notice, dict) or not isinstance(notice.get("type"), str):
        raise Problem(400, "callback-malformed", "Malformed callback",
                      "the body must be a JSON object with a 'type' string")
    on_callback()
    return {"status": "ok", "action": "poll triggered"}
