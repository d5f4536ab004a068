"""SubscriberClient against the delivery-service emulator (:mod:`sandbox.fitconnect`) over loopback HTTP.

The sender encrypts with jwcrypto and sends what no real SDK would (tampered ciphertext, the wrong key,
metadata that does not fit); a gateway in front of the emulator injects the faults a real delivery service
shows now and then (a failed download, a conflicting decision by another worker, a 409 without one). The
HTTP status mapping itself is unit-tested on :class:`~channels.fitconnect.api.SubmissionApi`
(tests/unit/fitconnect/test_api.py).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from jwcrypto import jwk
from starlette.concurrency import run_in_threadpool

from channels.fitconnect import (
    ACCEPT,
    REJECT,
    AuthTags,
    DestinationConfig,
    FitConnectConfig,
    KeyFiles,
    SubmissionRef,
    SubmissionRejected,
    SubscriberClient,
)
from channels.fitconnect.events import accept_set
from channels.fitconnect.keys import load_private_key
from channels.fitconnect.reject_reasons import PROBLEM_BASE, hash_mismatch
from hub.errors import Permanent, Retriable
from sandbox.fitconnect import Emulator, create_fitconnect_emulator
from tests.fitconnect_sender import LEIKA, Sender, Sent, encrypt, flip_ciphertext, metadata_for
from xhub.runtime import serve_in_thread

pytestmark = pytest.mark.slow

ATT = "2046f9f1-dc89-4440-9c24-c76a8f40d668"
PDF = b"%PDF-1.7 " + bytes(range(256)) * 40
XML = b"<antrag>1</antrag>"
XBAU = {"schemaUri": "urn:xoev-de:bmk:standard:xbau_2.3", "mimeType": "application/xml"}


@dataclass
class Plan:
    method: str
    path: str  # a regular expression for the whole path
    answer: tuple[int, dict[str, str], bytes] | None = None  # answered here, never reaches the emulator
    before: Callable[[], None] | None = None  # run (in a thread) before the request goes on


@dataclass
class Gateway:
    """ASGI in front of the emulator: each plan applies to the next matching request, once."""

    app: Any
    plans: list[Plan] = field(default_factory=list)

    def once(self, method: str, path: str, **kw: Any) -> None:
        self.plans.append(Plan(method, path, **kw))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        plan = self._take(scope) if scope["type"] == "http" else None
        if plan is not None and plan.before is not None:
            await run_in_threadpool(plan.before)
        if plan is not None and plan.answer is not None:
            status, headers, body = plan.answer
            raw = [(k.lower().encode(), v.encode()) for k, v in {**headers, "content-length": str(len(body))}.items()]
            await send({"type": "http.response.start", "status": status, "headers": raw})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    def _take(self, scope: Any) -> Plan | None:
        for i, plan in enumerate(self.plans):
            if plan.method == scope["method"] and re.fullmatch(plan.path, scope["path"]):
                return self.plans.pop(i)
        return None


def problem(status: int, name: str) -> tuple[int, dict[str, str], bytes]:
    body = {"type": f"https://schema.fitko.de/fit-connect/submission-api/problems/{name}", "title": name,
            "status": status}
    return status, {"content-type": "application/problem+json"}, json.dumps(body).encode()


class Recording(httpx.HTTPTransport):
    """The real transport, keeping every request it sent."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


@dataclass
class Service:
    emulator: Emulator
    gateway: Gateway
    url: str


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    emulator = Emulator(tmp_path_factory.mktemp("emulator"),
                        signing_key=jwk.JWK.generate(kty="RSA", size=2048, kid="emulator-signing"))
    gateway = Gateway(create_fitconnect_emulator(emulator))
    with serve_in_thread(gateway) as url:
        yield Service(emulator, gateway, url)
    emulator.close()


@dataclass
class World:
    service: Service
    destination_id: str
    sender: Sender
    config: FitConnectConfig
    transport: Recording
    client: SubscriberClient


