"""Component health for ``/health/ready``: database, workers, the channels' pollers, blob store.

Each check gives a :class:`Component`, ``ok`` or ``degraded`` with a one-line reason:

* **database**: a fresh connection (no pool) with a :data:`DB_TIMEOUT_SECONDS` timeout. PostgreSQL runs
  ``SELECT 1``; SQLite takes and drops the write lock (``BEGIN IMMEDIATE``), since a SQLite database that
  answers reads but whose write lock is held elsewhere cannot accept anything.
* **workers**: the loops of this process (the embedded worker) and the ``loop_heartbeats`` rows of every
  worker process. Degraded when this process's worker is restarting or has not come round for
  :data:`STALE_AFTER_SECONDS`, or when no worker runs anywhere (accepted messages would wait forever).
  Rows older than that belong to processes that died; they are counted as ``stale``.
* **one component per polling channel** (:class:`PollerCheck`, e.g. ``fitconnect_poller`` when FIT-Connect
  is configured): the time since the last successful poll (or message taken in) against
  :data:`POLLER_BEHIND_INTERVALS` poll intervals; restarts and the last error type; how many messages are
  failing to be taken in (``intake_failures``).
* **blob_store**: a probe file is written, flushed and removed; degraded when that fails or when free space
  is below ``limits.blob_min_free_bytes``.
* **the watches** (:mod:`hub.watch`, e.g. ``keys`` and ``fitconnect_deadlines``): ``ok`` or ``warning``,
  never degraded: an expiring key or a submission near its deadline is reported, and ``/health/ready`` stays
  ``200`` (the warnings are listed in its ``warnings`` member).

The report is public (probes do not authenticate): it names no paths, URLs, hosts or error messages; only
exception type names, counts and ages in seconds.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from hub.intake_failures import failing as failing_at
from hub.models import LoopHeartbeat, utcnow
from hub.settings import Settings
from hub.supervisor import LoopState, Supervisor

__all__ = ["DB_TIMEOUT_SECONDS", "POLLER_BEHIND_INTERVALS", "STALE_AFTER_SECONDS", "Component", "Health",
           "PollerCheck"]

DB_TIMEOUT_SECONDS = 2.0
STALE_AFTER_SECONDS = 30.0  # six missed heartbeats (hub.supervisor.HEARTBEAT_SECONDS)
POLLER_BEHIND_INTERVALS = 3


@dataclass(frozen=True)
class Component:
    status: str  # ok | warning | degraded
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Fit for traffic: ``ok``, or ``warning`` (something for the operator that does not stop processing)."""
        return self.status != "degraded"

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, **({"reason": self.reason} if self.reason else {}), **self.detail}


def _ok(**detail: Any) -> Component:
    return Component("ok", None, detail)


def _degraded(reason: str, **detail: Any) -> Component:
    return Component("degraded", reason, detail)


@dataclass(frozen=True)
class PollerCheck:
    """A channel's poller as ``/health/ready`` reports it; the composition root makes one per polling channel."""

    component: str  # the name in the report, e.g. fitconnect_poller
    kind: str  # its loops' kind (the supervisor's name), e.g. fitconnect-poller
    channel: str  # whose intake failures are counted
    label: str  # for the reasons, e.g. "FIT-Connect poller"
    interval: float  # seconds between polls


@dataclass(frozen=True)
class _Beat:
    kind: str
    started_at: datetime
    beat_at: datetime
    last_success_at: datetime | None


@dataclass(frozen=True)
class _Stored:
    """What the database said, or ``None`` fields when it could not be read."""

    heartbeats: list[_Beat] | None = None
    failing: dict[str, tuple[int, datetime | None]] | None = None  # per channel


