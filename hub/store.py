"""Reading and writing messages, their parts, events and deliveries (everything but status changes).

Status changes, of messages and of deliveries, live in :mod:`hub.statemachine`; claiming in :mod:`hub.queue`.
Functions here take a :class:`~sqlalchemy.Connection` when they are meant to run inside the caller's
transaction, and an :class:`~sqlalchemy.Engine` when they are a unit of work of their own.
"""

from __future__ import annotations

import hashlib
import os
import queue
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from hub import sealing
from hub.blobs import BlobStore
from hub.db import transaction
from hub.models import Delivery, DeliveryStatus, Event, Message, MessagePart, utcnow
from hub.statemachine import Status, event_row, record_event
from hub.wakeup import notify

__all__ = [
    "ExternalIdKnown",
    "GroupCommit",
    "IdempotencyConflict",
    "NewMessage",
    "Part",
    "accept",
    "create_deliveries",
    "deliveries",
    "events",
    "get",
    "insert_version",
    "list_messages",
    "part_bytes",
    "payload",
]


@dataclass(frozen=True)
class Part:
    """One part of a message: its bytes, or (for large parts) a file that goes into the blob store."""

    role: str  # payload | attachment | metadata
    content_type: str
    body: bytes | bytearray | None = None  # a bytearray is stored as it is (the REST intake reads into one)
    name: str | None = None
    file: Path | None = None

    def __post_init__(self) -> None:
        if (self.body is None) == (self.file is None):
            raise ValueError("a part has either body bytes or a file, not both and not neither")


@dataclass(frozen=True)
class NewMessage:
    """What an intake channel hands to the store. The first part is the payload."""

    tenant: str
    channel: str
    sender: str
    parts: Sequence[Part]
    idempotency_key: str | None = None
    sender_reference: str | None = None
    external_id: str | None = None  # the channel's own id of the message: stored once per channel
    case_id: str | None = None  # the channel's case, when it has cases
    attributes: dict[str, str] = field(default_factory=dict)  # routing facts known at intake (service, region)


class ExternalIdKnown(Exception):
    """A message with this external id is already stored for this channel (another poller was quicker)."""


class IdempotencyConflict(Exception):
    """The idempotency key was used before by the same sender for a different payload."""

    def __init__(self, existing_id: uuid.UUID) -> None:
        super().__init__(f"idempotency key already used for message {existing_id} with a different payload")
        self.existing_id = existing_id


def accept(engine: Engine, new: NewMessage, *, actor: str, blobs: BlobStore | None = None) -> tuple[Message, bool]:
    """Store a new message durably, in status ``received`` with its first event.

    Returns ``(message, created)``. With an idempotency key that this sender used before for the same
    payload, nothing is written and the first message is returned with ``created=False``.

    The message returned for a new one is built from the values written, not read back: once the commit
    succeeded, a database that fails a moment later cannot turn an accepted message into an error for the
    sender (who would then send it again).
    """
    if not new.parts or new.parts[0].role != "payload" or new.parts[0].body is None:
        raise ValueError("the first part of a message must be its payload, as bytes")
    if blobs is None and any(p.file is not None for p in new.parts):
        raise ValueError("parts given as files need a blob store")
    body = new.parts[0].body
    digest = hashlib.sha256(body).hexdigest()
    if new.idempotency_key is not None:
        existing = _by_idempotency_key(engine, new)
        if existing is not None:
            return _replay(existing, digest), False
    now = utcnow()
    message_id = uuid.uuid4()
    rows = [_part_row(engine, message_id, i, p, blobs, digest if i == 0 else None)
            for i, p in enumerate(new.parts)]  # files durable first
    values = _message_values(engine, new, message_id, digest, now)
    try:
        with engine.begin() as conn:
            conn.execute(insert(Message).values(**values))
            conn.execute(insert(MessagePart), rows)
            conn.execute(insert(Event).values(**_accepted(values, new, actor)))
            notify(conn)
    except IntegrityError:
        if new.external_id is not None and _first(engine, select(Message.id).where(
                Message.channel == new.channel, Message.external_id == new.external_id)) is not None:
            raise ExternalIdKnown(new.external_id) from None
        # Two requests with the same key raced; the other one committed first.
        existing = _by_idempotency_key(engine, new) if new.idempotency_key else None
        if existing is None:
            raise
        return _replay(existing, digest), False
    return Message(**{**values, "sender_reference": new.sender_reference}), True


