"""What a stand-in received, for ``GET /_received``; shared by every stand-in that records requests.

Each stand-in keeps its own record type (a dataclass with a ``completed`` flag); the ledger keeps the
list, counts the answers still being held back by the misbehaviour model (``in_flight``), and releases
an answer only when the caller is still there to receive it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from fastapi import FastAPI, Request, Response

from sandbox.chaos import hold

__all__ = ["Ledger"]


class _Record(Protocol):
    """A stand-in's record: a dataclass with a ``completed`` flag."""

    __dataclass_fields__: ClassVar[dict[str, Any]]
    completed: bool


R = TypeVar("R", bound=_Record)


class Ledger(Generic[R]):
    """The records of one stand-in. ``lock`` is reentrant: a stand-in may hold it around its own state
    (case ids, idempotency keys) while it calls :meth:`add`, so both change in one step."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.items: list[R] = []
        self.in_flight = 0

    def add(self, record: R, *, held: bool) -> R:
        """Record a request; ``held``: its answer goes out through :meth:`answer` (counted in flight)."""
        with self.lock:
            self.items.append(record)
            if held:
                self.in_flight += 1
        return record

    async def answer(
        self, request: Request, delay: float, record: R, respond: Callable[[], Response], gone: Response
    ) -> Response:
        """Hold the answer for ``delay`` seconds, then ``respond()``; ``gone`` if the caller left meanwhile."""
        try:
            if not await hold(request, delay):
                return gone
            record.completed = True
            return respond()
        finally:
            with self.lock:
                self.in_flight -= 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"count": len(self.items), "in_flight": self.in_flight, "items": [asdict(r) for r in self.items]}

    def mount(self, app: FastAPI) -> None:
        """Add ``GET /_received`` (hidden from the stand-in's OpenAPI description)."""

        @app.get("/_received", include_in_schema=False)
        async def get_received() -> dict[str, Any]:
            return self.snapshot()
