"""Alembic environment. Run through :func:`hub.migrate.upgrade` (``xhub db upgrade``), which passes the connection."""

from __future__ import annotations

from alembic import context

from hub.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite needs table rebuilds for most ALTERs
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
