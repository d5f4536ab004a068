"""Supervised background loops: one item's failure never stops a loop, and a loop that dies comes back.

Every background loop of the hub runs its body under a :class:`Supervisor`: the FIT-Connect poller, the
workers (the thread in ``xhub serve`` and the ``xhub worker`` process) and the rules reloader.

* The body handles each item in isolation (the poller: one submission; the worker: one message) and
  records the outcome on the item itself; it reports to the supervisor with :meth:`Supervisor.beat` and
  :meth:`Supervisor.failed`.
* If the body raises anyway, the supervisor logs the cause (its type and code location), counts a restart
  and starts the body again after a backoff (1 s, doubling, at most 60 s; a body that ran for a minute
  starts again at 1 s). It never gives up while the process runs.
* :meth:`Supervisor.state` is what ``/health/ready`` reports. With :class:`Heartbeats` the same facts go to
  the ``loop_heartbeats`` table at most every :data:`HEARTBEAT_SECONDS`, so that every API process sees
  loops running in other processes; a loop that stops cleanly removes its row.

Logs and stored errors name the exception type and where it was raised, never its message: messages of
parsers and encoders quote the input, which may be personal data. The traceback is logged at DEBUG.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import PurePath

from sqlalchemy import Engine, delete, insert, update
from sqlalchemy.exc import SQLAlchemyError

from hub.models import LoopHeartbeat, utcnow

__all__ = ["HEARTBEAT_SECONDS", "Backoff", "Heartbeats", "LoopState", "Supervisor", "describe"]

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
#: rows of loops that died without removing them are deleted after this long (they stay visible until then)
FORGET_AFTER = timedelta(hours=1)
_PACKAGES = ("hub", "channels", "adapters", "xhub")  # the product's own packages


def describe(exc: BaseException) -> str:
    """``"RecursionError at channels/fitconnect/metadata.py:52"``: the type and the innermost frame of the
    hub's own code (else the innermost frame), never the message."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if set(PurePath(f.filename).parts) & set(_PACKAGES)]
    if not frames:
        return type(exc).__name__
    frame = (ours or frames)[-1]
    parts = PurePath(frame.filename).parts
    start = max((i for i, p in enumerate(parts) if p in _PACKAGES), default=len(parts) - 2)
    return f"{type(exc).__name__} at {'/'.join(parts[start:])}:{frame.lineno}"[:300]


@dataclass(frozen=True)
class Backoff:
    """Delays between restarts of a dying loop."""

    initial: float = 1.0
    maximum: float = 60.0
    reset_after: float = 60.0  # a body that ran this long before dying starts again at ``initial``

    def delay(self, failures_in_a_row: int) -> float:
        return float(min(self.maximum, self.initial * 2 ** max(0, failures_in_a_row - 1)))


@dataclass(frozen=True)
class LoopState:
    """A snapshot of one loop, for health reports. Times are UTC; ``None`` means "not yet"."""

    name: str
    kind: str
    loop_id: str
    interval: float | None  # how often the loop is meant to come round (pollers), if it has a rhythm
    running: bool  # the body runs now (False while waiting to restart, and after it stopped)
    started_at: datetime | None
    last_beat_at: datetime | None
    last_success_at: datetime | None
    items: int
    item_failures: int
    restarts: int
    last_error: str | None
    last_error_at: datetime | None
    restart_at: datetime | None  # while waiting to restart

    def age(self, moment: datetime | None, now: datetime) -> float | None:
        return None if moment is None else round((now - moment).total_seconds(), 3)


