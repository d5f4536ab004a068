"""Claiming work: leases on due messages, safe for any number of workers on any number of machines.

A message is *due* when its status is in :data:`~hub.statemachine.ACTIVE`, ``next_attempt_at`` has
passed and nobody holds a live lease on it. Claiming sets ``lease_owner``/``lease_expires_at``:

* PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED`` picks rows no other transaction is looking at, then
  one ``UPDATE`` takes them, so two workers never claim the same message and never wait on each other.
* SQLite: the transaction starts with ``BEGIN IMMEDIATE`` (one writer at a time, see :mod:`hub.db`), and
  the ``UPDATE … WHERE <still due> RETURNING`` is conditional, so a claim can only succeed once.

A crashed worker's lease simply expires; the next claim takes the message over and says so in the trail.
Worker clocks must agree to well within the lease duration (run NTP), as the lease is compared in UTC.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Connection, Engine, and_, or_, select, update

from hub.db import is_postgres
from hub.models import Message, utcnow
from hub.statemachine import ACTIVE, note

__all__ = ["Claim", "claim_next", "owns", "release", "renew"]


@dataclass(frozen=True)
class Claim:
    message_id: uuid.UUID
    status: str
    lease_expires_at: datetime
    previous_owner: str | None


def _due(now: datetime) -> list[ColumnElement[bool]]:
    return [
        Message.status.in_([s.value for s in ACTIVE]),
        Message.next_attempt_at <= now,
        or_(Message.lease_expires_at.is_(None), Message.lease_expires_at < now),
    ]


def claim_next(engine: Engine, owner: str, lease: timedelta) -> Claim | None:
    """Claim the message that has been due the longest, or return ``None`` when nothing is due."""
    with engine.begin() as conn:
        now = utcnow()
        pick = (
            select(Message.id, Message.lease_owner)
            .where(*_due(now))
            .order_by(Message.next_attempt_at)
            .limit(1)
        )
        if is_postgres(engine):
            pick = pick.with_for_update(skip_locked=True)
        row = conn.execute(pick).first()
        if row is None:
            return None
        message_id, previous = row
        expires = now + lease
        taken = conn.execute(
            update(Message)
            .where(Message.id == message_id, and_(*_due(now)))
            .values(lease_owner=owner, lease_expires_at=expires)
            .returning(Message.status)
        ).first()
        if taken is None:  # only reachable if the guard and the pick disagree; nothing was changed
            return None
        if previous is not None:
            note(
                conn,
                message_id,
                f"lease of {previous} expired; taken over by {owner}",
                actor=owner,
                status=taken.status,
                detail={"previous_owner": previous},
            )
        return Claim(message_id, taken.status, expires, previous)


def renew(conn: Connection, message_id: uuid.UUID, owner: str, lease: timedelta) -> bool:
    """Extend a lease the caller still holds. ``False`` means it was lost (expired and taken over)."""
    result = conn.execute(
        update(Message)
        .where(Message.id == message_id, Message.lease_owner == owner)
        .values(lease_expires_at=utcnow() + lease)
    )
    return result.rowcount == 1


def owns(conn: Connection, message_id: uuid.UUID, owner: str, margin: timedelta) -> bool:
    """Whether ``owner`` holds the lease for at least ``margin`` more (a read: no commit to wait for)."""
    held = conn.execute(
        select(Message.id).where(Message.id == message_id, Message.lease_owner == owner,
                                 Message.lease_expires_at > utcnow() + margin)
    ).first()
    return held is not None


def release(conn: Connection, message_id: uuid.UUID, owner: str) -> bool:
    """Give a lease back (graceful shutdown) so another worker can continue at once."""
    result = conn.execute(
        update(Message)
        .where(Message.id == message_id, Message.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
    )
    return result.rowcount == 1
