"""``POST /api/v1/fitconnect/callback``: the delivery service's push, checked, then it wakes the poller.

Order of checks, each before any work is spent on the next: the callback is configured (``404``); the
body's size (``Content-Length`` first, then counted while reading, chunked or not: ``413``); the
headers' shapes (``400 callback-malformed``); timestamp window, HMAC (constant time) and replay
(``401 callback-refused``); only then the body is parsed as JSON within the limits (``400
callback-malformed``). A callback only triggers a poll: polling stays the source of truth, so nothing a
callback says is trusted beyond "look now".

The composition root mounts :data:`router` with :func:`mount`, which keeps the route's :class:`Callbacks`
(the channel's settings, the replay guard, what wakes the poller) on the app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request

from channels.fitconnect.callbacks import CallbackMalformed, CallbackRefused, ReplayGuard, verify_callback
from channels.fitconnect.config import FitConnectConfig
from hub.jsonsafe import JsonRejected, loads
from hub.problems import Problem
from hub.settings import LimitsConfig

__all__ = ["MAX_CALLBACK_BYTES", "Callbacks", "mount", "router"]

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


@dataclass
class Callbacks:
    """What the callback route needs: the channel's settings (``None``: not configured), the hub's limits,
    and what wakes the poller (``None``: no poller in this process)."""

    fc: FitConnectConfig | None
    limits: LimitsConfig
    on_callback: Callable[[], None] | None
    guard: ReplayGuard = field(default_factory=ReplayGuard)  # callbacks seen lately: a replayed one is refused


def mount(app: FastAPI, callbacks: Callbacks) -> None:
    app.state.fitconnect_callbacks = callbacks
    app.include_router(router)


def _callbacks(request: Request) -> Callbacks:
    found: Callbacks = request.app.state.fitconnect_callbacks
    return found


router = APIRouter(tags=["FIT-Connect"])


@router.post("/api/v1/fitconnect/callback")
async def receive(request: Request, callbacks: Annotated[Callbacks, Depends(_callbacks)]) -> dict[str, Any]:
    """FIT-Connect's new-submission callback: checked (size, shape, HMAC, timestamp, replay), then it
    triggers a poll."""
    fc, on_callback = callbacks.fc, callbacks.on_callback
    if fc is None or fc.callback_secret is None or on_callback is None:
        raise Problem(404, "callbacks-not-configured", "Callbacks not configured",
                      "this hub has no FIT-Connect callback secret; it polls instead")
    body = await _body(request)
    try:
        verify_callback(fc.callback_secret.get_secret_value(), request.headers.get("callback-timestamp"),
                        request.headers.get("callback-authentication"), body, seen=callbacks.guard)
    except CallbackMalformed as exc:
        raise Problem(400, "callback-malformed", "Malformed callback", exc.reason) from None
    except CallbackRefused as exc:
        log.warning("FIT-Connect callback refused from %s: %s", request.client.host if request.client else "?",
                    exc.reason)
        raise Problem(401, "callback-refused", "Callback refused", exc.reason) from None
    try:
        notice = loads(body, callbacks.limits.json_limits(MAX_CALLBACK_BYTES))
    except JsonRejected as exc:
        raise Problem(400, "callback-malformed", "Malformed callback", f"the body is not JSON: {exc.detail}") \
            from None
    if not isinstance(notice, dict) or not isinstance(notice.get("type"), str):
        raise Problem(400, "callback-malformed", "Malformed callback",
                      "the body must be a JSON object with a 'type' string")
    on_callback()
    return {"status": "ok", "action": "poll triggered"}