def _probe_engine(engine: Engine) -> Engine:
    """An unpooled engine with short timeouts on the same database: a probe never waits for the pool and
    never hangs on an unreachable server."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            return engine
        # mode=rw: a missing file is an error, not a new empty database
        uri = make_url(f"sqlite:///file:{quote(os.path.abspath(url.database))}?mode=rw&uri=true")
        return create_engine(uri, poolclass=NullPool, connect_args={
            "timeout": DB_TIMEOUT_SECONDS, "check_same_thread": False, "isolation_level": None})
    return create_engine(url, poolclass=NullPool, connect_args={
        "connect_timeout": max(2, int(DB_TIMEOUT_SECONDS)),
        "options": f"-c statement_timeout={int(DB_TIMEOUT_SECONDS * 1000)}"})


def _age(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else round(max(0.0, (now - moment).total_seconds()), 1)


def _loop_json(state: LoopState, now: datetime) -> dict[str, Any]:
    return {"running": state.running, "restarts": state.restarts, "items": state.items,
            "item_failures": state.item_failures,
            "last_error_type": state.last_error.split(" ", 1)[0] if state.last_error else None,
            "last_error_age_seconds": _age(state.last_error_at, now),
            "last_beat_age_seconds": _age(state.last_beat_at, now),
            "last_success_age_seconds": _age(state.last_success_at, now)}


class Health:
    """The checks of one API process; ``loops`` are the supervisors running in it (``app.state.loops``)."""

    def __init__(self, config: Settings, engine: Engine, pollers: Sequence[PollerCheck] = (),
                 watches: Callable[[datetime], Sequence[tuple[str, Component]]] | None = None) -> None:
        self.config = config
        self.engine = engine
        self.pollers = list(pollers)
        self.watches = watches  # the watches' components (hub.watch.Watches), at most as fresh as their ttl
        self.probe = _probe_engine(engine)

    def ready(self, loops: Sequence[Supervisor]) -> dict[str, Component]:
        """Every component, in a fixed order. Blocking: call it from a worker thread."""
        now = utcnow()
        states = [s.state() for s in loops]
        database, stored = self._database()
        components = {"database": database, "workers": self._workers(states, stored, now)}
        for poller in self.pollers:
            components[poller.component] = self._poller(poller, states, stored, now)
        components["blob_store"] = self._blob_store()
        if self.watches is not None:
            components.update(self.watches(now))
        return components

    def _database(self) -> tuple[Component, _Stored]:
        began = time.monotonic()
        try:
            with self.probe.connect() as conn:
                if self.probe.dialect.name == "sqlite":
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                    conn.exec_driver_sql("ROLLBACK")
                else:
                    conn.execute(text("SELECT 1"))
                latency = round((time.monotonic() - began) * 1000, 1)
                beats = select(LoopHeartbeat.kind, LoopHeartbeat.started_at, LoopHeartbeat.beat_at,
                               LoopHeartbeat.last_success_at)
                heartbeats = [_Beat(*row) for row in conn.execute(beats)]
                failing = {p.channel: failing_at(conn, p.channel) for p in self.pollers}
        except SQLAlchemyError as exc:
            waited = time.monotonic() - began
            why = "did not answer in time" if waited >= DB_TIMEOUT_SECONDS * 0.9 else "refused the connection"
            return _degraded(f"the database {why} ({type(exc).__name__})",
                             backend=self.probe.dialect.name), _Stored()
        return _ok(backend=self.probe.dialect.name, latency_ms=latency), _Stored(heartbeats, failing)

    def _workers(self, states: list[LoopState], stored: _Stored, now: datetime) -> Component:
        mine = [s for s in states if s.kind == "worker"]
        reasons = []
        for state in mine:
            if not state.running:
                reasons.append(f"the embedded worker is restarting after {_loop_json(state, now)['last_error_type']}")
            elif (_age(state.last_beat_at or state.started_at, now) or 0) > STALE_AFTER_SECONDS:
                reasons.append(f"the embedded worker has not come round for more than {STALE_AFTER_SECONDS:.0f} s")
        detail: dict[str, Any] = {"embedded": [_loop_json(s, now) for s in mine]}
        if stored.heartbeats is not None:
            rows = [r for r in stored.heartbeats if r.kind == "worker"]
            live = [r for r in rows if (_age(r.beat_at, now) or 0) <= STALE_AFTER_SECONDS]
            detail.update(running=len(live), stale=len(rows) - len(live))
            if not live and not any(s.running for s in mine):
                reasons.append("no worker is running: accepted messages are not processed")
        else:
            detail.update(running=None, stale=None)  # unknown while the database cannot be read
        return _degraded("; ".join(reasons), **detail) if reasons else _ok(**detail)

    def _poller(self, poller: PollerCheck, states: list[LoopState], stored: _Stored, now: datetime) -> Component:
        interval = poller.interval
        behind = POLLER_BEHIND_INTERVALS * interval
        detail: dict[str, Any] = {"interval_seconds": interval}
        if stored.failing is not None:
            count, oldest = stored.failing[poller.channel]
            detail.update(submissions_failing=count, oldest_failure_age_seconds=_age(oldest, now))
        mine = [s for s in states if s.kind == poller.kind]
        if mine:
            state = mine[0]
            detail.update(_loop_json(state, now))
            if not state.running:
                return _degraded(f"the poller is restarting after {detail['last_error_type']}", **detail)
            since = _age(state.last_success_at or state.started_at, now)
        elif stored.heartbeats is None:
            return _ok(**detail, running=None)  # unknown while the database cannot be read
        else:
            rows = [r for r in stored.heartbeats if r.kind == poller.kind
                    and (_age(r.beat_at, now) or 0) <= max(STALE_AFTER_SECONDS, behind)]
            if not rows:
                return _degraded(f"no {poller.label} is running", **detail, running=0)
            detail["running"] = len(rows)
            since = min(_age(r.last_success_at or r.started_at, now) or 0.0 for r in rows)
        detail["last_success_age_seconds"] = since
        if since is None or since > behind:
            return _degraded(f"no successful poll for {since:.0f} s (polling every {interval:g} s)", **detail)
        return _ok(**detail)

    def _blob_store(self) -> Component:
        root = self.config.storage.blob_dir
        minimum = self.config.limits.blob_min_free_bytes
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / f".health-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            try:
                with open(probe, "wb") as fh:
                    fh.write(b"ok")
                    fh.flush()
                    os.fsync(fh.fileno())
            finally:
                probe.unlink(missing_ok=True)
            free = shutil.disk_usage(root).free
        except OSError as exc:
            return _degraded(f"the blob store is not writable ({type(exc).__name__})", writable=False)
        if free < minimum:
            return _degraded(f"the blob store has {free} bytes free, less than {minimum}", writable=True,
                             free_bytes=free, min_free_bytes=minimum)
        return _ok(writable=True, free_bytes=free, min_free_bytes=minimum)
