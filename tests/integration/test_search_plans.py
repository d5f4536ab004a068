"""The operators' search uses its indexes on a large table (PostgreSQL): no sequential scan of ``messages`` for a
lookup by any id, a tenant's or a status's newest page, or a page deep down through the keyset cursor.

200 000 messages (with a delivery each) are made with ``generate_series``; the plans are printed (``-s``) and
checked. ``scripts/bench/console_search.py`` measures the same queries on a million.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, text, tuple_
from sqlalchemy.dialects import postgresql

from hub.access import Caller
from hub.db import make_engine
from hub.models import Message
from hub.search import Filter, statement
from hub.users import Role
from tests.console.search_seed import seed_messages

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROWS = 200_000
ADMIN = Caller("admin", Role.ADMIN, None)
VIEWER = Caller("mm", Role.VIEWER, frozenset({"memmingen"}))


def plan(engine: Engine, caller: Caller, f: Filter, cursor: tuple[datetime, uuid.UUID] | None = None) -> str:
    stmt = statement(caller, f).order_by(Message.created_at.desc(), Message.id.desc()).limit(51)
    if cursor:
        stmt = stmt.where(tuple_(Message.created_at, Message.id) < tuple_(*cursor))
    compiled = stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"render_postcompile": True})
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN " + str(compiled), compiled.params).scalars().all()
    return "\n".join(rows)


@pytest.fixture
def big(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    seed_messages(engine, ROWS)
    yield engine
    engine.dispose()


def test_search_plans_use_the_indexes(big: Engine) -> None:
    with big.connect() as conn:
        middle = conn.execute(text("SELECT created_at, id FROM messages ORDER BY created_at DESC, id DESC "
                                   "OFFSET 150000 LIMIT 1")).one()
    cases = {
        "any id (sender reference)": (VIEWER, Filter(q="ref-123456"), None),
        "any id (a uuid)": (ADMIN, Filter(q=str(uuid.uuid4())), None),
        "tenant, newest": (VIEWER, Filter(), None),
        "status dead, newest": (ADMIN, Filter(status="dead"), None),
        "everything, deep page": (ADMIN, Filter(), (middle.created_at, middle.id)),
        "tenant, deep page": (VIEWER, Filter(), (middle.created_at, middle.id)),
        "target": (VIEWER, Filter(target="kfz-register"), None),
        "time range": (ADMIN, Filter(since=datetime(2026, 1, 1, tzinfo=UTC), until=datetime(2026, 1, 2, tzinfo=UTC)),
                       None),
    }
    for name, (caller, f, cursor) in cases.items():
        found = plan(big, caller, f, cursor)
        print(f"\n--- {name}\n{found}")
        assert "Seq Scan on messages" not in found, f"{name}:\n{found}"
