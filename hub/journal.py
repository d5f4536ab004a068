"""The writes of a batch: what the runner decided for each message, written in one transaction.

A worker processes a batch of claimed messages in memory and records every outcome here instead of
committing it stage by stage. :meth:`Journal.flush` then writes them all in one transaction, with a few
statements whatever the batch size:

* each message's status change as **one guarded update** (``WHERE id = :id AND status = :status at claim
  AND lease_owner = :me``), sent for the whole batch as one ``executemany``. Every intermediate step was
  checked against :data:`~hub.statemachine.TRANSITIONS` when it was recorded (:meth:`Journal.transition`,
  which raises :class:`~hub.statemachine.IllegalTransition` just like the single update does), and has
  its event;
* all events as one multi-row insert, in the same transaction;
* new delivery rows as one insert; attempts on existing ones as one guarded ``executemany``
  (``WHERE id = :id AND status = :was AND attempts = :was``);
* the target gate's bookkeeping (:meth:`hub.targets.TargetGate.flush`).

When a guard matches fewer rows than expected (a lease was lost: another worker took a message over), the
whole transaction is rolled back and the messages are written **one by one**, each in its own transaction
(:meth:`Journal.split`): the ones still ours are kept, the others are dropped as the single-message path
would have dropped them (:class:`GuardFailed`). Nothing of a dropped message is written; what it sent to a
target is sent again by its new owner, with the same idempotency key.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, update

from hub.models import Delivery, DeliveryStatus, Event, Message, utcnow
from hub.statemachine import (
    DELIVERY_TRANSITIONS,
    DeliveryChange,
    IllegalDeliveryTransition,
    IllegalTransition,
    Status,
    Transition,
    allowed_from,
    event_row,
    transition_values,
)

__all__ = ["Entry", "GuardFailed", "Journal"]


class GuardFailed(RuntimeError):
    """A guarded update of the batch matched fewer rows than expected."""


@dataclass
class Entry:
    """One message's pending writes. ``message`` is the in-memory copy, kept up to date by each step."""

    message: Message
    origin: str  # the status in the database when the batch claimed it: the guard of the one update
    deliveries: list[Delivery] | None = None  # loaded rows and rows created in this batch
    values: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    created: list[Delivery] = field(default_factory=list)
    attempted: dict[int, tuple[DeliveryStatus, int]] = field(default_factory=dict)  # id → (status, attempts) as loaded


