"""Waking workers on new work instead of on a timer: PostgreSQL ``LISTEN``/``NOTIFY``.

Whoever makes work due (the intake's commit, a circuit that closes and releases its waiting messages) calls
:func:`notify` inside its transaction; PostgreSQL delivers the notification when (and only if) it commits.
Each worker runs a :class:`Listener`: a thread with its own connection (not one of the pool's) that waits
for notifications and sets the worker's wake event. The worker's poll stays as the fallback (a listener
that lost its connection reconnects with backoff, and wakes its worker once it listens again, for whatever
came meanwhile); on SQLite there is no NOTIFY, and the intake wakes the worker of its own process directly.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Connection, Engine, text

__all__ = ["CHANNEL", "Listener", "notify"]

log = logging.getLogger(__name__)

#: the notification channel of the hub's work queue
CHANNEL = "xhub_work"
_MAX_BACKOFF = 30.0


def notify(conn: Connection) -> None:
    """Tell the listening workers that work is due, when the caller's transaction commits (PostgreSQL only;
    several notifications of one transaction are delivered as one)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


class Listener:
    """A thread that sets ``wake`` whenever a notification arrives, until :meth:`close`."""

    def __init__(self, engine: Engine, wake: threading.Event) -> None:
        self.url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.wake = wake
        self.stop = threading.Event()
        self.listening = threading.Event()  # for tests and health: the LISTEN is in place
        self._thread = threading.Thread(target=self._run, name="xhub-listen", daemon=True)

    def start(self) -> Listener:
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        self.stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        import psycopg  # the PostgreSQL driver; only a PostgreSQL hub starts a listener

        backoff = 1.0
        while not self.stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    backoff = 1.0
                    self.wake.set()  # whatever was notified while nobody listened
                    while not self.stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.wake.set()
            except Exception as exc:  # the connection dropped or cannot be made: the poll covers meanwhile
                self.listening.clear()
                log.warning("listening for new work failed (%s); polling until it works again, next try in %.0fs",
                            _describe(exc), backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
        self.listening.clear()


def _describe(exc: Any) -> str:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"{type(exc).__name__}: {first[:200]}"
