"""Alembic environment. Run through :func:`hub.migrate.upgrade` (``xhub db upgrade``), which passes the connection."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext

from hub.models import Base, UTCDateTime


def render_item(kind: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Migrations must not import the models: render our column types as plain SQLAlchemy ones."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite needs table rebuilds for most ALTERs
    compare_type=True,
    render_item=render_item,
)
with context.begin_transaction():
    context.run_migrations()