class Journal:
    """Pending writes of one batch, by message, plus the callbacks of the gate (``after``)."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.actor = f"worker:{owner}"
        self.entries: dict[uuid.UUID, Entry] = {}
        self.after: list[Callable[[Connection], None]] = []

    def begin(self, message: Message, deliveries: list[Delivery] | None = None) -> Entry:
        entry = Entry(message, message.status, deliveries)
        self.entries[message.id] = entry
        return entry

    def discard(self, message_id: uuid.UUID) -> None:
        """Forget a message's writes (its lease was lost, or it failed outside the pipeline)."""
        self.entries.pop(message_id, None)

    def __len__(self) -> int:
        return len(self.entries)

    # -- recording
    def transition(self, message_id: uuid.UUID, to: Status, change: Transition,
                   from_statuses: Iterable[Status] | None = None) -> Status:
        """Record a status change, checked against the state machine now; written by :meth:`flush`."""
        entry = self.entries[message_id]
        allowed = allowed_from(to, from_statuses)
        old = Status(entry.message.status)
        if old not in allowed:
            raise IllegalTransition(message_id, to, allowed, self.owner)
        now = utcnow()
        values = transition_values(to, change, now)
        entry.values.update(values)
        for key, value in values.items():
            setattr(entry.message, key, value)
        self._event(entry, kind="transition", from_status=old.value, to_status=to.value, reason=change.reason,
                    detail=change.detail, at=now)
        return old

    def park(self, message_id: uuid.UUID, target: str, until: datetime, reason: str,
             detail: dict[str, Any] | None = None) -> None:
        """A ``retry_wait`` message found its target's circuit open: it waits (no status change, one note)."""
        entry = self.entries[message_id]
        if entry.message.status != Status.RETRY_WAIT:
            raise IllegalTransition(message_id, Status.RETRY_WAIT, {Status.RETRY_WAIT}, self.owner)
        now = utcnow()
        values = {"waiting_on": target, "next_attempt_at": until, "lease_owner": None, "lease_expires_at": None,
                  "updated_at": now}
        entry.values.update(values)
        for key, value in values.items():
            setattr(entry.message, key, value)
        self.note(message_id, reason, detail=detail, status=Status.RETRY_WAIT)

    def note(self, message_id: uuid.UUID, reason: str, *, detail: dict[str, Any] | None = None,
             status: Status | str | None = None, kind: str = "note") -> None:
        value = status.value if isinstance(status, Status) else status
        self._event(self.entries[message_id], kind=kind, from_status=value, to_status=value, reason=reason,
                    detail=detail)

    def create_deliveries(self, message_id: uuid.UUID, targets: Sequence[tuple[str, str | None]]) -> None:
        """One pending delivery per (target, mapping) the message does not have yet (see
        :func:`hub.store.create_deliveries`)."""
        entry = self.entries[message_id]
        rows = entry.deliveries if entry.deliveries is not None else []
        have = {d.target for d in rows}
        now = utcnow()
        for target, mapping in targets:
            if target in have:
                continue
            row = Delivery(message_id=message_id, target=target, mapping=mapping, status=DeliveryStatus.PENDING,
                           idempotency_key=f"xhub-{message_id}-{target}", attempts=0, created_at=now,
                           updated_at=now)
            rows.append(row)
            entry.created.append(row)
        entry.deliveries = rows

    def move_delivery(self, row: Delivery, to: DeliveryStatus, change: DeliveryChange) -> None:
        """One attempt at a target (see :func:`hub.statemachine.move_delivery`), checked now, written later."""
        entry = self.entries[row.message_id]
        old = DeliveryStatus(row.status)
        allowed = DELIVERY_TRANSITIONS[to]
        if old not in allowed:
            raise IllegalDeliveryTransition(row.id or 0, to, allowed)
        if row.id is not None and row.id not in entry.attempted:
            entry.attempted[row.id] = (old, row.attempts)
        now = utcnow()
        row.status = to
        row.attempts += 1
        row.response = change.response
        row.last_error = change.error
        row.delivered_at = now if to is DeliveryStatus.DELIVERED else None
        row.updated_at = now
        detail = {**(change.detail or {}), "target": row.target, "attempt": row.attempts}
        self._event(entry, kind="delivery", from_status=old.value, to_status=to.value, reason=change.reason,
                    detail=detail, at=now)

    def _event(self, entry: Entry, *, kind: str, from_status: str | None, to_status: str | None, reason: str,
               detail: dict[str, Any] | None, at: datetime | None = None) -> None:
        entry.events.append(event_row(entry.message.id, actor=self.actor, kind=kind, from_status=from_status,
                                      to_status=to_status, reason=reason, detail=detail, at=at))

    # -- writing
    def flush(self, conn: Connection) -> None:
        """Write everything in the caller's transaction. Raises :class:`GuardFailed` when a guard did not
        match: the caller rolls back and writes the messages one by one (:meth:`split`)."""
        entries = list(self.entries.values())
        self._update_messages(conn, [e for e in entries if e.values])
        events = [event for e in entries for event in e.events]
        if events:
            conn.execute(insert(Event), events)
        created = [_row(d) for e in entries for d in e.created]
        if created:
            conn.execute(insert(Delivery), created)
        attempted = [(d, *e.attempted[d.id]) for e in entries for d in e.deliveries or () if d.id in e.attempted]
        if attempted:
            stmt = (update(Delivery)
                    .where(Delivery.id == bindparam("d_id"), Delivery.status == bindparam("d_was"),
                           Delivery.attempts == bindparam("d_attempts"))
                    .values(status=bindparam("d_status"), attempts=bindparam("d_new_attempts"),
                            response=bindparam("d_response"), last_error=bindparam("d_error"),
                            delivered_at=bindparam("d_delivered_at"), updated_at=bindparam("d_updated_at")))
            params = [{"d_id": d.id, "d_was": was, "d_attempts": attempts, "d_status": d.status,
                       "d_new_attempts": d.attempts, "d_response": d.response, "d_error": d.last_error,
                       "d_delivered_at": d.delivered_at, "d_updated_at": d.updated_at}
                      for d, was, attempts in attempted]
            _expect(conn.execute(stmt, params).rowcount, len(params), "delivery")
        for write in self.after:
            write(conn)

    def _update_messages(self, conn: Connection, entries: list[Entry]) -> None:
        groups: dict[tuple[str, ...], list[Entry]] = {}
        for entry in entries:
            groups.setdefault(tuple(sorted(entry.values)), []).append(entry)
        for keys, group in groups.items():
            stmt = (update(Message)
                    .where(Message.id == bindparam("m_id"), Message.status == bindparam("m_origin"),
                           Message.lease_owner == bindparam("m_owner"))
                    .values({key: bindparam(f"v_{key}") for key in keys}))
            params = [{"m_id": e.message.id, "m_origin": e.origin, "m_owner": self.owner,
                       **{f"v_{key}": e.values[key] for key in keys}} for e in group]
            _expect(conn.execute(stmt, params).rowcount, len(params), "message")

    def split(self) -> list[Journal]:
        """One journal per message, and the gate's writes in a last one, for writing them one by one."""
        out = []
        for message_id, entry in self.entries.items():
            single = Journal(self.owner)
            single.entries[message_id] = entry
            out.append(single)
        if self.after:
            gate_only = Journal(self.owner)
            gate_only.after = self.after
            out.append(gate_only)
        return out


def _expect(matched: int, expected: int, what: str) -> None:
    if matched != expected:
        raise GuardFailed(f"{what} guard matched {matched} of {expected} rows")


def _row(delivery: Delivery) -> dict[str, Any]:
    return {"message_id": delivery.message_id, "target": delivery.target, "mapping": delivery.mapping,
            "status": delivery.status, "idempotency_key": delivery.idempotency_key, "attempts": delivery.attempts,
            "response": delivery.response, "last_error": delivery.last_error, "delivered_at": delivery.delivered_at,
            "created_at": delivery.created_at, "updated_at": delivery.updated_at}
