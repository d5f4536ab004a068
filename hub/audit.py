"""The audit log: every action of an operator and every look at a payload, with who, when, what, from where.

Entries are only ever added. Each names the tenant of the message it concerns, so that a viewer or an
operator reads the entries of their own tenants only; entries that concern no tenant (logins, users) are
for admins. A message's own trail (``events``) records what an action changed; the audit log records that
somebody did it, also when it changed nothing (a payload download, a refused bulk run).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.orm import Session

from hub.access import Caller
from hub.models import AuditEntry, utcnow

__all__ = ["entries", "entry_json", "record"]


def record(bind: Engine | Connection, caller: Caller | None, action: str, *, message_id: uuid.UUID | None = None,
           tenant: str | None = None, detail: dict[str, Any] | None = None, remote_addr: str | None = None) -> None:
    """Append one entry; inside the caller's transaction when given a connection."""
    values = {
        "at": utcnow(),
        "actor": caller.actor if caller is not None else "anonymous",
        "role": caller.role.value if caller is not None else "-",
        "action": action[:40],
        "tenant": tenant,
        "message_id": message_id,
        "remote_addr": ((caller.remote_addr if caller is not None else None) or remote_addr or "")[:64] or None,
        "detail": detail,
    }
    if isinstance(bind, Connection):
        bind.execute(insert(AuditEntry).values(**values))
        return
    with bind.begin() as conn:
        conn.execute(insert(AuditEntry).values(**values))


def entries(engine: Engine, caller: Caller, *, message_id: uuid.UUID | None = None, before: int | None = None,
            limit: int = 100) -> list[AuditEntry]:
    """Newest first, inside the caller's tenants; ``before`` (an entry id) pages backwards."""
    stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if caller.tenants is not None:
        stmt = stmt.where(caller.scope(AuditEntry.tenant))
    if message_id is not None:
        stmt = stmt.where(AuditEntry.message_id == message_id)
    if before is not None:
        stmt = stmt.where(AuditEntry.id < before)
    with Session(bind=engine, expire_on_commit=False) as session:
        found = list(session.scalars(stmt))
        session.expunge_all()
    return found


def entry_json(e: AuditEntry) -> dict[str, Any]:
    return {"id": e.id, "at": e.at.isoformat(), "actor": e.actor, "role": e.role, "action": e.action,
            "tenant": e.tenant, "message_id": str(e.message_id) if e.message_id else None,
            "remote_addr": e.remote_addr, "detail": e.detail}
