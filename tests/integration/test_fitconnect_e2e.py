"""FIT-Connect end to end: the public SDK sends through the emulator; the hub is told by a callback, fetches,
decrypts, verifies, maps, delivers to the vehicle registry over SOAP and answers with a signed SET.

Everything runs over real HTTP on loopback: the emulator, the hub (API, poller, embedded worker) and the
vehicle-registry stand-in. Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fitconnect
import httpx
import pytest
from jwcrypto import jwe, jwk, jws
from sqlalchemy import Engine

from channels.fitconnect import KeyFiles, generate_destination_keys
from hub import store
from hub.db import make_engine
from sandbox.fitconnect import Emulator, create_fitconnect_emulator
from sandbox.fitconnect.status import Status as FcStatus
from sandbox.vehicle_registry import create_vehicle_registry
from tests.support import ROOT, wait_for
from xhub.config import HubConfig
from xhub.runtime import build_app, free_port, open_engine, serve_in_thread

pytestmark = pytest.mark.slow

LEIKA = "urn:de:fim:leika:leistung:99036012104000"  # vehicle registration: routed to the vehicle registry
JSON_SCHEMA = {"schemaUri": "urn:xoev-hub:sandbox:any-json-schema", "mimeType": "application/json"}
SAMPLE = json.loads((ROOT / "sandbox/demo/samples/kfz-zulassung.json").read_text())


def application() -> dict[str, Any]:
    """A vehicle registration for a vehicle of its own (the registry refuses to register one twice)."""
    return {**SAMPLE, "fahrzeug": {**SAMPLE["fahrzeug"], "fin": "WVWZZZ1JZ" + uuid.uuid4().hex[:8].upper()},
            "wunschkennzeichen": None}
SECRET = "callback-secret-of-at-least-32-characters"
ACCEPT = "https://schema.fitko.de/fit-connect/events/accept-submission"
REJECT = "https://schema.fitko.de/fit-connect/events/reject-submission"


@dataclass
class World:
    emulator: Emulator
    emulator_url: str
    hub_url: str
    engine: Engine
    destination_id: str
    keys: KeyFiles
    sender: Any  # the SDK client
    sender_credentials: tuple[str, str]
    registry_url: str
    blob_dir: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("fitconnect-e2e")
    keys = generate_destination_keys(tmp / "keys", name="Stadt Memmingen")
    emulator = Emulator(tmp / "emulator")
    hub_port = free_port()
    destination_id = emulator.add_destination(
        json.loads(keys.encryption_public.read_text()), json.loads(keys.signing_public.read_text()), [LEIKA],
        callback_url=f"http://127.0.0.1:{hub_port}/api/v1/fitconnect/callback", callback_secret=SECRET)
    sender_credentials = emulator.add_client("sender", [destination_id])
    subscriber_id, subscriber_secret = emulator.add_client("subscriber", [destination_id])
    rules = tmp / "rules"
    shutil.copytree(ROOT / "mappings" / "vehicle-registration-to-registry", rules / "vehicle-registration-to-registry")
    (rules / "routes.toml").write_text(
        '[[routes]]\nname = "kfz"\nmatch = { service = "urn:de:fim:leika:leistung:99036*" }\n'
        'targets = [{ target = "kfz-register", mapping = "vehicle-registration-to-registry" }]\n'
        'not_checked = "pass"\n')
    db_url = f"sqlite:///{tmp / 'hub.db'}"
    with serve_in_thread(create_fitconnect_emulator(emulator)) as emulator_url, \
            serve_in_thread(create_vehicle_registry(users={})) as registry_url:
        config = HubConfig.model_validate({
            "database": {"url": db_url},
            "storage": {"blob_dir": str(tmp / "blobs")},
            "worker": {"poll_interval_seconds": 0.05},
            "rules_dir": str(rules),
            "targets": {"kfz-register": {"adapter": "soap", "wsdl": f"{registry_url}/VehicleRegistry?wsdl",
                                         "operation": "RegisterVehicle", "reference_path": "RegistrationNumber"}},
            "fitconnect": {
                "token_url": f"{emulator_url}/token", "submission_api_url": f"{emulator_url}/v1",
                "client_id": subscriber_id, "client_secret": subscriber_secret, "callback_secret": SECRET,
                "poll_interval_seconds": 3600,  # only the callbacks make it poll in this test
                "destinations": [{"id": destination_id, "encryption_key": str(keys.encryption_private),
                                  "signing_key": str(keys.signing_private), "tenant": "memmingen"}],
            },
        })
        open_engine(config).dispose()  # migrates the new database
        engine = make_engine(db_url)
        with serve_in_thread(build_app(config, engine, embedded_worker=True), port=hub_port) as hub_url:
            sender = fitconnect.FITConnectClient(fitconnect.Environment.TESTING, *sender_credentials)
            sender.token_url, sender.submission_api_url = f"{emulator_url}/token", f"{emulator_url}/v1"
            yield World(emulator, emulator_url, hub_url, engine, destination_id, keys, sender, sender_credentials,
                        registry_url, tmp / "blobs")
        engine.dispose()
    emulator.close()


def message_for(world: World, submission_id: str) -> store.Message | None:
    for m in store.list_messages(world.engine, limit=1000):
        if m.external_id == submission_id:
            return m
    return None


def settled(world: World, submission_id: str) -> store.Message:
    def done() -> store.Message | None:
        m = message_for(world, submission_id)
        return m if m is not None and m.status in {"acknowledged", "rejected", "dead"} else None

    found: store.Message = wait_for(done, timeout=90, interval=0.1)
    return found


def event_log(world: World, case_id: str) -> list[dict[str, Any]]:
    token = httpx.post(f"{world.emulator_url}/token", data={
        "grant_type": "client_credentials", "client_id": world.sender_credentials[0],
        "client_secret": world.sender_credentials[1]}).json()["access_token"]
    r = httpx.get(f"{world.emulator_url}/v1/cases/{case_id}/events", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    decoded = []
    for compact in r.json()["eventLog"]:
        token_ = jws.JWS()
        token_.deserialize(compact)
        decoded.append({"compact": compact, "header": token_.jose_header,
                        "claims": json.loads(token_.objects["payload"])})
    return decoded


@pytest.mark.parametrize("attachments", [[], [b"%PDF-1.7 Fahrzeugschein " * 4000]], ids=["plain", "attachment"])
def test_sdk_submission_is_fetched_delivered_and_accepted(world: World, attachments: list[bytes]) -> None:
    data = application()
    sent = world.sender.submission(world.destination_id, LEIKA, data=json.dumps(data),
                                   data_schema=JSON_SCHEMA, attachments=attachments)
    message = settled(world, sent["submissionId"])
    assert message.status == "acknowledged", message.last_error
    assert (message.channel, message.tenant, message.case_id) == ("fitconnect", "memmingen",
                                                                              sent["caseId"])
    assert (message.attributes or {})["service"] == LEIKA
    parts = store.payload(world.engine, message.id)
    assert [p.role for p in parts] == ["payload", "metadata", *(["attachment"] * len(attachments))]
    assert json.loads(parts[0].body or b"") == data
    if attachments:
        assert parts[2].blob_path and parts[2].size == len(attachments[0])
        assert parts[2].sha256 == hashlib.sha256(attachments[0]).hexdigest()
    # The vehicle registry got the mapped SOAP request, with the hub's idempotency key.
    received = httpx.get(f"{world.registry_url}/_received").json()["items"]
    assert any(i["idempotency_key"] == f"xhub-{message.id}-kfz-register" for i in received)
    # The sender sees the accept-submission, signed with the destination's key, with the right tags.
    assert world.emulator.submission_status(sent["submissionId"]) == FcStatus.ACCEPTED
    accepts = [e for e in event_log(world, sent["caseId"]) if ACCEPT in e["claims"]["events"]]
    assert len(accepts) == 1
    signing_key = jwk.JWK(**json.loads(world.keys.signing_public.read_text()))
    verifier = jws.JWS()
    verifier.deserialize(accepts[0]["compact"])
    verifier.verify(signing_key, alg="PS512")  # raises if the signature is not the destination's
    claims = accepts[0]["claims"]
    assert claims["sub"] == f"submission:{sent['submissionId']}" and claims["txn"] == f"case:{sent['caseId']}"
    assert claims["iss"] == world.destination_id and accepts[0]["header"]["typ"] == "secevent+jwt"
    tags = claims["events"][ACCEPT]["authenticationTags"]
    assert set(tags["attachments"]) == {a for a in (message.attributes or {})["fitconnect"]["auth_tags"]["attachments"]}


def test_a_tampered_submission_is_rejected_with_the_problem_and_kept(world: World) -> None:
    data = json.dumps(application()).encode()
    good = world.sender.encrypt(world.destination_id, data)
    head, key, iv, ciphertext, tag = good.split(".")
    flipped = ("A" if ciphertext[5] != "A" else "B").join([ciphertext[:5], ciphertext[6:]])
    sent = world.sender.submission(world.destination_id, LEIKA, data_encrypted=".".join([head, key, iv, flipped, tag]),
                                   data_sha512=hashlib.sha512(data).hexdigest(),
                                   data_schema=JSON_SCHEMA)
    message = settled(world, sent["submissionId"])
    assert message.status == "rejected" and "encryption-issue" in (message.last_error or "")
    assert world.emulator.submission_status(sent["submissionId"]) == FcStatus.REJECTED
    (reject,) = [e for e in event_log(world, sent["caseId"]) if REJECT in e["claims"]["events"]]
    problems = reject["claims"]["events"][REJECT]["problems"]
    assert problems[0]["type"].endswith("/encryption-issue") and problems[0]["instance"] == "data"


def test_a_hash_mismatch_is_rejected(world: World) -> None:
    # The SDK computes the hash itself from plain data; with encrypted data it takes ours: a wrong one.
    encrypted = world.sender.encrypt(world.destination_id, json.dumps(application()).encode())
    sent = world.sender.submission(world.destination_id, LEIKA, data_encrypted=encrypted,
                                   data_sha512=hashlib.sha512(b"something else").hexdigest(), data_schema=JSON_SCHEMA)
    message = settled(world, sent["submissionId"])
    assert message.status == "rejected"
    (reject,) = [e for e in event_log(world, sent["caseId"]) if REJECT in e["claims"]["events"]]
    assert reject["claims"]["events"][REJECT]["problems"][0]["type"].endswith("/hash-mismatch")


@pytest.mark.parametrize(("headers", "why"), [
    ({}, "missing"),
    ({"callback-timestamp": "{now}", "callback-authentication": "0" * 128}, "forged"),
    ({"callback-timestamp": "{stale}", "callback-authentication": "{stale_hmac}"}, "stale"),
])
def test_forged_or_stale_callbacks_are_refused(world: World, headers: dict[str, str], why: str) -> None:
    body = b'{"type": "https://schema.fitko.de/fit-connect/callbacks/new-submissions"}'
    now, stale = str(int(time.time())), str(int(time.time()) - 3600)
    stale_hmac = hmac.new(SECRET.encode(), f"{stale}.".encode() + body, hashlib.sha512).hexdigest()
    filled = {k: v.format(now=now, stale=stale, stale_hmac=stale_hmac) for k, v in headers.items()}
    r = httpx.post(f"{world.hub_url}/api/v1/fitconnect/callback", content=body, headers=filled)
    assert r.status_code == 401 and r.json()["type"] == "urn:xoev-hub:problem:callback-refused", why


def test_a_valid_callback_is_accepted_once_and_its_replay_refused(world: World) -> None:
    body = b'{"type": "https://schema.fitko.de/fit-connect/callbacks/new-submissions"}'
    now = str(int(time.time()))
    auth = hmac.new(SECRET.encode(), f"{now}.".encode() + body, hashlib.sha512).hexdigest()
    headers = {"callback-timestamp": now, "callback-authentication": auth}
    first = httpx.post(f"{world.hub_url}/api/v1/fitconnect/callback", content=body, headers=headers)
    assert first.status_code == 200 and first.json()["action"] == "poll triggered"
    again = httpx.post(f"{world.hub_url}/api/v1/fitconnect/callback", content=body, headers=headers)
    assert again.status_code == 401


def _stranger_jwe(data: bytes) -> str:
    """Encrypted for a key that is not the destination's: the hub cannot decrypt it."""
    stranger = jwk.JWK.generate(kty="RSA", size=4096, kid="not-the-destination")
    token = jwe.JWE(data, protected={"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": "not-the-destination",
                                     "cty": "application/json"})
    token.add_recipient(stranger)
    return str(token.serialize(compact=True))


