"""The one place where a message's status changes.

Every change is a guarded ``UPDATE messages SET status=:to ... WHERE id=:id AND status IN (:allowed)``
(and, for a worker, ``AND lease_owner=:me``), followed by an event row **in the same transaction**. When no
row matched, :class:`IllegalTransition` is raised and the transaction rolls back: a stale worker, a
double click in the console or a bug can never move a message along a path that is not in ``TRANSITIONS``.

The happy path::

    received ──► validated ──► routed ──► delivered ──► acknowledged
        │            │            │           │
        └────────────┴─────┬──────┴───────────┘
                           ▼
            retry_wait (transient failure; next_attempt_at set; resumes where it left off)
            rejected   (can never be processed; terminal)
            dead       (retry budget spent, or no route; an operator can requeue or reject)

    acknowledged | rejected | dead ──► purged   (retention removed payload and attachments; the row and its
                                                 events stay as the tombstone, hub.retention)

A message's columns change only through :class:`Transition`: its named attributes for the retry and lease
bookkeeping, and ``fields`` for what the stages learn (:data:`FIELDS`, a whitelist checked when the
transition is built, so nothing can slip a ``status`` or a lease past the guard).

Each delivery of a routed message to one target has its own, smaller machine (:data:`DELIVERY_TRANSITIONS`,
applied by :func:`move_delivery`, with a ``delivery`` event per attempt)::

    pending ──► delivered
       │            ▲
       ▼            │
     failed ────────┘   (failed ──► failed: the retry failed again)

A failed delivery is retried as it is, when its message resumes (after ``retry_wait``, or an operator's
requeue of a dead message); a delivered one is never sent again. Nothing moves a delivery back to
``pending``.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import Connection, insert, select, update

from hub.models import Delivery, DeliveryStatus, Event, Message, utcnow

__all__ = [
    "ACTIVE",
    "DELIVERY_TRANSITIONS",
    "FIELDS",
    "TERMINAL",
    "TRANSITIONS",
    "DeliveryChange",
    "DeliveryStatus",
    "IllegalDeliveryTransition",
    "IllegalTransition",
    "Status",
    "Transition",
    "allowed_from",
    "event_row",
    "move_delivery",
    "note",
    "record_event",
    "transition",
    "transition_values",
]


class Status(enum.StrEnum):
    RECEIVED = "received"
    VALIDATED = "validated"
    ROUTED = "routed"
    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"
    RETRY_WAIT = "retry_wait"
    REJECTED = "rejected"
    DEAD = "dead"
    PURGED = "purged"


S = Status
_WORK = (S.RECEIVED, S.VALIDATED, S.ROUTED, S.DELIVERED)

#: to-status → the statuses it may be reached from.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    S.VALIDATED: frozenset({S.RECEIVED, S.RETRY_WAIT}),
    S.ROUTED: frozenset({S.VALIDATED, S.RETRY_WAIT}),
    S.DELIVERED: frozenset({S.ROUTED, S.RETRY_WAIT}),
    S.ACKNOWLEDGED: frozenset({S.DELIVERED, S.RETRY_WAIT}),
    # A retry_wait message resumes at the stage that failed; a dead one is requeued through retry_wait.
    S.RECEIVED: frozenset({S.RETRY_WAIT}),
    # retry_wait → retry_wait: an operator's "retry now" (or requeue from a stage) of a waiting message.
    S.RETRY_WAIT: frozenset({*_WORK, S.RETRY_WAIT, S.DEAD}),
    # dead → rejected: an operator gives up on a stopped message (with a reason; the sender is told).
    S.REJECTED: frozenset({*_WORK, S.RETRY_WAIT, S.DEAD}),
    S.DEAD: frozenset({*_WORK, S.RETRY_WAIT}),
    S.PURGED: frozenset({S.ACKNOWLEDGED, S.REJECTED, S.DEAD}),
}

#: Statuses a worker picks up (when due and not leased).
ACTIVE: frozenset[Status] = frozenset({*_WORK, S.RETRY_WAIT})
#: Statuses nothing moves out of without an operator.
TERMINAL: frozenset[Status] = frozenset({S.ACKNOWLEDGED, S.REJECTED, S.DEAD, S.PURGED})


class IllegalTransition(RuntimeError):
    """No message matched the guard: wrong status, unknown id, or the caller no longer holds the lease."""

    def __init__(self, message_id: uuid.UUID, to: Status, allowed: Iterable[Status], owner: str | None) -> None:
        allowed_text = ", ".join(sorted(allowed))
        lease = f" and lease held by {owner}" if owner else ""
        super().__init__(f"message {message_id}: cannot move to {to}: it is not in ({allowed_text}){lease}")
        self.message_id = message_id
        self.to = to


#: The message columns a transition may set through ``Transition.fields``: what the stages learn about a
#: message. Status, lease, attempts and retry times are not among them: they have their own attributes, which
#: the guard knows about.
FIELDS: frozenset[str] = frozenset({
    "standard", "standard_version", "message_type",  # detected by validate
    "verdict",  # valid | invalid | not_checked (validate)
    "xoev_message_uuid",  # the document header's message id (validate)
    "attributes",  # routing facts (validate), and whether the sender was answered (route, acknowledge)
    "route",  # the route chosen (route)
})


@dataclass(frozen=True)
class Transition:
    """What to change besides the status. ``None`` means "leave as it is".

    ``fields`` may only name columns in :data:`FIELDS`; anything else raises :class:`ValueError` here,
    before any SQL runs. It is kept as a read-only copy, so it cannot be widened afterwards either.
    """

    reason: str
    detail: dict[str, Any] | None = None
    next_attempt_at: datetime | None = None
    attempts: int | None = None
    resume_status: Status | None = None
    release_lease: bool = False
    last_error: str | None = None
    fields: Mapping[str, Any] | None = None  # detected standard, route name, header ids... (FIELDS)
    waiting_on: str | None = None  # retry_wait only: parked until this target's open circuit closes

    def __post_init__(self) -> None:
        if self.fields is None:
            return
        refused = set(self.fields) - FIELDS
        if refused:
            raise ValueError(f"a transition cannot set {', '.join(sorted(refused))} through fields; only "
                             f"{', '.join(sorted(FIELDS))} (status, lease and retry bookkeeping go through the guard)")
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))


def allowed_from(to: Status, from_statuses: Iterable[Status] | None = None) -> frozenset[Status]:
    """The statuses ``to`` may be reached from, narrowed by ``from_statuses`` (which must be a subset)."""
    allowed = TRANSITIONS[to]
    if from_statuses is not None:
        narrowed = frozenset(from_statuses)
        if not narrowed <= allowed:
            raise ValueError(f"{sorted(narrowed - allowed)} → {to} is not a transition of the state machine")
        allowed = narrowed
    return allowed


def transition_values(to: Status, change: Transition, now: datetime) -> dict[str, Any]:
    """The message columns a transition to ``to`` sets (the batch path of :mod:`hub.journal` uses them too)."""
    values: dict[str, Any] = {"status": to.value, "updated_at": now}
    if change.next_attempt_at is not None:
        values["next_attempt_at"] = change.next_attempt_at
    if change.attempts is not None:
        values["attempts"] = change.attempts
    if change.resume_status is not None:
        values["resume_status"] = change.resume_status.value
    if change.release_lease or to in TERMINAL:
        values["lease_owner"] = None
        values["lease_expires_at"] = None
    if change.last_error is not None:
        values["last_error"] = change.last_error
    if change.fields:
        values.update(change.fields)
    if change.waiting_on is not None and to is not Status.RETRY_WAIT:
        raise ValueError("only a message in retry_wait waits on a target's circuit")
    values["waiting_on"] = change.waiting_on  # every other move ends the wait
    return values


def transition(
    conn: Connection,
    message_id: uuid.UUID,
    to: Status,
    change: Transition,
    *,
    actor: str,
    from_statuses: Iterable[Status] | None = None,
    lease_owner: str | None = None,
) -> Status:
    """Move ``message_id`` to ``to`` and record the event. Returns the status it came from.

    ``from_statuses`` narrows the allowed origins further (it must be a subset of ``TRANSITIONS[to]``);
    ``lease_owner`` makes the update a fenced one: it only applies while that worker holds the lease.
    """
    allowed = allowed_from(to, from_statuses)
    now = utcnow()
    values = transition_values(to, change, now)

    stmt = (
        update(Message)
        .where(Message.id == message_id, Message.status.in_([s.value for s in allowed]))
        .values(**values)
        .returning(Message.status)
    )
    if lease_owner is not None:
        stmt = stmt.where(Message.lease_owner == lease_owner)
    if len(allowed) == 1:  # the guard names the one status it can come from: no need to read it
        old: str | None = next(iter(allowed)).value
    else:  # read under the row lock, so that the event names the status the update replaced
        old = conn.execute(
            Message.__table__.select()
            .with_only_columns(Message.status)
            .where(Message.id == message_id)
            .with_for_update()
        ).scalar_one_or_none()
    row = conn.execute(stmt).first()
    if row is None or old is None:
        raise IllegalTransition(message_id, to, allowed, lease_owner)
    record_event(conn, message_id, actor=actor, kind="transition", from_status=old, to_status=to.value,
                 reason=change.reason, detail=change.detail, at=now)
    return Status(old)


D = DeliveryStatus

#: to-status → the delivery statuses it may be reached from. Every move is one attempt at the target.
DELIVERY_TRANSITIONS: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    D.DELIVERED: frozenset({D.PENDING, D.FAILED}),
    D.FAILED: frozenset({D.PENDING, D.FAILED}),
}


class IllegalDeliveryTransition(RuntimeError):
    """No delivery matched the guard: unknown, or no longer in the status the move starts from (another worker
    recorded this delivery meanwhile, which it can only do after taking the message over)."""

    def __init__(self, delivery_id: int, to: DeliveryStatus, allowed: Iterable[DeliveryStatus]) -> None:
        allowed_text = ", ".join(sorted(allowed))
        super().__init__(f"delivery {delivery_id}: cannot move to {to}: it is not in ({allowed_text})")
        self.delivery_id = delivery_id
        self.to = to


@dataclass(frozen=True)
class DeliveryChange:
    """The outcome of one attempt: why, what is kept on the delivery row, and what goes into the event."""

    reason: str
    response: dict[str, Any] | None = None  # the target's answer, or the error's detail
    error: str | None = None
    detail: dict[str, Any] | None = None  # for the event; the target and the attempt number are added


def move_delivery(
    conn: Connection,
    delivery_id: int,
    to: DeliveryStatus,
    change: DeliveryChange,
    *,
    actor: str,
    from_statuses: Iterable[DeliveryStatus] | None = None,
) -> DeliveryStatus:
    """Record one attempt of a delivery: move it to ``to``, count the attempt, and write a ``delivery`` event on
    its message (``from_status``/``to_status`` hold the delivery's statuses). Returns the status it came from.

    The update is guarded like :func:`transition` (``WHERE id = :id AND status IN (:allowed)``, narrowed by
    ``from_statuses``); when no row matched, :class:`IllegalDeliveryTransition` is raised before the event is
    written, and the caller's transaction rolls back: nothing is left of it.
    """
    allowed = DELIVERY_TRANSITIONS[to]
    if from_statuses is not None:
        narrowed = frozenset(from_statuses)
        if not narrowed <= allowed:
            raise ValueError(f"{sorted(narrowed - allowed)} → {to} is not a transition of a delivery")
        allowed = narrowed
    now = utcnow()
    if len(allowed) == 1:
        old: DeliveryStatus | None = next(iter(allowed))
    else:  # read under the row lock, so that the event names the status the update replaced
        old = conn.execute(select(Delivery.status).where(Delivery.id == delivery_id).with_for_update()).scalar()
    row = conn.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status.in_(allowed))
        .values(status=to, attempts=Delivery.attempts + 1, response=change.response, last_error=change.error,
                delivered_at=now if to is D.DELIVERED else None, updated_at=now)
        .returning(Delivery.message_id, Delivery.target, Delivery.attempts)
    ).first()
    if row is None or old is None:
        raise IllegalDeliveryTransition(delivery_id, to, allowed)
    detail = {**(change.detail or {}), "target": row.target, "attempt": row.attempts}
    record_event(conn, row.message_id, actor=actor, kind="delivery", from_status=old.value, to_status=to.value,
                 reason=change.reason, detail=detail, at=now)
    return old


def note(
    conn: Connection,
    message_id: uuid.UUID,
    reason: str,
    *,
    actor: str,
    kind: str = "note",
    detail: dict[str, Any] | None = None,
    status: Status | str | None = None,
) -> None:
    """Record an event that is not a status change (an attempt that moved nothing, a lease take-over, a check)."""
    value = status.value if isinstance(status, Status) else status
    record_event(conn, message_id, actor=actor, kind=kind, from_status=value, to_status=value, reason=reason,
                 detail=detail)


def record_event(
    conn: Connection,
    message_id: uuid.UUID,
    *,
    actor: str,
    kind: str,
    from_status: str | None,
    to_status: str | None,
    reason: str,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Append one row to the trail. Status changes go through :func:`transition`, which calls this."""
    conn.execute(insert(Event).values(**event_row(message_id, actor=actor, kind=kind, from_status=from_status,
                                                  to_status=to_status, reason=reason, detail=detail, at=at)))


def event_row(
    message_id: uuid.UUID,
    *,
    actor: str,
    kind: str,
    from_status: str | None,
    to_status: str | None,
    reason: str,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The values of one row of the trail, for :func:`record_event` and for multi-row inserts (a batch's
    journal, the intake's group commit)."""
    return {"message_id": message_id, "at": at or utcnow(), "kind": kind, "actor": actor,
            "from_status": from_status, "to_status": to_status, "reason": reason, "detail": detail}
