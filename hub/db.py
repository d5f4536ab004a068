"""Engines and transactions for both backends.

SQLite is the embedded default: one file, WAL journal, ``synchronous=FULL`` (a commit survives power loss),
and every transaction starts with ``BEGIN IMMEDIATE`` so that writers queue on the busy timeout instead of
failing half-way with "database is locked". PostgreSQL is the scale-out engine; workers on many machines
share it and claim work with ``FOR UPDATE SKIP LOCKED`` (see :mod:`hub.queue`).

Commands that only read (``xhub messages list``, ``targets``, ``db current`` …) open the database
read-only (:func:`make_engine` with ``read_only=True``): SQLite through a ``mode=ro`` URI, so that a
missing database is reported instead of created (with its folder), PostgreSQL with
``default_transaction_read_only``. Every way a database URL can be wrong is a :class:`DatabaseProblem`
whose message is one line without the password (:func:`describe`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

__all__ = ["DatabaseProblem", "describe", "is_postgres", "make_engine", "normalise_url", "ping", "safe_url",
           "transaction"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Backends and drivers the hub is built and tested for.
DRIVERS = {"sqlite": {"pysqlite"}, "postgresql": {"psycopg"}}
EXPECTED = "sqlite:///PATH or postgresql://USER@HOST/DATABASE"
CONNECT_TIMEOUT_SECONDS = 10


class DatabaseProblem(Exception):
    """The database cannot be used as configured. The message is one line, without secrets."""


def safe_url(url: str | URL) -> str:
    """A database URL for messages: the password replaced by ``***``, also when the URL does not parse."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Whatever sits between a colon and an @ may be a password, also in a URL missing its "://".
        return re.sub(r":[^:@/]*@", ":***@", url)[:200]


def normalise_url(url: str) -> URL:
    """Accept ``postgresql://`` and ``postgres://`` and use the psycopg 3 driver for them.

    Raises :class:`DatabaseProblem` for a URL that does not parse or names a database the hub does not run on.
    """
    try:
        parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    except (ArgumentError, ValueError):
        raise DatabaseProblem(f"database URL {safe_url(url)!r} cannot be parsed; expected {EXPECTED}") from None
    if parsed.get_backend_name() == "sqlite" and (parsed.host or parsed.username or parsed.port):
        raise DatabaseProblem(f"database URL {safe_url(parsed)!r}: a SQLite URL names a file, not a host; use "
                              "sqlite:///relative/path.db or sqlite:////absolute/path.db")
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend not in DRIVERS:
        raise DatabaseProblem(f"database URL {safe_url(parsed)!r}: the hub does not run on {backend!r}; "
                              f"expected {EXPECTED}")
    if driver not in DRIVERS[backend]:
        raise DatabaseProblem(f"database URL {safe_url(parsed)!r}: driver {driver!r} is not supported; use "
                              f"{backend}+{'/'.join(sorted(DRIVERS[backend]))} (or just {backend}://)")
    return parsed


def _sqlite_setup(engine: Engine, read_only: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below own transaction start instead of pysqlite.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not read_only:  # a read-only connection may not change the journal mode
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # BEGIN IMMEDIATE takes the write lock at once, which a read-only connection may not do.
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def make_engine(url: str, pool_size: int = 5, *, read_only: bool = False) -> Engine:
    """An engine for ``url``. A writing engine creates a SQLite file's folder; a ``read_only`` one creates
    nothing and raises :class:`DatabaseProblem` when the SQLite file does not exist."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        args: dict[str, Any] = {"timeout": 30, "check_same_thread": False}
        if read_only:
            if database in ("", ":memory:") or not Path(database).is_file():
                raise DatabaseProblem(f"no database at {database or '(memory)'}; run `xhub db upgrade` or "
                                      "`xhub serve` to create it")
            # file: URI, read-only: SQLite refuses to create or change anything through this connection.
            parsed = parsed.set(database=f"file:{quote(str(Path(database).resolve()))}",
                                query={"mode": "ro", "uri": "true"})
        elif database and database != ":memory:":
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseProblem(f"database {database}: cannot create its folder: {exc.strerror}") from None
        engine = _create(parsed, connect_args=args)
        _sqlite_setup(engine, read_only)
        return engine
    connect: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    if read_only:
        connect["options"] = "-c default_transaction_read_only=on"
    # No pre-ping (a `SELECT 1` round trip at every checkout): a connection the server dropped fails its first
    # statement as a disconnect, which invalidates the pool, and the hot paths retry once
    # (:func:`transaction`); the rest report the error as any other.
    return _create(parsed, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False, pool_recycle=1800,
                   connect_args=connect)


def transaction(engine: Engine, work: Callable[[Connection], T], *, retry_commit: bool = True) -> T:
    """Run ``work`` in one transaction; when the connection turns out to be dead (the server restarted, a
    proxy dropped it), once more on a fresh one. The pool is invalidated by then, so the retry connects anew.

    With ``retry_commit=False`` a disconnect during the commit itself is raised, not retried: the commit may
    have happened (the intake must then answer that it does not know, rather than store a message twice).
    """
    for attempt in (1, 2):
        committing = False
        try:
            with engine.begin() as conn:
                result = work(conn)
                committing = True
            return result
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated or (committing and not retry_commit):
                raise
            log.warning("database connection lost (%s); retrying the transaction on a new connection",
                        type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__)
    raise AssertionError("unreachable")


def _create(url: URL, **options: Any) -> Engine:
    try:
        return create_engine(url, **options)
    except (ArgumentError, ImportError, TypeError, ValueError) as exc:  # e.g. sqlite://host/x, bad query args
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DatabaseProblem(f"database URL {safe_url(url)!r} is not usable: {first[:200]}") from None


def describe(exc: SQLAlchemyError, url: str | URL) -> str:
    """One line for an operator: which database, and what the driver said (first line, password removed)."""
    where = safe_url(url)
    cause: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    said = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    password = url.password if isinstance(url, URL) else None
    if password:
        said = said.replace(str(password), "***")
    said = re.sub(r"\(Background on this error at: [^)]*\)", "", said).strip()
    return f"database {where}: {said[:300]}"


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def ping(engine: Engine) -> None:
    """Raise when the database cannot answer a trivial query."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
