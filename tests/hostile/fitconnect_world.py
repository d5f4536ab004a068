"""A FIT-Connect world for the hostile tests: the delivery-service emulator on loopback, a destination with
real RSA-4096 keys, a sender that can put *any* bytes into a correctly encrypted JWE (jwcrypto), and a hub
(channel, worker, optionally the whole app) on SQLite or PostgreSQL.

Shared by ``test_fitconnect.py``, ``test_callbacks.py`` and ``test_loops_health.py``; keys are made once per
session (RSA-4096 generation is the slow part).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from jwcrypto import jwe, jwk
from sqlalchemy import Engine, text

from channels.fitconnect import KeyFiles, generate_destination_keys
from channels.fitconnect import client as client_module
from channels.fitconnect.intake import Intake
from hub import store
from hub.db import make_engine, normalise_url
from hub.worker import Worker
from sandbox.fitconnect import Emulator, create_fitconnect_emulator
from xhub.config import HubConfig
from xhub.runtime import make_worker, open_engine, serve_in_thread

LEIKA = "urn:de:fim:leika:leistung:99010003001006"
METADATA_SCHEMA = "https://schema.fitko.de/fit-connect/metadata/1.0.0/metadata.schema.json"
JSON_SCHEMA = {"schemaUri": "urn:xoev-hub:sandbox:any-json-schema", "mimeType": "application/json"}
XML_SCHEMA = {"schemaUri": "urn:xoev-hub:sandbox:any-xml-schema", "mimeType": "application/xml"}
EVENTS = "https://schema.fitko.de/fit-connect/events/"
CALLBACK_SECRET = "hostile-callback-secret-of-at-least-32-characters"
GOOD_DATA = b'{"antrag": {"name": "Erika Mustermann", "ort": "Memmingen"}}'

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


def sha512(raw: bytes) -> str:
    return hashlib.sha512(raw).hexdigest()


def b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def metadata_for(data: bytes, attachments: dict[str, bytes] | None = None, *,
                 schema: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"$schema": METADATA_SCHEMA, **extra, "contentStructure": {
        "data": {"hash": {"type": "sha512", "content": sha512(data)}, "submissionSchema": schema or JSON_SCHEMA},
        "attachments": [{"attachmentId": a, "hash": {"type": "sha512", "content": sha512(raw)},
                         "mimeType": "application/pdf", "purpose": "attachment", "filename": f"{i}.pdf"}
                        for i, (a, raw) in enumerate((attachments or {}).items())]}}


@dataclass
class Sender:
    """An online service talking to the emulator over HTTP, able to send what no real SDK would."""

    url: str
    credentials: tuple[str, str]
    destination_id: str
    public_key: dict[str, Any]
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))
    _token: str | None = None

    def token(self) -> str:
        if self._token is None:
            r = self.http.post(f"{self.url}/token", data={"grant_type": "client_credentials",
                                                      "client_id": self.credentials[0],
                                                      "client_secret": self.credentials[1]})
            r.raise_for_status()
            self._token = str(r.json()["access_token"])
        return self._token

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token()}", **kw.pop("headers", {})}
        r = self.http.request(method, f"{self.url}/v1{path}", headers=headers, **kw)
        assert r.is_success, (path, r.status_code, r.text[:500])
        return r

    def encrypt(self, plaintext: bytes, **header: Any) -> str:
        protected = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": self.public_key["kid"],
                     "cty": "application/json", **header}
        token = jwe.JWE(plaintext, protected=json.dumps(protected))
        token.add_recipient(jwk.JWK(**self.public_key))
        return str(token.serialize(compact=True))

    def send(self, *, metadata: bytes | str | None = None, data: bytes | str | None = b"",
             attachments: dict[str, str] | None = None, metadata_plain: dict[str, Any] | None = None) -> Sent:
        """Announce, upload ``attachments`` (id → compact JWE), submit. ``metadata``/``data``: plaintext bytes
        (encrypted here) or a ready compact string; ``data=None`` sends none."""
        attachments = attachments or {}
        created = self._call("POST", "/submissions", json={
            "destinationId": self.destination_id, "announcedAttachments": list(attachments),
            "serviceType": {"name": "Antrag", "identifier": LEIKA}}).json()
        for attachment_id, token in attachments.items():
            self._call("PUT", f"/submissions/{created['submissionId']}/attachments/{attachment_id}",
                       content=token, headers={"Content-Type": "application/jose"})
        if metadata is None:
            metadata = json.dumps(metadata_plain or metadata_for(data if isinstance(data, bytes) else b"")).encode()
        body = {"encryptedMetadata": metadata if isinstance(metadata, str) else self.encrypt(metadata),
                "encryptedData": data if isinstance(data, str) or data is None else self.encrypt(data)}
        self._call("PUT", f"/submissions/{created['submissionId']}", json=body)
        return Sent(created["submissionId"], created["caseId"])

    def good(self) -> Sent:
        return self.send(data=GOOD_DATA)

    def decisions(self, case_id: str) -> list[tuple[str, list[tuple[str, str]]]]:
        """The case's accept/reject events: (name, [(problem type, instance), ...])."""
        log = self._call("GET", f"/cases/{case_id}/events").json()["eventLog"]
        found = []
        for token in log:
            claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
            for event, payload in claims["events"].items():
                name = event.removeprefix(EVENTS)
                if name in ("accept-submission", "reject-submission"):
                    problems = [(p["type"].rsplit("/", 1)[-1], p["instance"]) for p in payload.get("problems", [])]
                    found.append((name, problems))
        return found


@dataclass(frozen=True)
class Sent:
    submission_id: str
    case_id: str


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