def test_data_encrypted_for_another_key_is_rejected(world: World) -> None:
    data = json.dumps(application()).encode()
    sent = world.sender.submission(world.destination_id, LEIKA, data_encrypted=_stranger_jwe(data),
                                   data_sha512=hashlib.sha512(data).hexdigest(), data_schema=JSON_SCHEMA)
    message = settled(world, sent["submissionId"])
    assert message.status == "rejected" and "encryption-issue (data)" in (message.last_error or "")
    (reject,) = [e for e in event_log(world, sent["caseId"]) if REJECT in e["claims"]["events"]]
    assert reject["claims"]["events"][REJECT]["problems"][0]["type"].endswith("/encryption-issue")


def test_metadata_against_the_schema_is_rejected(world: World) -> None:
    metadata = {"$schema": "https://schema.fitko.de/fit-connect/metadata/1.0.0/metadata.schema.json",
                "contentStructure": {"data": {"hash": {"type": "md5", "content": "nope"},
                                              "submissionSchema": JSON_SCHEMA}, "attachments": []}}
    sent = world.sender.submission(world.destination_id, LEIKA, metadata_encrypted=world.sender.encrypt(
        world.destination_id, json.dumps(metadata).encode()), data=json.dumps(application()), data_schema=JSON_SCHEMA)
    message = settled(world, sent["submissionId"])
    assert message.status == "rejected" and "schema-violation (metadata)" in (message.last_error or ""), \
        message.last_error
    (reject,) = [e for e in event_log(world, sent["caseId"]) if REJECT in e["claims"]["events"]]
    assert reject["claims"]["events"][REJECT]["problems"][0]["instance"] == "metadata"


