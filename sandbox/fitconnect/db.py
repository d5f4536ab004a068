"""The emulator's SQLite file: schema, and one serialised connection with explicit transactions.

One connection behind a lock is plenty for a local stand-in, and it keeps every status change and its
event row in one transaction (``BEGIN IMMEDIATE`` … ``COMMIT``).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["Database"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS destinations (
    destination_id  TEXT PRIMARY KEY,
    status          TEXT NOT NULL,
    encryption_kid  TEXT NOT NULL,
    encryption_jwk  TEXT NOT NULL,
    signature_kid   TEXT NOT NULL,
    signature_jwk   TEXT NOT NULL,
    services        TEXT NOT NULL,
    callback_url    TEXT,
    callback_secret TEXT,
    created_at      REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS clients (
    client_id     TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('sender', 'subscriber')),
    created_at    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS client_destinations (
    client_id      TEXT NOT NULL REFERENCES clients(client_id),
    destination_id TEXT NOT NULL REFERENCES destinations(destination_id),
    PRIMARY KEY (client_id, destination_id)
);
CREATE TABLE IF NOT EXISTS tokens (
    token_sha256 TEXT PRIMARY KEY,
    client_id    TEXT NOT NULL REFERENCES clients(client_id),
    expires_at   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS submissions (
    submission_id      TEXT PRIMARY KEY,
    case_id            TEXT NOT NULL,
    destination_id     TEXT NOT NULL REFERENCES destinations(destination_id),
    sender_client_id   TEXT NOT NULL REFERENCES clients(client_id),
    status             TEXT NOT NULL,
    service_type       TEXT NOT NULL,
    announced          TEXT NOT NULL,
    encrypted_metadata TEXT,
    encrypted_data     TEXT,
    callback_url       TEXT,
    callback_secret    TEXT,
    created_at         REAL NOT NULL,
    submitted_at       REAL
);
CREATE INDEX IF NOT EXISTS submissions_pickup ON submissions (destination_id, status, submitted_at);
CREATE INDEX IF NOT EXISTS submissions_case ON submissions (case_id);
CREATE TABLE IF NOT EXISTS attachments (
    submission_id TEXT NOT NULL REFERENCES submissions(submission_id),
    attachment_id TEXT NOT NULL,
    file_name     TEXT NOT NULL,
    size          INTEGER NOT NULL,
    auth_tag      TEXT NOT NULL,
    uploaded_at   REAL NOT NULL,
    PRIMARY KEY (submission_id, attachment_id)
);
CREATE TABLE IF NOT EXISTS events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id       TEXT NOT NULL,
    submission_id TEXT NOT NULL REFERENCES submissions(submission_id),
    event         TEXT NOT NULL,
    jti           TEXT NOT NULL UNIQUE,
    token         TEXT NOT NULL,
    issued_by     TEXT NOT NULL CHECK (issued_by IN ('delivery-service', 'subscriber')),
    created_at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_case ON events (case_id, seq);
"""


class Database:
    """``read()`` for queries, ``transaction()`` for changes; both hold the lock for their whole block."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(_SCHEMA)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
