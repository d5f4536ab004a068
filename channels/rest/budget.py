"""Bounded memory at the REST intake: bytes of bodies in flight, and the parses of those bodies.

Two consumers dominate when strangers send large bodies at once:

* the bodies themselves, while they are read, checked and stored: :class:`MemoryBudget` lets a request
  hold only what it has reserved (its declared ``Content-Length`` up front, or chunk by chunk when the body
  is chunked). A request that does not fit is refused at once (503 with ``Retry-After``) rather than queued:
  portals retry, and a queue of waiting uploads would hold their sockets and buffers just the same.
* the parse: a tree of a hostile 10 MiB document can take 25 (JSON) to 50 (XML) times its size.
  :class:`ParseGate` runs every parse on a few dedicated threads, so only that many trees exist at once, and
  the memory a parse leaves to the allocator is reused by the next parse on the same thread. (On the default
  thread pool each of its forty threads keeps its own malloc arena, and the process grows by one tree per
  thread that ever parsed a large body.)

Both live on the event loop of the API; nothing here blocks it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["SMALL_BODY", "MemoryBudget", "ParseGate", "Reservation"]

T = TypeVar("T")

#: Bodies up to this size are parsed in their own lane (a parse of one costs at most some 50 MiB).
SMALL_BODY = 1024 * 1024


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
    """Runs parses on dedicated threads: ``threads`` for bodies up to :data:`SMALL_BODY` bytes and as many
    for larger ones, so that the many small messages of portals never queue behind a few large ones.

    At most ``2 * threads`` trees exist at once, the large ones at most ``threads``. The pools start lazily
    and stop with :meth:`close`.
    """

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._pools: dict[bool, ThreadPoolExecutor] = {}

    async def run(self, size: int, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on a parse thread of the lane for ``size`` bytes; ``fn`` must drop what it parsed."""
        large = size > SMALL_BODY
        pool = self._pools.get(large)
        if pool is None:
            pool = self._pools[large] = ThreadPoolExecutor(
                max_workers=self.threads, thread_name_prefix=f"xhub-parse-{'large' if large else 'small'}")
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self._pools.clear()
