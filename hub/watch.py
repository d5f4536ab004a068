"""Watches: what must be looked at before it goes wrong (deadlines, expiring keys and certificates).

A :class:`Watch` reads its facts (the database, key files) and gives a :class:`Report`: gauges for
``/metrics`` and a component for ``/health/ready``. The composition root decides which watches a hub has
(:mod:`xhub.watches`); :class:`Watches` runs them at most once per ``ttl`` seconds, so that a scrape every
15 s and a readiness probe every 5 s do not read key files and count rows each time.

A watch only warns: its component is ``ok`` or ``warning``, never ``degraded``. An expiring certificate or a
submission close to its deadline is the operator's to act on; taking the hub out of its load balancer would
not help, and would stop the messages that are fine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from cryptography import x509
from sqlalchemy import Engine

from hub.readiness import Component

__all__ = ["Gauge", "KeyExpiry", "KeySource", "Report", "Watch", "Watches", "pem_not_after"]


@dataclass(frozen=True)
class Gauge:
    """One sample of a gauge family (``name`` with its ``help``); labels are configuration names only."""

    name: str
    help: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Report:
    component: str  # its name in /health/ready
    status: Component
    gauges: list[Gauge] = field(default_factory=list)


class Watch(Protocol):
    component: str  # its name in /health/ready

    def check(self, engine: Engine, now: datetime) -> Report: ...


class Watches:
    """The hub's watches, each run at most once per ``ttl`` seconds (a failing one is reported, not raised)."""

    def __init__(self, engine: Engine, watches: Sequence[Watch], ttl: float = 30.0) -> None:
        self.engine, self.watches, self.ttl = engine, list(watches), ttl
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._reports: list[Report] = []

    def reports(self, now: datetime) -> list[Report]:
        with self._lock:
            if time.monotonic() - self._at >= self.ttl:
                self._reports = [self._run(w, now) for w in self.watches]
                self._at = time.monotonic()
            return list(self._reports)

    def components(self, now: datetime) -> list[tuple[str, Component]]:
        """For :class:`hub.readiness.Health`."""
        return [(r.component, r.status) for r in self.reports(now)]

    def _run(self, watch: Watch, now: datetime) -> Report:
        try:
            return watch.check(self.engine, now)
        except Exception as exc:  # a watch is advice: its failure must not break /metrics or /health/ready
            return Report(watch.component, Component("warning", f"the check failed ({type(exc).__name__})"))


# --------------------------------------------------------------------------------------------------
# Keys and certificates


def pem_not_after(path: Path) -> datetime:
    """The end of validity of the first certificate in a PEM file (a client certificate and its chain)."""
    return x509.load_pem_x509_certificates(path.read_bytes())[0].not_valid_after_utc


@dataclass(frozen=True)
class KeySource:
    """A key or certificate whose validity ends: ``kind`` (e.g. ``client_certificate``), ``name`` (the target
    or destination), and how to read its end (``None``: the key has no end, e.g. a JWK without x5c)."""

    kind: str
    name: str
    not_after: Callable[[], datetime | None]


class KeyExpiry:
    """``xhub_key_expiry_seconds{kind,name}`` (negative once expired) and the ``keys`` component: a warning
    when one ends within ``warn_days`` or cannot be read."""

    component = "keys"

    def __init__(self, sources: Sequence[KeySource], warn_days: float = 30.0) -> None:
        self.sources, self.warn_days = list(sources), warn_days

    def check(self, engine: Engine, now: datetime) -> Report:
        gauges, soon, detail = [], [], {}
        for source in self.sources:
            label = f"{source.kind} {source.name}"
            try:
                end = source.not_after()
            except (OSError, ValueError) as exc:  # missing or not a certificate: named, not quoted
                soon.append(f"{label} cannot be read ({type(exc).__name__})")
                continue
            if end is None:
                continue
            left = (end - now).total_seconds()
            gauges.append(Gauge("xhub_key_expiry_seconds", "Seconds until a key or certificate expires "
                                "(negative: expired)", {"kind": source.kind, "name": source.name}, left))
            detail[label] = {"expires_in_days": round(left / 86400, 1)}
            if left <= 0:
                soon.append(f"{label} has expired")
            elif left < self.warn_days * 86400:
                soon.append(f"{label} expires in {left / 86400:.0f} days")
        status = Component("warning", "; ".join(soon), detail) if soon else Component("ok", None, detail)
        return Report(self.component, status, gauges)

