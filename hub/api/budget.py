"""Bounded memory at the REST intake: bytes of bodies in flight, and the parses of those bodies.

Two consumers dominate when strangers send large bodies at once:

* the bodies themselves, while they are read, checked and stored: :class:`MemoryBudget` lets a request
  hold only what it has reserved (its declared ``Content-Length`` up front, or chunk by chunk when the body
  is chunked). A request that does not fit is refused at once (503 with ``Retry-After``) rather than queued:
  portals retry, and a queue of waiting uploads would hold their sockets and buffers just the same.
* the parse: a tree of a hostile 10 MiB document can take 30 to 50 times its size. :class:`ParseGate` runs
  every parse on its own small thread pool, so at most ``threads`` trees exist at once, and the memory a
  parse leaves to the allocator is reused by the next parse on the same thread. (On the default thread pool
  each of its forty threads keeps its own malloc arena, and the process grows by one tree per thread.)

Both live on the event loop of the API; nothing here blocks it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["MemoryBudget", "ParseGate", "Reservation"]

T = TypeVar("T")


class MemoryBudget:
    """Bytes that request bodies may occupy at once. Not thread-safe: used from the event loop only."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0
        self.peak = 0
        self.refused = 0

    def reserve(self, size: int) -> Reservation | None:
        """A reservation of ``size`` bytes, or ``None`` when they are not free now."""
        reservation = Reservation(self)
        return reservation if reservation.grow(size) else None

    def _take(self, size: int) -> bool:
        if self.in_use + size > self.capacity:
            self.refused += 1
            return False
        self.in_use += size
        self.peak = max(self.peak, self.in_use)
        return True

    def _give_back(self, size: int) -> None:
        self.in_use -= size


class Reservation:
    """Bytes held by one request. Release it exactly when the body is gone (``with`` does that)."""

    def __init__(self, budget: MemoryBudget) -> None:
        self._budget = budget
        self.size = 0

    def grow(self, size: int) -> bool:
        """Hold ``size`` more bytes; ``False`` (and nothing held more) when the budget has no room."""
        if not self._budget._take(size):
            return False
        self.size += size
        return True

    def release(self) -> None:
        self._budget._give_back(self.size)
        self.size = 0

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


class ParseGate:
    """Runs parses on a dedicated pool of ``threads`` threads (started lazily, stopped by :meth:`close`)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on a parse thread. ``fn`` must drop what it parsed before returning."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="xhub-parse")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
