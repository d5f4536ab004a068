"""What ``/metrics`` reads from the database when it is scraped: the queue, the circuits, the loops, the watches.

These are facts of the shared database, not of one process, so one API process reports them for every
worker (the counters and histograms of :mod:`hub.metrics` are summed over processes instead). The queries
are cheap and bounded: messages are counted only while they are not finished (the ``status`` index), the
other tables are small (one row per target, per loop). The result is kept for ``ttl`` seconds, so that
several scrapers cost one round of queries.

A database that does not answer gives ``xhub_store_up 0`` and nothing else from here: the scrape itself
still succeeds, with the counters of every process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from hub.models import LoopHeartbeat, Message, TargetState, utcnow
from hub.readiness import STALE_AFTER_SECONDS
from hub.statemachine import TERMINAL, Status
from hub.watch import Gauge, Watches

__all__ = ["StoreCollector"]

WAITING = [s.value for s in Status if s not in TERMINAL]


class StoreCollector(Collector):
    """A prometheus-client collector over the hub's database.

    ``targets`` are the configured targets (each gets its circuit series, with or without a row yet),
    ``loop_kinds`` the loops that should run somewhere (``worker``, the pollers): each gets
    ``xhub_loops_running``, ``0`` when none runs, so that an alert can see it.
    """

    def __init__(self, engine: Engine, *, targets: Iterable[str], loop_kinds: Iterable[str],
                 watches: Watches | None = None, ttl: float = 10.0) -> None:
        self.engine, self.targets, self.loop_kinds = engine, sorted(targets), sorted(set(loop_kinds))
        self.watches, self.ttl = watches, ttl
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._families: list[GaugeMetricFamily] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            if time.monotonic() - self._at >= self.ttl:
                self._families = self._read()
                self._at = time.monotonic()
            yield from self._families

    def _read(self) -> list[GaugeMetricFamily]:
        now = utcnow()
        up = GaugeMetricFamily("xhub_store_up", "1 when the database answered the metrics queries")
        try:
            families = self._queue(now) + self._circuits(now) + self._loops(now)
        except SQLAlchemyError:
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        if self.watches is not None:
            families += _gauges([g for r in self.watches.reports(now) for g in r.gauges])
        return [up, *families]

    def _queue(self, now: datetime) -> list[GaugeMetricFamily]:
        waiting = GaugeMetricFamily("xhub_queue_messages", "Messages not finished yet, by status, tenant, channel, "
                                    "route", labels=["status", "tenant", "channel", "route"])
        due = GaugeMetricFamily("xhub_queue_due_messages", "Messages due for a worker now (not leased)")
        oldest = GaugeMetricFamily("xhub_queue_oldest_waiting_seconds", "How long the message due the longest has "
                                   "been waiting for a worker (0: none waiting)")
        due_now = (Message.status.in_(WAITING), Message.next_attempt_at <= now,
                   or_(Message.lease_expires_at.is_(None), Message.lease_expires_at < now))
        with self.engine.connect() as conn:
            rows = conn.execute(select(Message.status, Message.tenant, Message.channel, Message.route, func.count())
                                .where(Message.status.in_(WAITING))
                                .group_by(Message.status, Message.tenant, Message.channel, Message.route)).all()
            count, since = conn.execute(select(func.count(), func.min(Message.next_attempt_at))
                                        .where(*due_now)).one()
        for status, tenant, channel, route, n in rows:
            waiting.add_metric([status, tenant, channel, route or ""], n)
        due.add_metric([], count)
        oldest.add_metric([], 0.0 if since is None else max(0.0, (now - since).total_seconds()))
        return [waiting, due, oldest]

    def _circuits(self, now: datetime) -> list[GaugeMetricFamily]:
        circuit = GaugeMetricFamily("xhub_circuit_open", "1 while a target's circuit is open (no calls are made)",
                                    labels=["target"])
        failures = GaugeMetricFamily("xhub_target_consecutive_failures", "Transient failures of a target in a row",
                                     labels=["target"])
        with self.engine.connect() as conn:
            states = {r.target: r for r in conn.execute(select(TargetState.target, TargetState.open_until,
                                                               TargetState.consecutive_failures))}
        for target in self.targets:
            state = states.get(target)
            is_open = state is not None and state.open_until is not None and state.open_until > now
            circuit.add_metric([target], 1.0 if is_open else 0.0)
            failures.add_metric([target], 0 if state is None else state.consecutive_failures)
        return [circuit, failures]

    def _loops(self, now: datetime) -> list[GaugeMetricFamily]:
        running = GaugeMetricFamily("xhub_loops_running", "Background loops (workers, pollers) with a fresh "
                                    "heartbeat, in any process", labels=["kind"])
        success = GaugeMetricFamily("xhub_loop_last_success_age_seconds", "Seconds since the most recent success "
                                    "of a running loop of this kind (a poll that reached the other side, a message)",
                                    labels=["kind"])
        with self.engine.connect() as conn:
            beats = conn.execute(select(LoopHeartbeat.kind, LoopHeartbeat.beat_at, LoopHeartbeat.started_at,
                                        LoopHeartbeat.last_success_at)).all()
        live: dict[str, list[float]] = {kind: [] for kind in self.loop_kinds}
        for kind, beat_at, started_at, last_success_at in beats:
            if (now - beat_at).total_seconds() <= STALE_AFTER_SECONDS:
                live.setdefault(kind, []).append((now - (last_success_at or started_at)).total_seconds())
        for kind, ages in sorted(live.items()):
            running.add_metric([kind], len(ages))
            if ages:
                success.add_metric([kind], max(0.0, min(ages)))
        return [running, success]


def _gauges(samples: Sequence[Gauge]) -> list[GaugeMetricFamily]:
    families: dict[str, GaugeMetricFamily] = {}
    for g in samples:
        family = families.get(g.name)
        if family is None:
            family = families[g.name] = GaugeMetricFamily(g.name, g.help, labels=sorted(g.labels))
        family.add_metric([g.labels[k] for k in sorted(g.labels)], g.value)
    return list(families.values())
