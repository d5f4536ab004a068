"""Alembic produces exactly the models' schema, on SQLite and PostgreSQL, and downgrades cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from hub import migrate
from hub.db import make_engine
from hub.models import Base


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    url: str = request.getfixturevalue("pg_url")
    engine = make_engine(url)
    with engine.begin() as conn:  # the per-test clone comes migrated; start from nothing
        Base.metadata.drop_all(conn)
        conn.execute(text("DROP TABLE alembic_version"))
    engine.dispose()
    return url


def test_migrations_produce_the_models_schema(empty_url: str) -> None:
    engine = make_engine(empty_url)
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    migrate.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(engine)  # idempotent and repeatable
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()


def test_channel_neutral_ids_keep_the_stored_ids(empty_url: str) -> None:
    """0007 renames the FIT-Connect columns: a stored submission keeps its ids, a counted failure its count."""
    engine = make_engine(empty_url)
    migrate.upgrade(engine, "0006")
    now = "2024-05-01 10:00:00"
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO messages (id, tenant, channel, sender, fitconnect_submission_id, fitconnect_case_id, "
            "content_type, payload_size, payload_sha256, status, attempts, next_attempt_at, created_at, updated_at) "
            "VALUES (:id, 'memmingen', 'fitconnect', 'fitconnect', 'sub-1', 'case-1', 'application/xml', 1, "
            "'00', 'received', 0, :now, :now, :now)"), {"id": MESSAGE_ID, "now": now})
        conn.execute(text(
            "INSERT INTO intake_failures (submission_id, case_id, destination_id, attempts, unexpected, "
            "first_failed_at, last_failed_at, last_error) VALUES ('sub-2', 'case-2', 'dest-1', 4, 2, :now, :now, "
            "'RuntimeError at x.py:1')"), {"now": now})
    migrate.upgrade(engine)
    with engine.connect() as conn:
        message = conn.execute(text("SELECT channel, external_id, case_id FROM messages")).one()
        failure = conn.execute(text("SELECT channel, external_id, case_id, source, attempts, unexpected "
                                    "FROM intake_failures")).one()
    assert tuple(message) == ("fitconnect", "sub-1", "case-1")
    assert tuple(failure) == ("fitconnect", "sub-2", "case-2", "dest-1", 4, 2)
    migrate.downgrade(engine, "0006")
    with engine.connect() as conn:
        assert tuple(conn.execute(text("SELECT fitconnect_submission_id, fitconnect_case_id FROM messages")).one()) \
            == ("sub-1", "case-1")
        assert tuple(conn.execute(text("SELECT submission_id, destination_id FROM intake_failures")).one()) \
            == ("sub-2", "dest-1")
    engine.dispose()


MESSAGE_ID = "5f0c1a52-7a43-4c1e-9d55-4f3b0d0e7a11"