@dataclass
class _Pending:
    new: NewMessage
    actor: str
    future: Future[tuple[Message, bool]]


class GroupCommit:
    """Stores the messages of concurrent intake requests together: one transaction, one commit (one WAL
    flush) for a group, with multi-row inserts, and a ``NOTIFY`` to the workers in it.

    A request hands its message to :meth:`submit` and waits for its future; one thread writes the groups.
    A group is whatever arrived while the previous commit was in flight (up to ``max_group``; with
    ``wait_seconds`` it also waits that long for more). Each request is answered only after its group's
    commit, from the values written (no read-back), exactly as :func:`accept` answers:

    * an idempotency key used before (in an earlier group or in the same one) replays the first message,
      or raises :class:`IdempotencyConflict`; an external id known on its channel raises
      :class:`ExternalIdKnown`: the inserts skip conflicting rows (``ON CONFLICT DO NOTHING``), so one
      repeat does not fail its group;
    * when the database is unavailable, every request of the group gets that error (nothing was stored;
      when the commit itself failed, it is not retried: the sender is told it may have been stored);
    * any other error of the group (one message the database refuses) is sorted out by storing each of the
      group's messages on its own with :func:`accept`, so that each request gets its own, truthful answer.
    """

    def __init__(self, engine: Engine, *, max_group: int = 64, wait_seconds: float = 0.0) -> None:
        self.engine = engine
        self.max_group = max_group
        self.wait_seconds = wait_seconds
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.groups = 0  # committed groups (for benchmarks and tests)

    def submit(self, new: NewMessage, *, actor: str) -> Future[tuple[Message, bool]]:
        """Queue ``new`` for the next group; the future holds what :func:`accept` would return or raise."""
        if any(p.file is not None for p in new.parts):
            raise ValueError("the group commit stores parts given as bytes; use accept() with a blob store")
        future: Future[tuple[Message, bool]] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the intake's group commit is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="xhub-group-commit", daemon=True)
                self._thread.start()
            self._queue.put(_Pending(new, actor, future))
        return future

    def accept(self, new: NewMessage, *, actor: str) -> tuple[Message, bool]:
        """:func:`accept`, committed with the group (blocking)."""
        return self.submit(new, actor=actor).result()

    def close(self) -> None:
        """Write what was submitted, then stop the writer thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            deadline = time.monotonic() + self.wait_seconds
            stop = False
            while len(group) < self.max_group:
                try:
                    remaining = deadline - time.monotonic()
                    item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            self._commit(group)
            if stop:
                return

    def _commit(self, group: list[_Pending]) -> None:
        try:
            outcomes = transaction(self.engine, lambda conn: _store_group(conn, group), retry_commit=False)
        except (OperationalError, InterfaceError, PoolTimeout) as exc:  # the database is away: nobody was stored
            for pending in group:
                pending.future.set_exception(exc)
            return
        except Exception as failed:
            if len(group) == 1:
                outcomes = [failed]
            else:  # one of them, but which: each on its own, each with its own answer
                outcomes = []
                for pending in group:
                    try:
                        outcomes.append(accept(self.engine, pending.new, actor=pending.actor))
                    except Exception as alone:
                        outcomes.append(alone)
        else:
            self.groups += 1
        for pending, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)


def _store_group(conn: Connection, group: list[_Pending]) -> list[tuple[Message, bool] | Exception]:
    """Insert the group's messages (skipping conflicts), their parts and first events; then sort out the
    conflicts: replays, reused keys, known external ids."""
    now = utcnow()
    outcomes: list[tuple[Message, bool] | Exception | None] = []
    rows: list[dict[str, Any]] = []
    for pending in group:
        new = pending.new
        if not new.parts or new.parts[0].role != "payload" or new.parts[0].body is None:
            outcomes.append(ValueError("the first part of a message must be its payload, as bytes"))
            continue
        values = _message_values(conn, new, uuid.uuid4(), hashlib.sha256(new.parts[0].body).hexdigest(), now)
        rows.append(values)
        outcomes.append(None)
    inserted: set[uuid.UUID] = set()
    if rows:
        insert_ = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert
        stmt = insert_(Message).on_conflict_do_nothing().returning(Message.id)
        inserted = {row.id for row in conn.execute(stmt, rows)}
    parts, events = [], []
    stored = iter(rows)
    for i, pending in enumerate(group):
        if outcomes[i] is not None:
            continue
        values = next(stored)
        new, message_id, digest = pending.new, values["id"], values["payload_sha256"]
        if message_id not in inserted:
            outcomes[i] = _conflict(conn, new, digest)
            continue
        parts += [_part_row(conn, message_id, n, p, None, digest if n == 0 else None)
                  for n, p in enumerate(new.parts)]
        events.append(_accepted(values, new, pending.actor))
        outcomes[i] = (Message(**{**values, "sender_reference": new.sender_reference}), True)
    if parts:
        conn.execute(insert(MessagePart), parts)
        conn.execute(insert(Event), events)
        notify(conn)
    return [o if o is not None else RuntimeError("not stored") for o in outcomes]


def _accepted(values: dict[str, Any], new: NewMessage, actor: str) -> dict[str, Any]:
    """The first event of a new message (its row's ``values``), as :func:`accept` and the group commit write it."""
    return event_row(values["id"], actor=actor, kind="transition", from_status=None, to_status=Status.RECEIVED.value,
                     reason=f"accepted on channel {new.channel}", at=values["created_at"],
                     detail={"size": values["payload_size"], "sha256": values["payload_sha256"],
                             "parts": len(new.parts)})


def _conflict(conn: Connection, new: NewMessage, digest: str) -> tuple[Message, bool] | Exception:
    """What a row the insert skipped collided with (an earlier message, possibly of the same group)."""
    if new.idempotency_key is not None:
        existing = _by_idempotency_key(conn, new)
        if existing is not None:
            try:
                return _replay(existing, digest), False
            except IdempotencyConflict as exc:
                return exc
    if new.external_id is not None:
        return ExternalIdKnown(new.external_id)
    return RuntimeError("the message was not stored: it collided with a stored one on a unique key")


def _message_values(bind: Engine | Connection, new: NewMessage, message_id: uuid.UUID, digest: str,
                    now: datetime) -> dict[str, Any]:
    """The row of a new message; its sender reference sealed (:mod:`hub.sealing`)."""
    body = new.parts[0].body
    assert body is not None
    return {
        "id": message_id,
        "tenant": new.tenant,
        "channel": new.channel,
        "sender": new.sender,
        "idempotency_key": new.idempotency_key,
        "sender_reference": sealing.seal_text(bind, new.sender_reference, message_id, "sender_reference"),
        "content_type": new.parts[0].content_type,
        "payload_size": len(body),
        "payload_sha256": digest,
        "status": Status.RECEIVED.value,
        "attempts": 0,
        "next_attempt_at": now,
        "attributes": new.attributes or None,
        "external_id": new.external_id,
        "case_id": new.case_id,
        "created_at": now,
        "updated_at": now,
    }


def _part_row(engine: Engine | Connection, message_id: uuid.UUID, part_no: int, part: Part, blobs: BlobStore | None,
              digest: str | None) -> dict[str, Any]:
    """The row of one part: its bytes sealed (:mod:`hub.sealing`) when the engine has a keyring."""
    row: dict[str, Any] = {"message_id": message_id, "part_no": part_no, "role": part.role, "name": part.name,
                           "content_type": part.content_type}
    if part.body is not None:
        digest = digest or hashlib.sha256(part.body).hexdigest()
        body, key_id = sealing.seal_body(engine, part.body, message_id, part_no)
        return {**row, "size": len(part.body), "sha256": digest, "body": body, "blob_path": None, "key_id": key_id}
    assert blobs is not None and part.file is not None
    stored = blobs.put(message_id, part_no, part.file, sealing.keyring_of(engine))
    return {**row, "size": stored.size, "sha256": stored.sha256, "body": None, "blob_path": stored.path,
            "key_id": stored.key_id}


def insert_version(conn: Connection, original: Message, body: bytes, content_type: str, *, actor: str,
                   blobs: BlobStore | None) -> uuid.UUID:
    """A corrected copy of ``original`` (edit-before-resubmit), in the caller's transaction: a new message in
    ``received`` with the new payload, the original's attachments, facts and ids, linked to it by
    ``previous_version_id``. The original itself is left as it is (the caller closes it with its transition).

    The channel's id of the message (``external_id``, unique per channel) stays with the original; the new
    version keeps the case id and the channel's answer facts (``attributes``), so that its answer goes to
    the same submission.
    """
    now = utcnow()
    message_id = uuid.uuid4()
    digest = hashlib.sha256(body).hexdigest()
    engine = conn.engine
    rows = [_part_row(engine, message_id, 0, Part("payload", content_type, body=body), None, digest)]
    for part in payload(conn, original.id)[1:]:
        if part.body is not None:
            copied = Part(part.role, part.content_type, body=part.body, name=part.name)
        elif blobs is not None and part.blob_path:
            copied = Part(part.role, part.content_type, file=_plain_copy(conn, part, blobs), name=part.name)
        else:
            raise ValueError(f"part {part.part_no} of message {original.id} is in the blob store, which is not given")
        rows.append(_part_row(engine, message_id, part.part_no, copied, blobs, None))
    reference = sealing.open_text(conn, original.sender_reference, original.id, "sender_reference")
    conn.execute(insert(Message).values(
        id=message_id, tenant=original.tenant, channel=original.channel, sender=original.sender,
        idempotency_key=None, external_id=None,
        sender_reference=sealing.seal_text(engine, reference, message_id, "sender_reference"),
        case_id=original.case_id, attributes=original.attributes, content_type=content_type,
        payload_size=len(body), payload_sha256=digest, status=Status.RECEIVED.value, attempts=0,
        next_attempt_at=now, previous_version_id=original.id, created_at=now, updated_at=now,
    ))
    conn.execute(insert(MessagePart), rows)
    record_event(conn, message_id, actor=actor, kind="transition", from_status=None, to_status=Status.RECEIVED.value,
                 reason=f"corrected version of message {original.id}",
                 detail={"size": len(body), "sha256": digest, "previous_version_id": str(original.id),
                         "previous_sha256": original.payload_sha256}, at=now)
    return message_id


def _plain_copy(conn: Connection, part: MessagePart, blobs: BlobStore) -> Path:
    """A private plain copy of a stored blob part, for the blob store to take (it moves or seals and removes its
    source: the original's file must stay where it is)."""
    fd, name = tempfile.mkstemp(dir=blobs.root, prefix=".copy-")
    with os.fdopen(fd, "wb") as out:
        for chunk in part_bytes(conn, part, blobs):
            out.write(chunk)
    return Path(name)


def _by_idempotency_key(bind: Engine | Connection, new: NewMessage) -> Message | None:
    message: Message | None = _first(
        bind,
        select(Message).where(
            Message.tenant == new.tenant,
            Message.sender == new.sender,
            Message.idempotency_key == new.idempotency_key,
        ),
    )
    return None if message is None else _opened(bind, message)


def _replay(existing: Message, digest: str) -> Message:
    if existing.payload_sha256 != digest:
        raise IdempotencyConflict(existing.id)
    return existing


def _opened(bind: Engine | Connection, message: Message) -> Message:
    """``message`` with its sealed columns opened (:mod:`hub.sealing`); the entities here are detached copies."""
    message.sender_reference = sealing.open_text(bind, message.sender_reference, message.id, "sender_reference")
    return message


def _all(bind: Engine | Connection, stmt: Select[Any]) -> list[Any]:
    """Entities for ``stmt``, detached from any session (plain snapshots; nothing is lazy-loaded)."""
    with Session(bind=bind, expire_on_commit=False) as session:
        rows = list(session.scalars(stmt))
        session.expunge_all()
    return rows


def _first(bind: Engine | Connection, stmt: Select[Any]) -> Any:
    rows = _all(bind, stmt.limit(1))
    return rows[0] if rows else None


def get(bind: Engine | Connection, message_id: uuid.UUID) -> Message | None:
    message: Message | None = _first(bind, select(Message).where(Message.id == message_id))
    return None if message is None else _opened(bind, message)


def payload(bind: Engine | Connection, message_id: uuid.UUID) -> list[MessagePart]:
    """All stored parts of a message, payload first, their bodies opened (:mod:`hub.sealing`); a part in the blob
    store is read with :func:`part_bytes`."""
    parts = _all(bind, select(MessagePart).where(MessagePart.message_id == message_id).order_by(MessagePart.part_no))
    return [sealing.open_part(bind, part) for part in parts]


def part_bytes(bind: Engine | Connection, part: MessagePart, blobs: BlobStore) -> Iterator[bytes]:
    """The plain bytes of a part (from :func:`payload`), chunk by chunk, wherever they are stored."""
    if part.blob_path is None:
        yield bytes(part.body or b"")
        return
    yield from blobs.read(part.blob_path, part.message_id, part.part_no, sealing.keyring_of(bind))


def events(bind: Engine | Connection, message_id: uuid.UUID) -> list[Event]:
    return _all(bind, select(Event).where(Event.message_id == message_id).order_by(Event.id))


def deliveries(bind: Engine | Connection, message_id: uuid.UUID) -> list[Delivery]:
    return _all(bind, select(Delivery).where(Delivery.message_id == message_id).order_by(Delivery.id))


def list_messages(
    engine: Engine,
    *,
    status: str | None = None,
    tenant: str | None = None,
    sender: str | None = None,
    limit: int = 50,
    before: datetime | None = None,
) -> list[Message]:
    """Newest first. ``before`` pages backwards by creation time."""
    stmt = select(Message).order_by(Message.created_at.desc(), Message.id).limit(limit)
    if status:
        stmt = stmt.where(Message.status == status)
    if tenant:
        stmt = stmt.where(Message.tenant == tenant)
    if sender:
        stmt = stmt.where(Message.sender == sender)
    if before:
        stmt = stmt.where(Message.created_at < before)
    return [_opened(engine, m) for m in _all(engine, stmt)]


def create_deliveries(conn: Connection, message_id: uuid.UUID, targets: Sequence[tuple[str, str | None]]) -> None:
    """One pending delivery row per (target, mapping) not yet recorded (a repeated ``route`` adds nothing).

    Runs in the transaction that moves the message to ``routed``, whose event names the targets.
    """
    have = {d.target for d in deliveries(conn, message_id)}
    now = utcnow()
    rows = [
        {
            "message_id": message_id,
            "target": t,
            "mapping": mapping,
            "status": DeliveryStatus.PENDING,
            "idempotency_key": f"xhub-{message_id}-{t}",
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        for t, mapping in targets
        if t not in have
    ]
    if rows:
        conn.execute(insert(Delivery), rows)