@pytest.fixture
def world(service: Service, keys: KeyFiles) -> Iterator[World]:
    """A fresh destination (so that listings hold this test's submissions only), its sender and subscriber."""
    public = json.loads(keys.encryption_public.read_text())
    destination_id = service.emulator.add_destination(public, json.loads(keys.signing_public.read_text()), [LEIKA])
    sender = Sender(service.url, service.emulator.add_client("sender", [destination_id]), destination_id, public)
    client_id, secret = service.emulator.add_client("subscriber", [destination_id])
    config = FitConnectConfig(
        token_url=f"{service.url}/token", submission_api_url=service.url, client_id=client_id, client_secret=secret,
        page_size=2, destinations=[DestinationConfig(id=destination_id, encryption_key=keys.encryption_private,
                                                     signing_key=keys.signing_private, tenant="memmingen")])
    transport = Recording()
    service.gateway.plans.clear()
    with SubscriberClient(config, transport=transport) as client:
        yield World(service, destination_id, sender, config, transport, client)
    sender.http.close()


def send(w: World, data: bytes | None = XML, attachments: dict[str, bytes] | None = None, *,
         metadata: dict[str, Any] | None = None, tamper: Callable[[dict[str, str]], None] | None = None,
         **header: Any) -> Sent:
    """Encrypt and send; ``tamper`` may change the compact JWEs (``metadata``, ``data``, attachment ids)."""
    attachments = {ATT: PDF} if attachments is None else attachments
    plain = metadata if metadata is not None else metadata_for(data or b"", attachments, schema=XBAU)
    tokens = {"metadata": w.sender.encrypt(json.dumps(plain).encode(), **header)}
    if data is not None:
        tokens["data"] = w.sender.encrypt(data, cty="application/xml", **header)
    tokens.update({a: w.sender.encrypt(raw, cty="application/pdf", **header) for a, raw in attachments.items()})
    if tamper:
        tamper(tokens)
    return w.sender.send(metadata=tokens.pop("metadata"), data=tokens.pop("data", None), attachments=tokens)


def ref_of(w: World, sent: Sent) -> SubmissionRef:
    return SubmissionRef(sent.submission_id, sent.case_id, w.destination_id)


def rejected_types(exc: pytest.ExceptionInfo[SubmissionRejected]) -> list[tuple[str, str]]:
    return [(p.type.removeprefix(PROBLEM_BASE), p.instance) for p in exc.value.problems]


