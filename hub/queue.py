"""Claiming work: leases on due messages, safe for any number of workers on any number of machines.

A message is *due* when its status is in :data:`~hub.statemachine.ACTIVE`, ``next_attempt_at`` has
passed and nobody holds a live lease on it. Claiming sets ``lease_owner``/``lease_expires_at``:

* PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED`` picks rows no other transaction is looking at, then
  one ``UPDATE`` takes them, so two workers never claim the same message and never wait on each other.
* SQLite: the transaction starts with ``BEGIN IMMEDIATE`` (one writer at a time, see :mod:`hub.db`), and
  the ``UPDATE … WHERE <still due> RETURNING`` is conditional, so a claim can only succeed once.

Workers claim in batches (:func:`claim_batch`, ``LIMIT n``), in a transaction that also loads what the
batch needs (rows, parts, deliveries), and renew and give back leases for a whole batch in one update
(:func:`renew_batch`, :func:`release_batch`).

A crashed worker's lease simply expires; the next claim takes the message over and says so in the trail.
Worker clocks must agree to well within the lease duration (run NTP), as the lease is compared in UTC.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Connection, Engine, or_, select, update

from hub.models import Delivery, Message, MessagePart, utcnow
from hub.statemachine import ACTIVE, Status, note

__all__ = ["Claim", "Claimed", "claim_batch", "claim_next", "owns", "release", "release_batch", "renew",
           "renew_batch"]


@dataclass(frozen=True)
class Claim:
    message_id: uuid.UUID
    status: str
    lease_expires_at: datetime
    previous_owner: str | None


@dataclass
class Claimed:
    """A message claimed with its batch, loaded with what its run needs."""

    message: Message
    parts: list[MessagePart]
    deliveries: list[Delivery] | None  # None: the message has none yet (not routed)
    lease_expires_at: datetime
    previous_owner: str | None


def _due(now: datetime) -> list[ColumnElement[bool]]:
    return [
        Message.status.in_([s.value for s in ACTIVE]),
        Message.next_attempt_at <= now,
        or_(Message.lease_expires_at.is_(None), Message.lease_expires_at < now),
    ]


_MESSAGE = Message.__table__
_PART = MessagePart.__table__
_DELIVERY = Delivery.__table__
#: statuses whose message may have delivery rows (routed on, or waiting to resume there)
_ROUTED = {Status.ROUTED.value, Status.DELIVERED.value}


def claim_batch(conn: Connection, owner: str, lease: timedelta, limit: int,
                ids: Sequence[uuid.UUID] = ()) -> list[Claimed]:
    """Claim up to ``limit`` messages that have been due the longest (plus ``ids``, which the caller made due
    in this transaction), in the caller's transaction, and load their rows, parts and deliveries.

    The claim moves ``next_attempt_at`` to the lease's expiry, so that messages in flight leave the range
    of the due index: the next claim does not scan them, and a message whose worker died is due again
    exactly when its lease expires.
    """
    now = utcnow()
    pick = select(Message.id, Message.lease_owner).where(*_due(now)).order_by(Message.next_attempt_at).limit(limit)
    if conn.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    previous = {row.id: row.lease_owner for row in conn.execute(pick)}
    for extra in ids:
        previous.setdefault(extra, None)
    if not previous:
        return []
    expires = now + lease
    rows = conn.execute(
        update(Message)
        .where(Message.id.in_(list(previous)), *_due(now))
        .values(lease_owner=owner, lease_expires_at=expires, next_attempt_at=expires)
        .returning(*_MESSAGE.c)
    ).all()
    if not rows:  # only reachable if the guard and the pick disagree; nothing was changed
        return []
    messages = [Message(**row._mapping) for row in rows]
    claimed_ids = [m.id for m in messages]
    parts: dict[uuid.UUID, list[MessagePart]] = {m: [] for m in claimed_ids}
    for row in conn.execute(select(*_PART.c).where(_PART.c.message_id.in_(claimed_ids))
                            .order_by(_PART.c.message_id, _PART.c.part_no)):
        parts[row.message_id].append(MessagePart(**row._mapping))
    routed = [m.id for m in messages if m.status in _ROUTED or m.resume_status in _ROUTED]
    deliveries: dict[uuid.UUID, list[Delivery]] = {}
    if routed:
        for row in conn.execute(select(*_DELIVERY.c).where(_DELIVERY.c.message_id.in_(routed))
                                .order_by(_DELIVERY.c.id)):
            deliveries.setdefault(row.message_id, []).append(Delivery(**row._mapping))
    out = []
    for message in messages:
        before = previous[message.id]
        if before is not None:
            note(conn, message.id, f"lease of {before} expired; taken over by {owner}", actor=owner,
                 status=message.status, detail={"previous_owner": before})
        out.append(Claimed(message, parts[message.id], deliveries.get(message.id), expires, before))
    return out


def claim_next(engine: Engine, owner: str, lease: timedelta) -> Claim | None:
    """Claim the message that has been due the longest, or return ``None`` when nothing is due."""
    with engine.begin() as conn:
        claimed = claim_batch(conn, owner, lease, 1)
    if not claimed:
        return None
    first = claimed[0]
    return Claim(first.message.id, first.message.status, first.lease_expires_at, first.previous_owner)


def renew_batch(conn: Connection, message_ids: Sequence[uuid.UUID], owner: str,
                lease: timedelta) -> dict[uuid.UUID, datetime]:
    """Extend the leases the caller still holds among ``message_ids``, in one update. Returns the renewed ones
    with their new expiry (a missing one was lost, or finished and released)."""
    if not message_ids:
        return {}
    expires = utcnow() + lease
    rows = conn.execute(
        update(Message)
        .where(Message.id.in_(list(message_ids)), Message.lease_owner == owner)
        .values(lease_expires_at=expires, next_attempt_at=expires)
        .returning(Message.id)
    ).all()
    return {row.id: expires for row in rows}


def release_batch(conn: Connection, message_ids: Sequence[uuid.UUID], owner: str) -> int:
    """Give back the leases the caller still holds among ``message_ids``; they are due at once."""
    if not message_ids:
        return 0
    return conn.execute(
        update(Message)
        .where(Message.id.in_(list(message_ids)), Message.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None, next_attempt_at=utcnow())
    ).rowcount


def renew(conn: Connection, message_id: uuid.UUID, owner: str, lease: timedelta) -> bool:
    """Extend a lease the caller still holds. ``False`` means it was lost (expired and taken over)."""
    return message_id in renew_batch(conn, [message_id], owner, lease)


def owns(conn: Connection, message_id: uuid.UUID, owner: str, margin: timedelta) -> bool:
    """Whether ``owner`` holds the lease for at least ``margin`` more (a read: no commit to wait for)."""
    held = conn.execute(
        select(Message.id).where(Message.id == message_id, Message.lease_owner == owner,
                                 Message.lease_expires_at > utcnow() + margin)
    ).first()
    return held is not None


def release(conn: Connection, message_id: uuid.UUID, owner: str) -> bool:
    """Give a lease back (graceful shutdown) so another worker can continue at once."""
    return release_batch(conn, [message_id], owner) == 1
