"""The operators' search: by any id, by status, tenant, channel, route, target, standard, message type and time,
newest first, paged by keyset (never OFFSET), always inside the caller's tenants.

* ``q`` is any id an operator may be given: the hub's message id, the sender's reference, the channel's id
  of the message (a FIT-Connect submission id), the case id, the XÖV message UUID. Each is an indexed
  equality (``ix_messages_sender_reference``, ``ix_messages_external_id``, ``ix_messages_case_id``,
  ``ix_messages_xoev_message_uuid``, the primary key): PostgreSQL combines them with a BitmapOr.
* The order is ``(created_at, id)`` descending; the cursor of the next page is the last row's pair, and the
  next page is ``WHERE (created_at, id) < (:c, :i)``: a page deep in a million messages costs what the first
  one does (``ix_messages_tenant_created``, ``ix_messages_status_created``, ``ix_messages_created_at``).
* ``target`` is an ``EXISTS`` on the deliveries (``ix_deliveries_target``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, exists, func, or_, select, tuple_
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from hub.access import Caller
from hub.models import Delivery, Message

__all__ = ["BadCursor", "Filter", "Page", "count", "decode_cursor", "encode_cursor", "matching_ids", "search",
           "statement"]


class BadCursor(ValueError):
    """A cursor that this hub did not hand out."""


@dataclass(frozen=True)
class Filter:
    q: str | None = None
    status: str | None = None
    tenant: str | None = None
    channel: str | None = None
    route: str | None = None
    target: str | None = None
    standard: str | None = None
    message_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and value != "":
                out[f.name] = value.isoformat() if isinstance(value, datetime) else value
        return out

    @property
    def empty(self) -> bool:
        return not self.as_json()


@dataclass(frozen=True)
class Page:
    items: list[Message]
    next_cursor: str | None


def encode_cursor(message: Message) -> str:
    raw = f"{message.created_at.isoformat()}|{message.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        at, _, ident = raw.partition("|")
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None:
            raise ValueError("naive")
        return moment, uuid.UUID(ident)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise BadCursor("the cursor is not one this hub handed out") from None


def statement(caller: Caller, f: Filter) -> Select[Any]:
    """``SELECT messages`` narrowed by the filter and the caller's tenants (no order, no limit)."""
    stmt = select(Message).where(caller.scope())
    if f.q:
        q = f.q.strip()
        ids = [Message.sender_reference == q, Message.external_id == q, Message.case_id == q,
               Message.xoev_message_uuid == q]
        with contextlib.suppress(ValueError):
            ids.append(Message.id == uuid.UUID(q))
        stmt = stmt.where(or_(*ids))
    for name in ("status", "tenant", "channel", "route", "standard", "message_type"):
        value = getattr(f, name)
        if value:
            stmt = stmt.where(getattr(Message, name) == value)
    if f.target:
        stmt = stmt.where(exists().where(and_(Delivery.message_id == Message.id, Delivery.target == f.target)))
    if f.since is not None:
        stmt = stmt.where(Message.created_at >= f.since)
    if f.until is not None:
        stmt = stmt.where(Message.created_at < f.until)
    return stmt


def search(engine: Engine, caller: Caller, f: Filter, *, limit: int = 50, cursor: str | None = None) -> Page:
    stmt = statement(caller, f).order_by(Message.created_at.desc(), Message.id.desc()).limit(limit + 1)
    if cursor:
        at, ident = decode_cursor(cursor)
        stmt = stmt.where(tuple_(Message.created_at, Message.id) < tuple_(at, ident))
    with Session(bind=engine, expire_on_commit=False) as session:
        rows = list(session.scalars(stmt))
        session.expunge_all()
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(rows[-1]) if more and rows else None)


def count(engine: Engine, caller: Caller, f: Filter, *, cap: int) -> int:
    """How many messages match, counted up to ``cap + 1`` (a bulk run needs to know "more than the bound",
    not the exact figure of a million)."""
    inner = statement(caller, f).with_only_columns(Message.id).limit(cap + 1).subquery()
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(inner)).scalar_one())


def matching_ids(engine: Engine, caller: Caller, f: Filter, *, limit: int) -> list[uuid.UUID]:
    stmt = statement(caller, f).with_only_columns(Message.id).order_by(Message.created_at, Message.id).limit(limit)
    with engine.connect() as conn:
        return list(conn.execute(stmt).scalars())
