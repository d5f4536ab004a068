"""Which message, tenant and stage a log line is about, without passing them to every call.

The worker binds the message it works on (:func:`bound`), the runner the stage; every log record written
meanwhile in that thread carries them. The composition root's log configuration
(:mod:`xhub.observability`) adds :func:`current` to each JSON line, so the core needs no logging library.

Only identifiers go here (message id, tenant, channel, route, stage, target): never payload content.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["bound", "current"]

_fields: ContextVar[dict[str, Any] | None] = ContextVar("xhub_log_fields", default=None)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every log record written in this context (``None`` values are left out)."""
    token = _fields.set({**(_fields.get() or {}), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _fields.reset(token)


def current() -> dict[str, Any]:
    return dict(_fields.get() or {})
