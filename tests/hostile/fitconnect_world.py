"""A FIT-Connect world for the hostile tests: the delivery-service emulator on loopback, a destination with
real RSA-4096 keys, a sender that can put *any* bytes into a correctly encrypted JWE (jwcrypto), and a hub
(channel, worker, optionally the whole app) on SQLite or PostgreSQL.

Shared by ``test_fitconnect.py``, ``test_callbacks.py`` and ``test_loops_health.py``; keys are made once per
session (RSA-4096 generation is the slow part).
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jwcrypto import jwk
from sqlalchemy import Engine, text

from channels.fitconnect import KeyFiles, generate_destination_keys
from channels.fitconnect import client as client_module
from channels.fitconnect.intake import Intake
from hub import store
from hub.db import make_engine, normalise_url
from hub.worker import Worker
from sandbox.fitconnect import Emulator, create_fitconnect_emulator
from tests.fitconnect_sender import (  # noqa: F401  (the hostile tests import them from here)
    GOOD_DATA,
    JSON_SCHEMA,
    LEIKA,
    XML_SCHEMA,
    Sender,
    Sent,
    b64u,
    metadata_for,
)
from xhub.config import HubConfig
from xhub.runtime import make_worker, open_engine, serve_in_thread

CALLBACK_SECRET = "hostile-callback-secret-of-at-least-32-characters"

#: small limits, so that every limit can be crossed cheaply
FC_LIMITS = {"max_metadata_bytes": 64 * 1024, "max_data_bytes": 256 * 1024, "max_attachment_bytes": 64 * 1024,
             "max_submission_bytes": 100 * 1024, "max_attachments": 3, "max_intake_failures": 3}

_keys: dict[str, tuple[KeyFiles, jwk.JWK]] = {}


@contextmanager
def _keys_loaded_once() -> Iterator[None]:
    """Every subscriber client of a world loads the same two RSA-4096 keys, and checking a key of that size
    takes ~0.4 s: load each file once (by path and content) while the world lives. Tests only."""
    loaded: dict[tuple[str, str, str], Any] = {}
    original = client_module.load_private_key

    def load(source: Path | str, purpose: Any, **kw: Any) -> Any:
        key = (str(source), source.read_text() if isinstance(source, Path) else source, str(purpose))
        if key not in loaded:
            loaded[key] = original(source, purpose, **kw)
        return loaded[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(client_module, "load_private_key", load)
        yield


def destination_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[KeyFiles, jwk.JWK]:
    """The destination's key files and the emulator's signing key, made once per session."""
    if "keys" not in _keys:
        files = generate_destination_keys(tmp_path_factory.mktemp("hostile-keys"), name="Stadt Memmingen")
        _keys["keys"] = (files, jwk.JWK.generate(kty="RSA", size=2048, kid="emulator-signing"))
    return _keys["keys"]


@dataclass
class World:
    emulator: Emulator
    emulator_url: str
    destination_id: str
    sender: Sender
    config: HubConfig
    engine: Engine
    tmp: Path
    subscriber: tuple[str, str]
    extra: dict[str, Any] = field(default_factory=dict)
    _closing: list[Callable[[], None]] = field(default_factory=list)

    @functools.cached_property
    def channel(self) -> Intake:
        """A channel intake polled by the test itself (made on first use: loading RSA-4096 keys takes a while)."""
        assert self.config.fitconnect is not None
        channel = Intake(self.config.fitconnect, self.config, self.engine)
        self._closing.append(channel.close)
        return channel

    @functools.cached_property
    def worker(self) -> Worker:
        """A worker run by the test itself (:meth:`drain`), answering through the emulator."""
        worker = make_worker(self.config, self.engine)
        self._closing.append(worker.channels.close)
        return worker

    def poll(self) -> Any:
        return self.channel.poll_once()

    def drain(self) -> None:
        """Run the pipeline until nothing is due (accept/reject go out here)."""
        self.worker.run(exit_when_idle=True)

    def message(self, submission_id: str) -> store.Message | None:
        for m in store.list_messages(self.engine, limit=10_000):
            if m.external_id == submission_id:
                return m
        return None

    def outcome(self, sent: Sent) -> tuple[str, list[tuple[str, str]]]:
        """The one decision the emulator holds for ``sent`` (and that the hub stored the submission)."""
        decisions = self.sender.decisions(sent.case_id)
        assert len(decisions) == 1, decisions
        message = self.message(sent.submission_id)
        assert message is not None, "the hub did not store the submission"
        expected = "acknowledged" if decisions[0][0] == "accept-submission" else "rejected"
        assert message.status == expected, (message.status, message.last_error)
        return decisions[0]

    def assert_accepted(self, sent: Sent) -> None:
        assert self.outcome(sent) == ("accept-submission", [])

    def pending_at_emulator(self) -> list[str]:
        return [s["submissionId"] for s in self.emulator.overview()
                if s["destinationId"] == self.destination_id and s["status"] == "submitted"]


def hub_config(tmp: Path, db_url: str, emulator_url: str, destination_id: str, keys: KeyFiles,
               subscriber: tuple[str, str], limits: dict[str, Any] | None = None, **fitconnect: Any) -> HubConfig:
    return HubConfig.model_validate({
        "database": {"url": db_url},
        "storage": {"blob_dir": str(tmp / "blobs")},
        "worker": {"poll_interval_seconds": 0.05, "lease_seconds": 30},
        "retry": {"max_attempts": 3, "base_delay_seconds": 0, "jitter": 0},
        "limits": {"json_max_string_chars": 4096, "blob_min_free_bytes": 0, **(limits or {})},
        "targets": {"outbox": {"adapter": "file", "directory": str(tmp / "outbox")}},
        "routes": [{"name": "all", "targets": ["outbox"]}],
        "rules_dir": str(tmp / "rules"),
        "fitconnect": {
            "token_url": f"{emulator_url}/token", "submission_api_url": f"{emulator_url}/v1",
            "client_id": subscriber[0], "client_secret": subscriber[1], "callback_secret": CALLBACK_SECRET,
            "poll_interval_seconds": 3600, "timeout_seconds": 10,
            "destinations": [{"id": destination_id, "encryption_key": str(keys.encryption_private),
                              "signing_key": str(keys.signing_private), "tenant": "memmingen"}],
            **FC_LIMITS, **fitconnect},
    })


@contextmanager
def database(request: pytest.FixtureRequest, backend: str, tmp: Path) -> Iterator[str]:
    """A migrated database of its own for a module: a SQLite file, or a clone of the PostgreSQL template."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'hub.db'}"
        return
    from tests.conftest import PG_URL, TEMPLATE

    admin = request.getfixturevalue("pg_template")
    name = f"xhub_hostile_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"'))
    try:
        yield normalise_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, backend: str, *,
          wrap: Callable[[Any], Any] = lambda app: app, limits: dict[str, Any] | None = None,
          **fitconnect: Any) -> Iterator[World]:
    """Emulator + destination + sender + subscriber, and a hub configured for them (not yet serving).

    ``wrap`` wraps the emulator's ASGI app (e.g. to stall it); ``limits`` and ``fitconnect`` override the
    hub's ``[limits]`` and ``[fitconnect]`` settings."""
    keys, server_key = destination_keys(tmp_path_factory)
    tmp = tmp_path_factory.mktemp(f"fc-{backend}")
    emulator = Emulator(tmp / "emulator", signing_key=server_key)
    try:
        with serve_in_thread(wrap(create_fitconnect_emulator(emulator))) as url, \
                database(request, backend, tmp) as db_url:
            # the callback goes nowhere unless a test serves the hub there (its port is in world.extra)
            from xhub.runtime import free_port

            port = free_port()
            destination_id = emulator.add_destination(
                json.loads(keys.encryption_public.read_text()), json.loads(keys.signing_public.read_text()),
                [LEIKA], callback_url=f"http://127.0.0.1:{port}/api/v1/fitconnect/callback",
                callback_secret=CALLBACK_SECRET)
            sender = Sender(url, emulator.add_client("sender", [destination_id]), destination_id,
                            json.loads(keys.encryption_public.read_text()))
            subscriber = emulator.add_client("subscriber", [destination_id])
            config = hub_config(tmp, db_url, url, destination_id, keys, subscriber, limits, **fitconnect)
            open_engine(config).dispose()  # migrates a new SQLite file
            engine = make_engine(db_url)
            w = World(emulator, url, destination_id, sender, config, engine, tmp, subscriber, {"hub_port": port})
            try:
                with _keys_loaded_once():
                    yield w
            finally:
                for close in w._closing:
                    close()
                sender.http.close()
                engine.dispose()
    finally:
        emulator.close()


def world_fixtures(sqlite: str = "sqlite_world", postgres: str = "pg_world",
                   both: str = "both_worlds") -> tuple[Any, Any, Any]:
    """Fixtures for a test module, under the names given: a world on SQLite and one on PostgreSQL (module
    scope), and one that runs a test once on each. Use: ``a, b, c = world_fixtures()`` at module level."""

    @pytest.fixture(scope="module", name=sqlite)
    def sqlite_world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
        with world(request, tmp_path_factory, "sqlite") as w:
            yield w

    @pytest.fixture(scope="module", name=postgres)
    def pg_world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
        with world(request, tmp_path_factory, "postgres") as w:
            yield w

    @pytest.fixture(name=both, params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
    def both_worlds(request: pytest.FixtureRequest) -> World:
        found: World = request.getfixturevalue(sqlite if request.param == "sqlite" else postgres)
        return found

    return sqlite_world, pg_world, both_worlds
