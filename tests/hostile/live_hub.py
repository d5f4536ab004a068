"""A hub served over loopback with an embedded worker, for the hostile tests of the REST intake and the
operator API: one per test module and backend, so the many cases share one server.

After every hostile request a test calls :meth:`LiveHub.still_works`: nothing was stored for the refused
request, every message stored so far is intact (its bytes match their digest), and a normal message sent
through the same door is accepted and reaches ``acknowledged``.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, func, select, text

from hub import store
from hub.db import make_engine, normalise_url
from hub.models import Message, MessagePart
from tests.conftest import PG_URL, TEMPLATE
from tests.support import SENDER_TOKEN, XBAU_VALID, hub_config, running, wait_for
from xhub.config import HubConfig
from xhub.runtime import build_app

XML = {"Content-Type": "application/xml"}
DONE = {"acknowledged", "rejected", "dead"}


def auth(token: str = SENDER_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: httpx.Response, status: int, slug: str, detail_part: str = "") -> dict[str, Any]:
    """A problem document of exactly this status and type, whose detail says ``detail_part``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json", response.headers
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:xoev-hub:problem:{slug}" and body["status"] == status, body
    assert body["title"] and detail_part in body["detail"], body
    return body


@dataclass
class LiveHub:
    base: str
    backend: str
    engine: Engine
    config: HubConfig
    app: FastAPI
    database: str  # the database URL (its own, dropped with the hub)

    def client(self, **options: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=30, **options)

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(Message)).scalar_one())

    def wait_done(self, message_id: str | uuid.UUID, want: str = "acknowledged") -> Message:
        def done() -> Message | None:
            message = store.get(self.engine, uuid.UUID(str(message_id)))
            return message if message is not None and message.status in DONE else None

        message: Message = wait_for(done, timeout=60)
        assert message.status == want, (message.status, message.last_error)
        return message

    def submit(self, client: httpx.Client, body: bytes = b"", **headers: str) -> httpx.Response:
        return client.post("/api/v1/messages", content=body or XBAU_VALID.read_bytes(),
                           headers={**auth(), **XML, **headers})

    def still_works(self, before: int | None = None, client: httpx.Client | None = None) -> None:
        """Nothing was stored since ``before`` rows, all stored bytes are intact, and the door still works."""
        if before is not None:
            assert self.count() == before, "a refused request left a message behind"
        with self.engine.connect() as conn:
            rows = conn.execute(select(Message.id, Message.payload_sha256, MessagePart.body)
                                .join(MessagePart, MessagePart.message_id == Message.id)
                                .where(MessagePart.part_no == 0)).all()
        for message_id, digest, body in rows:
            assert hashlib.sha256(body).hexdigest() == digest, f"message {message_id} damaged"
        key = {"Idempotency-Key": f"normal-{uuid.uuid4()}"}
        if client is None:
            with self.client() as c:
                r = self.submit(c, **key)
        else:  # on the connection the hostile request used, when the server kept it open
            r = self.submit(client, **key)
        assert r.status_code == 202, r.text
        self.wait_done(r.json()["id"])

    @contextmanager
    def outage(self) -> Iterator[None]:
        """The database refuses every new connection until the block ends; then it is back."""
        if self.backend == "postgres":
            name = normalise_url(self.database).database
            admin = make_engine(PG_URL).execution_options(isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})
            self.engine.dispose()
            try:
                yield
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
                admin.dispose()
            return
        folder = Path(str(normalise_url(self.database).database)).parent
        away = folder.with_name(folder.name + ".away")
        self.engine.dispose()
        folder.rename(away)
        folder.write_bytes(b"")  # a file where the database's folder was: SQLite cannot open the database
        try:
            yield
        finally:
            folder.unlink()
            away.rename(folder)


@contextmanager
def live_hub(request: pytest.FixtureRequest, tmp: Path, backend: str, **overrides: Any) -> Iterator[LiveHub]:
    """A served hub on its own database (a copy of the session's migrated template) with a worker."""
    if backend == "postgres":
        admin: Engine = request.getfixturevalue("pg_template")
        name = f"xhub_hostile_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"'))
        url = normalise_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    else:
        template: Path = request.getfixturevalue("sqlite_template")
        (tmp / "db").mkdir()
        shutil.copyfile(template, tmp / "db" / "hub.db")
        url = f"sqlite:///{tmp / 'db' / 'hub.db'}"
    config = hub_config(url, tmp, **overrides)
    engine = make_engine(url)
    app = build_app(config, engine, embedded_worker=True)
    try:
        with running(app) as base:
            yield LiveHub(base, backend, engine, config, app, url)
    finally:
        engine.dispose()
        if backend == "postgres":
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def raw_request(base: str, data: bytes) -> bytes:
    """Send bytes no HTTP client library would send (with ``Connection: close`` in them); the answer."""
    host, port = base.removeprefix("http://").split(":")
    chunks = []
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)