def test_an_undecryptable_attachment_is_rejected(world: World) -> None:
    data, attachment = json.dumps(application()).encode(), b"%PDF-1.7 Vollmacht " * 500
    created = world.sender.create_submission(world.destination_id, LEIKA, num_attachments=1)
    attachment_id = created["announcedAttachments"][0]
    world.sender.upload_attachment(world.destination_id, created["submissionId"], attachment_id,
                                   attachment_encrypted=_stranger_jwe(attachment))
    metadata = {
        "$schema": "https://schema.fitko.de/fit-connect/metadata/1.0.0/metadata.schema.json",
        "contentStructure": {
            "data": {"hash": {"type": "sha512", "content": hashlib.sha512(data).hexdigest()},
                     "submissionSchema": JSON_SCHEMA},
            "attachments": [{"attachmentId": attachment_id, "mimeType": "application/pdf", "purpose": "attachment",
                             "hash": {"type": "sha512", "content": hashlib.sha512(attachment).hexdigest()}}],
        },
    }
    world.sender.submit_submission(world.destination_id, created["submissionId"], metadata=json.dumps(metadata),
                                   data=data)
    message = settled(world, created["submissionId"])
    assert message.status == "rejected", message.last_error
    assert f"encryption-issue (attachment:{attachment_id})" in (message.last_error or "")
    (reject,) = [e for e in event_log(world, created["caseId"]) if REJECT in e["claims"]["events"]]
    assert reject["claims"]["events"][REJECT]["problems"][0]["instance"] == f"attachment:{attachment_id}"


def test_nothing_is_left_half_processed(world: World) -> None:
    """After all the cases above: no message waits in an intermediate state, no temporary file is left."""
    statuses = {m.status for m in store.list_messages(world.engine, limit=1000)}
    assert statuses <= {"acknowledged", "rejected"}, statuses
    incoming = world.blob_dir / ".incoming"
    assert not incoming.exists() or not any(incoming.iterdir())
