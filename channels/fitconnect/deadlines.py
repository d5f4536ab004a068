"""FIT-Connect's deadlines and the destinations' keys, watched (:mod:`hub.watch`).

The delivery service does not wait for ever: a submission not fetched is escalated to the authority after
``escalate_after_days`` (3) and rejected automatically after ``auto_reject_after_days`` (14); a fetched
one is deleted there after ``delete_after_fetch_days`` (7), by when the hub should have answered it. Per
destination this watch reports

* the oldest submission **waiting to be fetched** that the hub knows of: one its poller listed but could not
  take in (``intake_failures``, by the destination it was listed at), with the time left before escalation
  and before the automatic rejection;
* the oldest submission **fetched but not answered** yet (stored, neither acknowledged nor rejected), with
  the time left before the delivery service deletes it.

A submission the poller never saw (because no poller runs) is not known here: ``xhub_loops_running`` and
the poller's component in ``/health/ready`` say that.

The keys of each destination (encryption and signing) end with their certificate (``x5c``); a JWK without
one has no end to watch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, func, select

from channels.fitconnect.config import DestinationConfig, FitConnectConfig
from channels.fitconnect.intake import CHANNEL
from channels.fitconnect.keys import certificate_end
from hub.models import IntakeFailure, Message
from hub.readiness import Component
from hub.statemachine import Status
from hub.watch import Gauge, KeySource, Report

__all__ = ["DeadlineWatch", "key_sources"]

DAY = 86400.0
UNANSWERED = [s.value for s in Status if s not in (Status.ACKNOWLEDGED, Status.REJECTED)]


class DeadlineWatch:
    """The ``fitconnect_deadlines`` component and the ``xhub_fitconnect_*`` gauges."""

    component = "fitconnect_deadlines"

    def __init__(self, fc: FitConnectConfig) -> None:
        self.fc = fc

    def check(self, engine: Engine, now: datetime) -> Report:
        fc = self.fc
        destination = Message.attributes["destination"].as_string()
        unfetched: dict[str | None, datetime]
        unanswered: dict[str | None, datetime]
        with engine.connect() as conn:
            unfetched = dict(conn.execute(
                select(IntakeFailure.source, func.min(IntakeFailure.first_failed_at))
                .where(IntakeFailure.channel == CHANNEL).group_by(IntakeFailure.source)).all())
            unanswered = dict(conn.execute(
                select(destination, func.min(Message.created_at))
                .where(Message.channel == CHANNEL, Message.status.in_(UNANSWERED)).group_by(destination)).all())
        gauges: list[Gauge] = []
        warnings: list[str] = []
        detail: dict[str, dict[str, float]] = {}
        for d in fc.destinations:
            waiting = _age(now, _lookup(unfetched, d.id))
            open_for = _age(now, _lookup(unanswered, d.id))
            labels = {"destination": d.id}
            gauges += [
                Gauge("xhub_fitconnect_oldest_waiting_seconds", "Age of the oldest submission the hub saw at the "
                      "delivery service and could not fetch yet (0: none)", labels, waiting),
                Gauge("xhub_fitconnect_escalation_seconds_left", "Seconds before the oldest unfetched submission is "
                      "escalated by the delivery service (negative: escalated)", labels,
                      fc.escalate_after_days * DAY - waiting),
                Gauge("xhub_fitconnect_auto_reject_seconds_left", "Seconds before the oldest unfetched submission is "
                      "rejected automatically by the delivery service", labels,
                      fc.auto_reject_after_days * DAY - waiting),
                Gauge("xhub_fitconnect_oldest_unanswered_seconds", "Age of the oldest fetched submission without an "
                      "accept or reject yet (0: none)", labels, open_for),
                Gauge("xhub_fitconnect_deletion_seconds_left", "Seconds before the delivery service deletes the oldest "
                      "fetched submission not answered yet", labels, fc.delete_after_fetch_days * DAY - open_for),
            ]
            detail[d.id] = {"oldest_waiting_seconds": round(waiting, 1),
                            "escalation_in_seconds": round(fc.escalate_after_days * DAY - waiting, 1),
                            "oldest_unanswered_seconds": round(open_for, 1)}
            limit = fc.warn_waiting_hours * 3600
            if waiting > limit:
                warnings.append(f"destination {d.id}: a submission has waited {waiting / 3600:.0f} h to be fetched "
                                f"(escalated after {fc.escalate_after_days:g} days)")
            if open_for > limit:
                warnings.append(f"destination {d.id}: a fetched submission has waited {open_for / 3600:.0f} h for "
                                "its answer")
        status = Component("warning", "; ".join(warnings), detail) if warnings else Component("ok", None, detail)
        return Report(self.component, status, gauges)


def _lookup(by_destination: dict[str | None, datetime], destination_id: str) -> datetime | None:
    for key, moment in by_destination.items():
        if key is not None and key.lower() == destination_id.lower():
            return moment
    return None


def _age(now: datetime, since: datetime | None) -> float:
    return 0.0 if since is None else max(0.0, (now - since).total_seconds())


def key_sources(fc: FitConnectConfig) -> list[KeySource]:
    """The destinations' encryption and signing keys, for :class:`hub.watch.KeyExpiry`."""
    return [KeySource(f"fitconnect_{purpose}", d.id, _end(d, purpose))
            for d in fc.destinations for purpose in ("encryption", "signing")]


def _end(destination: DestinationConfig, purpose: str) -> Callable[[], datetime | None]:
    path: Path | None = getattr(destination, f"{purpose}_key")
    env: str | None = getattr(destination, f"{purpose}_key_env")

    def read() -> datetime | None:
        if path is not None:
            return certificate_end(path)
        text = os.environ.get(env or "")
        if not text:
            raise ValueError("its environment variable is not set")
        return certificate_end(text)

    return read
