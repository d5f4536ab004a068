"""What the processes of a hub count, for Prometheus: the metrics recorded as things happen.

The core, the channels and the worker call the small ``record_*``/``observe_*`` functions below; each is a
few counter or histogram updates and never raises into the caller. The series are created on first use,
so that the composition root can switch prometheus-client to multi-process mode (``xhub serve`` and every
``xhub worker`` write into one directory, which ``/metrics`` reads) before any of them exists:
:func:`xhub.observability.setup_metrics`.

What the database knows (messages waiting, the oldest of them, circuits, loops, deadlines, key expiry) is
not counted here but read when ``/metrics`` is scraped (:mod:`hub.metrics_store`): one process answers for
every worker, and nothing is double counted.

Labels are bounded by the configuration: status, tenant, channel, route, target, stage, outcome. Never a
message id, a case id or anything a sender chooses.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec

from prometheus_client import Counter, Histogram

from hub import tracing

if TYPE_CHECKING:
    from hub.ports import DeliveryRequest, DeliveryResult, OutboundAdapter

__all__ = ["STAGE_BUCKETS", "TimedAdapter", "observe_stage", "record_delivery", "record_poll", "record_polled",
           "record_purged", "record_status", "series"]

log = logging.getLogger(__name__)
P = ParamSpec("P")

#: seconds; a stage is a parse or a schema check (milliseconds) up to a slow SOAP call (a minute)
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class _Series:
    """Every series this module records; built once per process, on first use."""

    def __init__(self) -> None:
        self.messages = Counter(
            "xhub_messages", "Messages that reached a status (accepted: received), by status, tenant, channel, route",
            ["status", "tenant", "channel", "route"])
        self.stage_seconds = Histogram(
            "xhub_stage_duration_seconds", "Time one pipeline stage took for one message (verify, validate, route, "
            "deliver, acknowledge)", ["stage"], buckets=STAGE_BUCKETS)
        self.delivery_attempts = Counter(
            "xhub_delivery_attempts", "Delivery attempts per target and outcome (delivered, retriable, permanent, "
            "invalid)", ["target", "outcome"])
        self.delivery_seconds = Histogram(
            "xhub_delivery_duration_seconds", "Time the target took to answer one delivery call", ["target"],
            buckets=STAGE_BUCKETS)
        self.polls = Counter("xhub_polls", "Polls of a channel's remote mailbox, by result (ok, failed)",
                             ["channel", "result"])
        self.polled = Counter(
            "xhub_polled_messages", "Messages a poll found, by outcome (stored, refused: stored to be rejected, "
            "known: stored before, failed: retried on the next poll)", ["channel", "outcome"])
        self.purged = Counter("xhub_purged_messages", "Messages whose payloads and blobs the retention purge removed")
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Counter | Histogram, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once: the hot path records a dozen series per message."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children.setdefault(key, metric.labels(*labels))
        return found


_series: _Series | None = None
_lock = threading.Lock()


def series() -> _Series:
    """The process's series (created on first call)."""
    global _series
    if _series is None:
        with _lock:
            if _series is None:
                _series = _Series()
    return _series


def _never_raises(record: Callable[P, None]) -> Callable[P, None]:
    """Counting must not fail a message: a metrics file that cannot be written (disk full, folder removed) is
    logged, once per process, and the count is lost."""
    @functools.wraps(record)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        global _failed
        try:
            record(*args, **kwargs)
        except OSError as exc:
            if not _failed:
                _failed = True
                log.error("metrics: counting failed (%s); counts of this process are incomplete from now on",
                          type(exc).__name__)
    return wrapper


_failed = False


@_never_raises
def record_status(status: str, *, tenant: str, channel: str, route: str | None) -> None:
    """A message reached ``status`` (call after the commit that moved it)."""
    s = series()
    s.child(s.messages, status, tenant, channel, route or "").inc()


@_never_raises
def observe_stage(stage: str, seconds: float) -> None:
    s = series()
    s.child(s.stage_seconds, stage).observe(seconds)


@_never_raises
def record_delivery(target: str, outcome: str) -> None:
    """One attempt at ``target`` ended with ``outcome`` (``delivered`` or the error class in lower case)."""
    s = series()
    s.child(s.delivery_attempts, target, outcome).inc()


@_never_raises
def record_poll(channel: str, *, ok: bool) -> None:
    s = series()
    s.child(s.polls, channel, "ok" if ok else "failed").inc()


@_never_raises
def record_polled(channel: str, **outcomes: int) -> None:
    """What one poll did with the messages it found, e.g. ``stored=2, known=5``."""
    s = series()
    for outcome, count in outcomes.items():
        if count:
            s.child(s.polled, channel, outcome).inc(count)


@_never_raises
def record_purged(n: int) -> None:
    """The retention purge removed the payloads of ``n`` messages."""
    if n > 0:
        series().purged.inc(n)


class TimedAdapter:
    """An outbound adapter whose calls are timed per target (``xhub_delivery_duration_seconds``) and traced
    (a ``deliver`` span, :mod:`hub.tracing`); the rest of its interface is the wrapped adapter's."""

    def __init__(self, target: str, adapter: OutboundAdapter) -> None:
        self.target = target
        self.adapter = adapter
        self.name = adapter.name
        self.Config = adapter.Config

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        began = time.perf_counter()
        try:
            with tracing.span("deliver", target=self.target):
                return self.adapter.deliver(request)
        finally:
            _observe_call(self.target, time.perf_counter() - began)

    def __getattr__(self, name: str) -> Any:  # close() and whatever else an adapter offers
        return getattr(self.adapter, name)


@_never_raises
def _observe_call(target: str, seconds: float) -> None:
    s = series()
    s.child(s.delivery_seconds, target).observe(seconds)
