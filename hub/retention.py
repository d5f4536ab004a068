"""Retention: payloads and attachments are removed once a message has ended and its period has passed.

``[retention]`` gives a period per outcome (``delivered`` = status ``acknowledged``, ``rejected``, ``dead``),
overridden per tenant (``[retention.tenants.<tenant>]``) and per route (``[retention.routes.<route>]``; a
route's value wins over its tenant's, a tenant's over the general one; ``"never"`` keeps). A period counts from
the time the message reached its end state (``updated_at``: a requeued dead message starts again).

Purging a message is one guarded transition ``acknowledged | rejected | dead → purged`` with its event, in the
transaction that deletes its parts (bodies, names, digests); its blob files are deleted right after the commit.
What stays is the tombstone: the message row (ids, tenant, channel, route, standard, times, last error), its
deliveries and its whole event trail, including the purge event (outcome, when it ended, the period that
applied, how many parts and bytes went, and who purged: ``retention`` or the CLI user).

Batches are small and each is one short transaction; on PostgreSQL the rows are locked with ``SKIP LOCKED``,
so a worker that holds a message (a requeue racing the purge) is never waited for. Nothing here runs on the
hot path: the loop (:class:`hub.housekeeping.BatchLoop`) runs in a thread of its own in each worker process.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, func, select, tuple_

from hub import metrics
from hub.blobs import BlobStore
from hub.models import Message, MessagePart, utcnow
from hub.settings import RetentionConfig, RetentionPeriods
from hub.statemachine import IllegalTransition, Status, Transition, transition

__all__ = ["OUTCOMES", "Candidate", "Policy", "PurgeReport", "purge", "purge_batch"]

log = logging.getLogger(__name__)

#: The end states whose payloads retention removes, and the name of their period in ``[retention]``.
OUTCOMES: dict[Status, str] = {Status.ACKNOWLEDGED: "delivered", Status.REJECTED: "rejected", Status.DEAD: "dead"}
_SCAN_PAGE = 500


class Policy:
    """The period that applies to one message."""

    def __init__(self, config: RetentionConfig) -> None:
        self.config = config

    def period(self, status: Status, tenant: str, route: str | None) -> timedelta | None:
        key = OUTCOMES[status]
        overrides: list[RetentionPeriods | None] = [self.config.routes.get(route) if route else None,
                                                    self.config.tenants.get(tenant)]
        for periods in overrides:
            if periods is not None and key in periods.model_fields_set:
                value: timedelta | None = getattr(periods, key)
                return value
        general: timedelta | None = getattr(self.config, key)
        return general

    def shortest(self, status: Status) -> timedelta | None:
        """The shortest period any message in ``status`` can have (``None``: all are kept)."""
        key = OUTCOMES[status]
        tables = [self.config, *self.config.tenants.values(), *self.config.routes.values()]
        periods = [getattr(t, key) for t in tables if getattr(t, key) is not None]
        return min(periods) if periods else None

    @property
    def active(self) -> bool:
        return any(self.shortest(s) is not None for s in OUTCOMES)


@dataclass(frozen=True)
class Candidate:
    id: uuid.UUID
    tenant: str
    route: str | None
    status: Status
    ended_at: datetime
    period: timedelta


@dataclass
class PurgeReport:
    dry_run: bool = False
    messages: Counter[str] = field(default_factory=Counter)  # outcome → messages purged (or due, when dry)
    parts: int = 0
    bytes: int = 0
    blobs: int = 0  # blob files removed (dry: parts stored as files)
    skipped: int = 0  # changed or locked meanwhile: the next run looks again
    ids: list[uuid.UUID] = field(default_factory=list)
    remaining: bool = False  # a full batch: more may be due

    @property
    def total(self) -> int:
        return sum(self.messages.values())

    def __str__(self) -> str:
        verb = "due for purge" if self.dry_run else "purged"
        outcomes = ", ".join(f"{n} {o}" for o, n in sorted(self.messages.items())) or "none"
        return (f"{self.total} message(s) {verb} ({outcomes}): {self.parts} part(s), {self.bytes} bytes, "
                f"{self.blobs} blob file(s)" + (f"; {self.skipped} skipped" if self.skipped else ""))


def due(engine: Engine, policy: Policy, now: datetime, limit: int | None) -> list[Candidate]:
    """Messages whose period has passed, oldest first, at most ``limit`` (``None``: all)."""
    found: list[Candidate] = []
    for status in OUTCOMES:
        shortest = policy.shortest(status)
        if shortest is None:
            continue
        after: tuple[datetime, uuid.UUID] | None = None
        while limit is None or len(found) < limit:  # pages, so that long-kept routes do not hide the due ones
            stmt = (select(Message.id, Message.tenant, Message.route, Message.updated_at)
                    .where(Message.status == status.value, Message.updated_at <= now - shortest)
                    .order_by(Message.updated_at, Message.id).limit(_SCAN_PAGE))
            if after is not None:
                stmt = stmt.where(tuple_(Message.updated_at, Message.id) > after)
            with engine.connect() as conn:
                rows = conn.execute(stmt).all()
            for row in rows:
                period = policy.period(status, row.tenant, row.route)
                if period is not None and row.updated_at <= now - period:
                    found.append(Candidate(row.id, row.tenant, row.route, status, row.updated_at, period))
                    if limit is not None and len(found) >= limit:
                        break
            if len(rows) < _SCAN_PAGE:
                break
            after = (rows[-1].updated_at, rows[-1].id)
    found.sort(key=lambda c: c.ended_at)
    return found if limit is None else found[:limit]


def _sizes(engine: Engine, ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[int, int, int]]:
    """message id → (parts, bytes, blob files)."""
    if not ids:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(select(MessagePart.message_id, func.count(), func.coalesce(func.sum(MessagePart.size), 0),
                                   func.count(MessagePart.blob_path))
                            .where(MessagePart.message_id.in_(ids)).group_by(MessagePart.message_id)).all()
    return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}


def purge_batch(engine: Engine, policy: Policy, blobs: BlobStore | None, *, actor: str = "retention",
                limit: int = 100, dry_run: bool = False, now: datetime | None = None) -> PurgeReport:
    """Purge up to ``limit`` due messages in one short transaction (``dry_run``: only say which)."""
    now = now or utcnow()
    report = PurgeReport(dry_run=dry_run)
    candidates = due(engine, policy, now, limit)
    report.remaining = len(candidates) == limit
    sizes = _sizes(engine, [c.id for c in candidates])
    if dry_run:
        for c in candidates:
            parts, size, files = sizes.get(c.id, (0, 0, 0))
            report.messages[OUTCOMES[c.status]] += 1
            report.parts, report.bytes, report.blobs = report.parts + parts, report.bytes + size, report.blobs + files
            report.ids.append(c.id)
        return report
    if not candidates:
        return report
    with engine.begin() as conn:
        lock = select(Message.id).where(
            Message.id.in_([c.id for c in candidates]),
            tuple_(Message.id, Message.status, Message.updated_at).in_(
                [(c.id, c.status.value, c.ended_at) for c in candidates]))
        if engine.dialect.name == "postgresql":
            lock = lock.with_for_update(skip_locked=True)
        locked = set(conn.execute(lock).scalars())
        for c in candidates:
            if c.id not in locked:
                report.skipped += 1
                continue
            parts, size, files = sizes.get(c.id, (0, 0, 0))
            change = Transition(reason=f"purged by retention: {OUTCOMES[c.status]} messages are kept "
                                f"{_days(c.period)}; payload and attachments removed",
                                detail={"outcome": c.status.value, "ended_at": c.ended_at.isoformat(),
                                        "period_seconds": int(c.period.total_seconds()), "parts": parts,
                                        "bytes": size, "blob_files": files, "purged_by": actor})
            try:
                transition(conn, c.id, Status.PURGED, change, actor=actor, from_statuses={c.status})
            except IllegalTransition:  # moved meanwhile (requeued): not due any more
                report.skipped += 1
                continue
            conn.execute(delete(MessagePart).where(MessagePart.message_id == c.id))
            report.messages[OUTCOMES[c.status]] += 1
            report.parts, report.bytes = report.parts + parts, report.bytes + size
            report.ids.append(c.id)
    if blobs is not None:  # after the commit: a crash in between leaves sealed files of a tombstone, never a
        for message_id in report.ids:  # message whose parts are gone from under it
            report.blobs += blobs.remove(message_id)
    if report.total:
        metrics.record_purged(report.total)
        log.info("retention: %s", report)
    return report


def purge(engine: Engine, policy: Policy, blobs: BlobStore | None, *, actor: str = "retention", batch: int = 100,
          dry_run: bool = False, now: datetime | None = None) -> PurgeReport:
    """Everything due, batch after batch (the CLI); ``dry_run`` lists all of it at once."""
    now = now or utcnow()
    if dry_run:
        return purge_batch(engine, policy, blobs, actor=actor, limit=10**9, dry_run=True, now=now)
    total = PurgeReport()
    while True:
        step = purge_batch(engine, policy, blobs, actor=actor, limit=batch, now=now)
        total.messages.update(step.messages)
        total.parts += step.parts
        total.bytes += step.bytes
        total.blobs += step.blobs
        total.skipped += step.skipped
        total.ids.extend(step.ids)
        if not step.remaining or not step.total:
            return total


def _days(period: timedelta) -> str:
    seconds = int(period.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400} day(s)"
    return f"{seconds // 3600} hour(s)" if seconds % 3600 == 0 else f"{seconds} second(s)"