def tree(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def posted_events(w: World) -> list[httpx.Request]:
    return [r for r in w.transport.requests if r.method == "POST" and r.url.path.endswith("/events")]


def test_pending_reads_every_page(world: World) -> None:
    made = [send(world, attachments={}) for _ in range(5)]
    refs = list(world.client.pending(world.destination_id))
    assert {r.submission_id for r in refs} == {s.submission_id for s in made}
    pages = [r for r in world.transport.requests if r.url.path == "/v1/submissions"]
    assert [int(r.url.params["offset"]) for r in pages] == [0, 2, 4]
    assert len([r for r in world.transport.requests if r.url.path == "/token"]) == 1  # cached across requests


@pytest.mark.parametrize("zip_def", [False, True])
def test_fetch_decrypts_and_verifies(world: World, tmp_path: Path, zip_def: bool) -> None:
    md = metadata_for(XML, {ATT: PDF}, schema=XBAU)
    md["contentStructure"]["attachments"][0]["filename"] = f"../{ATT}.pdf"
    sent = send(world, metadata=md, zip_def=zip_def)
    got = world.client.fetch(ref_of(world, sent), tmp_path)
    assert got.data == XML and got.data_mime_type == "application/xml"
    assert got.service_identifier == LEIKA
    (attachment,) = got.attachments
    assert attachment.path.read_bytes() == PDF and attachment.size == len(PDF)
    assert attachment.path.parent == tmp_path and attachment.filename == f"../{ATT}.pdf"  # never used as a path
    assert tree(tmp_path) == [f"attachment-{ATT}"]  # no .jwe or .part left


def test_fetch_json_data(world: World, tmp_path: Path) -> None:
    data = b'{"a": 1}'
    sent = send(world, data, {}, metadata=metadata_for(data))
    assert world.client.fetch(ref_of(world, sent), tmp_path).data_mime_type == "application/json"


def _flip(part: str) -> Callable[[dict[str, str]], None]:
    def tamper(tokens: dict[str, str]) -> None:
        tokens[part] = flip_ciphertext(tokens[part])
    return tamper


@pytest.mark.parametrize("case, expected", [
    ("tampered data", [("encryption-issue", "data")]),
    ("tampered attachment", [("encryption-issue", f"attachment:{ATT}")]),
    ("attachment missing", [("attachments-mismatch", "metadata")]),
    ("no data", [("missing-data", "submission")]),
])
def test_fetch_rejects(world: World, tmp_path: Path, case: str, expected: list[tuple[str, str]]) -> None:
    if case == "tampered data":
        sent = send(world, tamper=_flip("data"))
    elif case == "tampered attachment":
        sent = send(world, tamper=_flip(ATT))
    elif case == "attachment missing":  # the metadata names an attachment the submission does not carry
        sent = send(world, attachments={}, metadata=metadata_for(XML, {ATT: PDF}, schema=XBAU))
    else:
        sent = send(world, None, metadata=metadata_for(XML, {ATT: PDF}, schema=XBAU))
    with pytest.raises(SubmissionRejected) as info:
        world.client.fetch(ref_of(world, sent), tmp_path)
    assert rejected_types(info) == expected
    assert tree(tmp_path) == []  # nothing half-processed


def test_wrong_key_rejects_metadata(world: World, tmp_path: Path, other_keys: KeyFiles) -> None:
    wrong = json.loads(other_keys.encryption_public.read_text())
    sent = world.sender.send(metadata=encrypt(wrong, json.dumps(metadata_for(XML, schema=XBAU)).encode()),
                             data=encrypt(wrong, XML))
    with pytest.raises(SubmissionRejected) as info:
        world.client.fetch(ref_of(world, sent), tmp_path)
    assert rejected_types(info) == [("encryption-issue", "metadata")]
    assert "not this destination's encryption key" in info.value.problems[0].detail


def test_hash_mismatches(world: World, tmp_path: Path) -> None:
    sent = send(world, metadata=metadata_for(b"<other/>", {ATT: b"other pdf"}, schema=XBAU))
    with pytest.raises(SubmissionRejected) as info:
        world.client.fetch(ref_of(world, sent), tmp_path)
    assert rejected_types(info) == [("hash-mismatch", "data")]  # attachments are not downloaded then
    sent = send(world, metadata=metadata_for(XML, {ATT: b"other pdf"}, schema=XBAU))
    with pytest.raises(SubmissionRejected) as info:
        world.client.fetch(ref_of(world, sent), tmp_path)
    assert rejected_types(info) == [("hash-mismatch", f"attachment:{ATT}")]
    assert tree(tmp_path) == []


def test_invalid_metadata(world: World, tmp_path: Path) -> None:
    md = metadata_for(XML, {}, schema={**XBAU, "mimeType": "text/csv"})
    sent = send(world, attachments={}, metadata=md)
    with pytest.raises(SubmissionRejected) as info:
        world.client.fetch(ref_of(world, sent), tmp_path)
    assert rejected_types(info) == [("schema-violation", "metadata")]


def test_service_mismatch(world: World, tmp_path: Path) -> None:
    other = {"identifier": "urn:de:fim:leika:leistung:99000000000000", "name": "Bauantrag"}
    sent = send(world, attachments={}, metadata=metadata_for(XML, schema=XBAU, publicServiceType=other))
    with pytest.raises(SubmissionRejected) as info:
        world.client.fetch(ref_of(world, sent), tmp_path)
    assert rejected_types(info) == [("service-mismatch", "metadata")]


def test_attachment_download_interrupted_is_retriable(world: World, tmp_path: Path) -> None:
    sent = send(world)
    world.service.gateway.once("GET", r"/v1/submissions/.*/attachments/.*", answer=problem(503, "unavailable"))
    with pytest.raises(Retriable):
        world.client.fetch(ref_of(world, sent), tmp_path)
    assert tree(tmp_path) == []
    assert world.client.fetch(ref_of(world, sent), tmp_path).attachments  # the next attempt works


def test_unknown_destination_is_permanent(world: World) -> None:
    with pytest.raises(Permanent, match="not configured"):
        list(world.client.pending(str(uuid.uuid4())))
    assert world.transport.requests == []


def test_accept_is_signed_and_idempotent(world: World, tmp_path: Path) -> None:
    sent = send(world)
    got = world.client.fetch(ref_of(world, sent), tmp_path)
    world.client.accept(got.ref, got.auth_tags)
    assert str(world.service.emulator.submission_status(sent.submission_id)).endswith("accepted")  # SET verified
    assert len(posted_events(world)) == 1 and posted_events(world)[0].headers["content-type"] == "application/jose"
    world.client.accept(got.ref, got.auth_tags)  # after a crash: the log already has it, nothing is sent
    assert len(posted_events(world)) == 1
    with pytest.raises(Permanent, match="already carries accept-submission"):
        world.client.reject(got.ref, [hash_mismatch("data")])
    events = world.client.event_log(sent.case_id, world.destination_id)
    assert [(e.name, e.verified) for e in events] == [("create-submission", True), ("submit-submission", True),
                                                      ("accept-submission", True)]
    assert events[-1].payload["events"][ACCEPT]["authenticationTags"]["attachments"] == got.auth_tags.attachments


@pytest.mark.parametrize("ours", ["reject", "accept"])
def test_409_is_resolved_by_reading_the_log(world: World, tmp_path: Path, ours: str) -> None:
    sent = send(world)
    got = world.client.fetch(ref_of(world, sent), tmp_path)

    def other_worker_rejects() -> None:
        with SubscriberClient(world.config) as other:
            other.reject(got.ref, [hash_mismatch("data")])

    world.service.gateway.once("POST", r"/v1/cases/.*/events", before=other_worker_rejects)
    if ours == "reject":
        world.client.reject(got.ref, [hash_mismatch("data")])  # 409; the log shows the same decision: fine
    else:
        with pytest.raises(Permanent, match="already carries reject-submission"):
            world.client.accept(got.ref, got.auth_tags)
    assert str(world.service.emulator.submission_status(sent.submission_id)).endswith("rejected")


def test_409_without_a_decision_is_permanent(world: World) -> None:
    sent = send(world, attachments={})
    world.service.gateway.once("POST", r"/v1/cases/.*/events", answer=problem(409, "invalid-state-transition"))
    with pytest.raises(Permanent, match="409"):
        world.client.reject(ref_of(world, sent), [hash_mismatch("data")])


def test_event_log_flags_forged_sets(world: World, other_keys: KeyFiles) -> None:
    sent = send(world, attachments={})
    ref = ref_of(world, sent)
    intruder = load_private_key(other_keys.signing_private, "signing", where="t")
    forged = accept_set(intruder, ref, AuthTags("a", "b"))  # "our" accept, signed with another key
    with world.service.emulator.db.transaction() as conn:  # written into the service's log by someone else
        for token in (forged, "not.a.set"):
            conn.execute("INSERT INTO events (case_id, submission_id, event, jti, token, issued_by, created_at) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", (sent.case_id, sent.submission_id, ACCEPT,
                                                          str(uuid.uuid4()), token, "subscriber", time.time()))
    events = world.client.event_log(sent.case_id, world.destination_id)
    assert [(e.name, e.verified) for e in events] == [("create-submission", True), ("submit-submission", True),
                                                      ("accept-submission", False), ("", False)]
    world.client.reject(ref, [hash_mismatch("data")])  # the forged accept does not count as a decision
    assert str(world.service.emulator.submission_status(sent.submission_id)).endswith("rejected")
    assert world.client.event_log(sent.case_id, world.destination_id)[-1].event == REJECT


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch, keys: KeyFiles, world: World) -> None:
    monkeypatch.setenv("FC_ENC", keys.encryption_private.read_text())
    monkeypatch.setenv("FC_SIG", keys.signing_private.read_text())
    dest = DestinationConfig(id=world.destination_id, encryption_key_env="FC_ENC", signing_key_env="FC_SIG",
                             tenant="t")
    config = world.config.model_copy(update={"destinations": [dest]})
    with SubscriberClient(config) as client:
        assert list(client.pending(world.destination_id)) == []  # the keys loaded, the client works
    monkeypatch.delenv("FC_SIG")
    with pytest.raises(Permanent, match=r"\$FC_SIG is not set"):
        SubscriberClient(config)


def test_config_hides_secrets_and_normalises_the_url(keys: KeyFiles) -> None:
    destination = DestinationConfig(id=str(uuid.uuid4()), encryption_key=keys.encryption_private,
                                    signing_key=keys.signing_private, tenant="t")
    config = FitConnectConfig(token_url="https://auth.example/token", submission_api_url="https://fc.example/v1",
                              client_id="hub", client_secret="s3cret-client", destinations=[destination])
    assert config.submission_api_url == "https://fc.example" and "s3cret-client" not in repr(config)
    with pytest.raises(ValueError, match="exactly one"):
        DestinationConfig(id=destination.id, signing_key=keys.signing_private, tenant="t")