class Heartbeats:
    """Writes one loop's row in ``loop_heartbeats`` (at most every :data:`HEARTBEAT_SECONDS`, unless forced).

    A failure to write (database down) is logged once per outage and never reaches the loop."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine, self.clock = engine, clock
        self._written_at = float("-inf")
        self._exists = False
        self._failing = False
        self._lock = threading.Lock()

    def write(self, state: LoopState, *, force: bool = False) -> None:
        with self._lock:
            if not force and self.clock() - self._written_at < HEARTBEAT_SECONDS:
                return
            self._written_at = self.clock()
            values = {"kind": state.kind, "started_at": state.started_at or utcnow(), "beat_at": utcnow(),
                      "last_success_at": state.last_success_at, "items": state.items, "restarts": state.restarts,
                      "last_error": state.last_error, "last_error_at": state.last_error_at}
            try:
                with self.engine.begin() as conn:
                    if not self._exists:
                        conn.execute(delete(LoopHeartbeat).where(LoopHeartbeat.beat_at < utcnow() - FORGET_AFTER))
                    done = conn.execute(update(LoopHeartbeat).where(LoopHeartbeat.loop_id == state.loop_id)
                                        .values(**values)).rowcount
                    if not done:
                        conn.execute(insert(LoopHeartbeat).values(loop_id=state.loop_id, **values))
                self._exists = True
                if self._failing:
                    log.info("heartbeat of %s written again", state.loop_id)
                self._failing = False
            except SQLAlchemyError as exc:
                if not self._failing:
                    log.warning("heartbeat of %s not written: %s", state.loop_id, describe(exc))
                self._failing = True

    def remove(self, loop_id: str) -> None:
        with self._lock:
            try:
                with self.engine.begin() as conn:
                    conn.execute(delete(LoopHeartbeat).where(LoopHeartbeat.loop_id == loop_id))
            except SQLAlchemyError as exc:  # the row goes stale and is forgotten later
                log.warning("heartbeat of %s not removed: %s", loop_id, describe(exc))


def new_loop_id(kind: str) -> str:
    return f"{kind}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"[:200]


class Supervisor:
    """Runs a loop body, restarts it with :class:`Backoff` when it raises, and keeps its :class:`LoopState`.

    ``stop`` ends it (the body must watch it too); ``heartbeats`` makes the loop visible to other processes.
    """

    def __init__(self, name: str, *, kind: str | None = None, stop: threading.Event | None = None,
                 backoff: Backoff | None = None, heartbeats: Heartbeats | None = None,
                 interval: float | None = None, loop_id: str | None = None) -> None:
        self.name = name
        self.stop = stop or threading.Event()
        self.backoff = backoff or Backoff()
        self.heartbeats = heartbeats
        self._lock = threading.Lock()
        self._state = LoopState(name=name, kind=kind or name, loop_id=loop_id or new_loop_id(kind or name),
                                interval=interval, running=False, started_at=None, last_beat_at=None,
                                last_success_at=None, items=0, item_failures=0, restarts=0, last_error=None,
                                last_error_at=None, restart_at=None)
        self._thread: threading.Thread | None = None

    # -- what the body reports
    def beat(self, *, success: bool = False, items: int = 0) -> None:
        """The loop came round (``success``: it did useful work, e.g. a poll that reached the service)."""
        now = utcnow()
        with self._lock:
            self._state = replace(self._state, last_beat_at=now, items=self._state.items + items,
                                  last_success_at=now if success else self._state.last_success_at)
            state = self._state
        if self.heartbeats is not None:
            self.heartbeats.write(state)

    def failed(self, exc: BaseException) -> str:
        """One item failed (and was dealt with by the body); returns :func:`describe` of it."""
        what = describe(exc)
        with self._lock:
            self._state = replace(self._state, item_failures=self._state.item_failures + 1, last_error=what,
                                  last_error_at=utcnow())
        return what

    def state(self) -> LoopState:
        with self._lock:
            return self._state

    # -- running
    def start(self, body: Callable[[], None]) -> None:
        """Run :meth:`run` in a daemon thread named after the loop."""
        self._thread = threading.Thread(target=self.run, args=(body,), name=self.name, daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self, body: Callable[[], None]) -> None:
        """Run ``body`` in this thread until it returns or :attr:`stop` is set; restart it when it raises."""
        in_a_row = 0
        try:
            while not self.stop.is_set():
                began = time.monotonic()
                self._update(running=True, started_at=utcnow(), restart_at=None)
                try:
                    body()
                    return  # finished (stop set, or the work is done): a clean end
                except Exception as exc:  # the body's own isolation failed: log the cause, restart later
                    in_a_row = 1 if time.monotonic() - began >= self.backoff.reset_after else in_a_row + 1
                    self._died(exc, self.backoff.delay(in_a_row))
                self.stop.wait(self.backoff.delay(in_a_row))
        finally:
            self._update(running=False, restart_at=None)
            if self.heartbeats is not None:
                self.heartbeats.remove(self._state.loop_id)

    def _died(self, exc: Exception, delay: float) -> None:
        what = describe(exc)
        now = utcnow()
        with self._lock:
            self._state = replace(self._state, running=False, restarts=self._state.restarts + 1, last_error=what,
                                  last_error_at=now, restart_at=now + timedelta(seconds=delay))
            state = self._state
        log.error("loop %s died (%s); restart %d in %.1f s", self.name, what, state.restarts, delay)
        log.debug("loop %s died", self.name, exc_info=exc)
        if self.heartbeats is not None:
            self.heartbeats.write(state, force=True)

    def _update(self, **changes: object) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)  # type: ignore[arg-type]
