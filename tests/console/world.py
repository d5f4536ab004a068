"""A hub with two tenants, messages in every interesting state, and a user of each role: what the console's
tests (API, access matrix, browser) run against.

The messages go through the real pipeline (a worker, the file target, a REST target on a closed port that
makes a message dead): memmingen has acknowledged, rejected (invalid) and dead messages, aschaffenburg an
acknowledged and a dead one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine

from hub import migrate, store, users
from hub.db import make_engine
from hub.users import Role
from tests.support import OPERATOR_TOKEN, XBAU_INVALID, XBAU_VALID, hub_config, running
from xhub.api.app import create_app
from xhub.config import HubConfig
from xhub.runtime import free_port, make_worker

PASSWORD = "correct horse battery staple"
USERS = {  # name: (role, tenants)
    "admin": (Role.ADMIN, []),
    "op-mm": (Role.OPERATOR, ["memmingen"]),
    "view-mm": (Role.VIEWER, ["memmingen"]),
    "op-ab": (Role.OPERATOR, ["aschaffenburg"]),
}


@dataclass
class World:
    config: HubConfig
    engine: Engine
    ids: dict[str, uuid.UUID] = field(default_factory=dict)


def console_config(db_url: str, tmp_path: Path, **overrides: Any) -> HubConfig:
    dead_port = free_port()  # nothing listens there: deliveries to "archive" fail at once
    return hub_config(
        db_url, tmp_path,
        retry={"max_attempts": 1, "base_delay_seconds": 0, "jitter": 0},
        targets={"outbox": {"adapter": "file", "directory": str(tmp_path / "outbox")},
                 "archive": {"adapter": "rest", "url": f"http://127.0.0.1:{dead_port}/in", "timeout_seconds": 2}},
        routes=[{"name": "broken", "match": {"region": "dead*"}, "targets": ["archive"]},
                {"name": "all", "targets": ["outbox"]}],
        **overrides,
    )


def _accept(engine: Engine, tenant: str, sender: str, body: bytes, reference: str,
            attributes: dict[str, str] | None = None) -> uuid.UUID:
    message, _ = store.accept(engine, store.NewMessage(tenant, "rest", sender, [
        store.Part("payload", "application/xml", body)], sender_reference=reference,
        attributes=attributes or {}), actor=f"sender:{sender}")
    return message.id


def seed(config: HubConfig, engine: Engine) -> World:
    world = World(config, engine)
    valid, invalid = XBAU_VALID.read_bytes(), XBAU_INVALID.read_bytes()
    world.ids["mm-ok"] = _accept(engine, "memmingen", "portal", valid, "antrag-mm-1")
    world.ids["mm-invalid"] = _accept(engine, "memmingen", "portal", invalid, "antrag-mm-2")
    world.ids["mm-dead"] = _accept(engine, "memmingen", "portal", valid, "antrag-mm-3", {"region": "dead-end"})
    world.ids["mm-dead2"] = _accept(engine, "memmingen", "portal", valid, "antrag-mm-4", {"region": "dead-end"})
    world.ids["ab-ok"] = _accept(engine, "aschaffenburg", "other", valid, "antrag-ab-1")
    world.ids["ab-dead"] = _accept(engine, "aschaffenburg", "other", valid, "antrag-ab-2", {"region": "dead-end"})
    worker = make_worker(config, engine, owner="seed")
    try:
        while worker.run_once():
            pass
    finally:
        worker.channels.close()
    for name, (role, tenants) in USERS.items():
        users.add_user(engine, name, role, tenants, PASSWORD)
    return world


def status_of(engine: Engine, message_id: uuid.UUID) -> str:
    found = store.get(engine, message_id)
    assert found is not None
    return found.status


class Browser:
    """A logged-in console session over HTTP (cookie jar, CSRF token of the session)."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, follow_redirects=False, timeout=30)
        self.csrf = ""

    def login(self, name: str, password: str = PASSWORD) -> httpx.Response:
        page = self.client.get("/console/login")
        token = re.search(r'name="login_token" value="([^"]+)"', page.text)
        assert token, page.text
        r = self.client.post("/console/login", data={"username": name, "password": password,
                                                       "login_token": token.group(1)})
        if r.status_code == 303:
            self.refresh_csrf()
        return r

    def refresh_csrf(self) -> None:
        found = re.search(r'name="csrf" value="([^"]+)"', self.client.get("/console/").text)
        self.csrf = found.group(1) if found else ""

    def close(self) -> None:
        self.client.close()


def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@contextmanager
def served_world(tmp: Path) -> Iterator[tuple[World, str]]:
    """A seeded world on its own SQLite file, served on loopback (for module-scoped fixtures)."""
    url = f"sqlite:///{tmp / 'hub.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    try:
        world = seed(console_config(url, tmp), engine)
        with running(create_app(world.config, engine)) as hub_url:
            yield world, hub_url
    finally:
        engine.dispose()
