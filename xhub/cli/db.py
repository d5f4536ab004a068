"""``xhub db``: the database schema (Alembic migrations, no ``alembic.ini`` needed)."""

from __future__ import annotations

import typer
from sqlalchemy.exc import SQLAlchemyError

from hub import migrate
from hub.db import DatabaseProblem, describe, make_engine
from xhub.cli import common

__all__ = ["db_app"]

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all pending migrations (creates a SQLite database and its folder when missing)."""
    url = common.config().database.url
    try:
        db = make_engine(url)
        before = migrate.current_revision(db)
        migrate.upgrade(db)
        after = migrate.current_revision(db)
    except DatabaseProblem as exc:
        common.fail(str(exc))
    except SQLAlchemyError as exc:
        common.fail(describe(exc, url))
    db.dispose()
    typer.echo(f"database at revision {after} (was {before or 'empty'})")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database and the one this code needs. Creates nothing."""
    url = common.config().database.url
    try:
        db = make_engine(url, read_only=True)
        current = migrate.current_revision(db)
    except DatabaseProblem as exc:
        common.fail(str(exc))
    except SQLAlchemyError as exc:
        common.fail(describe(exc, url))
    db.dispose()
    typer.echo(f"database: {current or 'empty'}; code: {migrate.head_revision()}")
