"""The error kinds the engine acts on. Adapters map library exceptions to these at their boundary.

::

    HubError
    ├── Retriable   transient (connection refused, timeout, 5xx, 429): retry later, per the route's budget
    │   └── Deferred    the target is not to be called now (circuit open, concurrency limit reached): wait
    │                   without spending the retry budget; nothing was sent
    ├── Permanent   retrying will not help (4xx, SOAP client fault, misconfiguration): ``dead``, an
    │               operator looks at it and can requeue once the cause is fixed
    └── Invalid     the message itself can never be processed (malformed, schema-invalid): ``rejected``

Nothing else may escape an adapter or a pipeline stage: anything else is a bug, and the worker records it
as a retriable failure with its type name so that the message is kept and an operator sees the cause.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Deferred", "HubError", "Invalid", "Permanent", "Retriable"]


class HubError(Exception):
    """Base of the taxonomy. ``detail`` is structured data stored with the event (never secrets)."""

    def __init__(self, message: str, *, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.detail = detail or {}


class Retriable(HubError):
    """Try again later. ``retry_after`` (seconds) is a lower bound from the other side, e.g. Retry-After."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, detail: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = retry_after


class Deferred(Retriable):
    """Not attempted: the hub holds the message back to protect the target. Not counted as an attempt."""


class Permanent(HubError):
    """Trying again will fail the same way until someone changes something."""


class Invalid(HubError):
    """The message can never be processed."""
