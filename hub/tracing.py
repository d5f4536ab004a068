"""Spans across intake → worker → delivery, when the operator configured a collector; nothing otherwise.

The core only marks where a span begins and ends (:func:`span`); the composition root installs a span
factory when ``[tracing] endpoint`` is set (:mod:`xhub.tracing`, OpenTelemetry). Without one, :func:`span`
does nothing and no tracing library is imported.

A message's trace goes through the database: the intake stores the W3C ``traceparent`` of its span in the
message's ``attributes`` (only when tracing is on), and the worker that claims the message, in whatever
process, continues that trace (:func:`parent_of`). Span attributes are identifiers only (message id, tenant,
channel, stage, target), never content.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

__all__ = ["TRACEPARENT", "SpanFactory", "install", "parent_of", "span"]

TRACEPARENT = "traceparent"

#: ``(name, parent traceparent or None, attributes) → context manager`` that yields the span's traceparent
SpanFactory = Callable[[str, str | None, dict[str, str]], AbstractContextManager[str | None]]

_factory: SpanFactory | None = None


def install(factory: SpanFactory | None) -> None:
    """Set (or, with ``None``, remove) the process's span factory."""
    global _factory
    _factory = factory


@contextmanager
def span(name: str, *, parent: str | None = None, **attributes: Any) -> Iterator[dict[str, str]]:
    """A span (a child of the current one, or of ``parent``). Yields ``{"traceparent": …}`` to store with a
    message so that its processing joins the trace, or ``{}`` when tracing is off."""
    factory = _factory
    if factory is None:
        yield {}
        return
    with factory(name, parent, {k: str(v) for k, v in attributes.items() if v is not None}) as traceparent:
        yield {TRACEPARENT: traceparent} if traceparent else {}


def parent_of(attributes: Mapping[str, Any] | None) -> str | None:
    """The traceparent the intake stored with a message, if any."""
    value = (attributes or {}).get(TRACEPARENT)
    return value if isinstance(value, str) else None
