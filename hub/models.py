"""The message model: messages, their stored parts, the append-only event trail, per-target deliveries.

These tables are the whole durable state of the hub. The Alembic migrations in ``hub/migrations`` must
produce exactly this schema (``tests/integration/test_migrations.py`` checks it on SQLite and PostgreSQL).
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the Python side on every backend (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use hub.models.utcnow()")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# BIGINT on PostgreSQL, INTEGER (the rowid alias, so it autoincrements) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Message(Base):
    """One accepted message. ``status`` only ever changes through :mod:`hub.statemachine`."""

    __tablename__ = "messages"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(40))
    sender: Mapped[str] = mapped_column(String(100))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    sender_reference: Mapped[str | None] = mapped_column(
        Text, comment="the sender's own reference (up to 255 characters); sealed (hub.sealing) with a master key")
    external_id: Mapped[str | None] = mapped_column(
        String(64), comment="the channel's own id of the message (a submission id); unique per channel"
    )
    case_id: Mapped[str | None] = mapped_column(String(64), comment="the channel's case the message belongs to")
    xoev_message_uuid: Mapped[str | None] = mapped_column(String(100), index=True)
    standard: Mapped[str | None] = mapped_column(String(100))
    standard_version: Mapped[str | None] = mapped_column(String(40))
    message_type: Mapped[str | None] = mapped_column(String(200))
    route: Mapped[str | None] = mapped_column(String(100))
    attributes: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, comment="routing facts: service, destination, region, reader, author"
    )
    verdict: Mapped[str | None] = mapped_column(String(20), comment="valid | invalid | not_checked")
    content_type: Mapped[str] = mapped_column(String(100))
    payload_size: Mapped[int] = mapped_column(BigInteger)
    payload_sha256: Mapped[str] = mapped_column(String(64))

    status: Mapped[str] = mapped_column(String(20))
    resume_status: Mapped[str | None] = mapped_column(
        String(20), comment="the status a retry_wait/dead message resumes at"
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    waiting_on: Mapped[str | None] = mapped_column(
        String(100), comment="retry_wait: the target whose open circuit it waits for; released when it closes"
    )
    last_error: Mapped[str | None] = mapped_column(Text)
    previous_version_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("messages.id"), comment="the message this one corrects (edit-before-resubmit)"
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("tenant", "sender", "idempotency_key"),
        UniqueConstraint("channel", "external_id"),
        Index("ix_messages_due", "status", "next_attempt_at"),
        # (created_at, id): the order of the operators' search and its keyset paging (also serves created_at alone)
        Index("ix_messages_created_at", "created_at", "id"),
        # The operators' search (hub.search): keyset paging on (created_at, id) within a tenant or a status,
        # and a lookup by each id an operator may be given.
        Index("ix_messages_tenant_created", "tenant", "created_at", "id"),
        Index("ix_messages_status_created", "status", "created_at", "id"),
        Index("ix_messages_sender_reference", "sender_reference"),
        Index("ix_messages_external_id", "external_id"),
        Index("ix_messages_case_id", "case_id"),
        Index("ix_messages_previous_version_id", "previous_version_id"),
        Index("ix_messages_status_updated_at", "status", "updated_at"),  # retention finds ended messages by age
        Index("ix_messages_waiting_on", "waiting_on", postgresql_where=text("waiting_on IS NOT NULL"),
              sqlite_where=text("waiting_on IS NOT NULL")),
    )


class MessagePart(Base):
    """The bytes of a message: the payload (part 0) and attachments, stored with the message row."""

    __tablename__ = "message_parts"

    message_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    part_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    role: Mapped[str] = mapped_column(String(20), comment="payload | attachment | metadata")
    name: Mapped[str | None] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes | None] = mapped_column(LargeBinary, comment="the bytes, unless they are in the blob store")
    blob_path: Mapped[str | None] = mapped_column(String(500), comment="large parts: file in the blob store")
    key_id: Mapped[int | None] = mapped_column(
        Integer, comment="the data key that sealed body or blob (hub.sealing); NULL: stored plain")


class DataKey(Base):
    """A data key of :mod:`hub.sealing`, wrapped (AES-GCM) by the master key whose fingerprint is ``master``.

    The newest one seals new records; older ones are retired by a rotation and kept while records use them."""

    __tablename__ = "data_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary, comment="nonce + AES-GCM(master key, data key)")
    master: Mapped[str] = mapped_column(String(16), comment="fingerprint of the master key that wraps it")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, comment="replaced by a newer key then")


class Event(Base):
    """Append-only audit trail. Never updated, never deleted by the hub."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)  # the dashboard's recent attempts
    kind: Mapped[str] = mapped_column(String(20), comment="transition | delivery | note | attempt")
    actor: Mapped[str] = mapped_column(String(200))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class DeliveryStatus(enum.StrEnum):
    """Where one delivery stands; it changes only through :func:`hub.statemachine.move_delivery`."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Delivery(Base):
    """One message's hand-over to one target. Fan-out makes one row per target."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    target: Mapped[str] = mapped_column(String(100))
    mapping: Mapped[str | None] = mapped_column(String(100), comment="renders the body; none: the payload as is")
    status: Mapped[DeliveryStatus] = mapped_column(
        # A VARCHAR with a CHECK constraint on both backends (no PostgreSQL enum type to migrate when it grows).
        Enum(DeliveryStatus, name="status", native_enum=False, create_constraint=True, length=20,
             validate_strings=True, values_callable=lambda members: [m.value for m in members]),
        comment="pending | delivered | failed",
    )
    idempotency_key: Mapped[str] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("message_id", "target"), Index("ix_deliveries_target", "target", "message_id"))


class TargetState(Base):
    """Circuit breaker state of one target, shared by every worker."""

    __tablename__ = "target_states"

    target: Mapped[str] = mapped_column(String(100), primary_key=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    open_until: Mapped[datetime | None] = mapped_column(UTCDateTime, comment="circuit open (no calls) until then")
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TargetSlot(Base):
    """One of a target's ``max_concurrency`` delivery slots; a worker holds one while it calls the target."""

    __tablename__ = "target_slots"

    target: Mapped[str] = mapped_column(String(100), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LoopHeartbeat(Base):
    """One running background loop (a worker, a channel's poller) in any process, so that every API
    process can report on all of them. Written by the loop at most every few seconds; removed when the loop
    stops cleanly, so a row whose ``beat_at`` is old belongs to a process that died."""

    __tablename__ = "loop_heartbeats"

    loop_id: Mapped[str] = mapped_column(String(200), primary_key=True, comment="<kind>@<host>:<pid>:<random>")
    kind: Mapped[str] = mapped_column(String(40), comment="worker | <channel>-poller")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime, comment="last item or poll that worked")
    items: Mapped[int] = mapped_column(BigInteger, default=0, comment="items handled since the loop started")
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(300), comment="exception type and code location only")
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class IntakeFailure(Base):
    """A message a polling channel could not take in yet, with the number of failed attempts.

    Kept across restarts (:mod:`hub.intake_failures`): after the channel's limit of unexpected errors the
    channel stores the message as refused; transient ones (network, database, our configuration) are only
    counted."""

    __tablename__ = "intake_failures"

    channel: Mapped[str] = mapped_column(String(40), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), primary_key=True, comment="the channel's id of the message")
    case_id: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(64), comment="where the channel found it (e.g. a destination id)")
    attempts: Mapped[int] = mapped_column(Integer, comment="failed attempts of any kind")
    unexpected: Mapped[int] = mapped_column(Integer, comment="of those, failures that are not transient")
    first_failed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_failed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(String(300), comment="exception type and code location only")


class User(Base):
    """A person who uses the console or the operations API (:mod:`hub.users`)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20), comment="viewer | operator | admin")
    password_hash: Mapped[str | None] = mapped_column(String(200), comment="argon2id; none: identity provider only")
    oidc_subject: Mapped[str | None] = mapped_column(String(255), unique=True, comment="issuer|sub of the IdP login")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UserTenant(Base):
    """The tenants a viewer or operator may see; an admin has none and sees all."""

    __tablename__ = "user_tenants"

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100), primary_key=True)


class LoginSession(Base):
    """A console login. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "login_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    remote_addr: Mapped[str | None] = mapped_column(String(64))


class AuditEntry(Base):
    """Who did or looked at what, when, from where (:mod:`hub.audit`). Append-only; it names the message by
    id without a foreign key, so that it outlives the message."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(200), comment="user:<name> | operator:<token name>")
    role: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(40))
    tenant: Mapped[str | None] = mapped_column(String(100))
    message_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_audit_log_tenant_at", "tenant", "at"),)


def utcnow() -> datetime:
    return datetime.now(UTC)
