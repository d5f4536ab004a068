"""The subscriber library against the local delivery-service emulator over real HTTP, with the public
``fitconnect`` package from PyPI as the sender."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fitconnect
import pytest
from jwcrypto import jwk, jws

import sandbox.fitconnect as sandbox
from channels.fitconnect import (
    ACCEPT,
    DestinationConfig,
    FitConnectConfig,
    KeyFiles,
    SubmissionRejected,
    SubscriberClient,
    generate_destination_keys,
)
from channels.fitconnect.keys import b64u_decode
from xhub.runtime import serve_in_thread

pytestmark = pytest.mark.slow
LEIKA = "urn:de:fim:leika:leistung:99010003001006"
XML = "<antrag xmlns='urn:test'><name>Erika Mustermann</name></antrag>"
SCHEMA = {"schemaUri": "urn:xoev-de:bmk:standard:xbau_2.3", "mimeType": "application/xml"}


@dataclass
class World:
    url: str
    emulator: Any
    destination_id: str
    keys: KeyFiles
    sender: Any
    subscriber: SubscriberClient


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    keys = generate_destination_keys(tmp_path_factory.mktemp("keys"), name="dest")
    emu = sandbox.Emulator(tmp_path_factory.mktemp("emu"),
                           signing_key=jwk.JWK.generate(kty="RSA", size=2048, kid="emulator-sig"))
    destination_id = emu.add_destination(json.loads(keys.encryption_public.read_text()),
                                         json.loads(keys.signing_public.read_text()), [LEIKA])
    sender_id, sender_secret = emu.add_client("sender", [destination_id])
    subscriber_id, subscriber_secret = emu.add_client("subscriber", [destination_id])
    with serve_in_thread(sandbox.create_fitconnect_emulator(emu)) as url:
        sender = fitconnect.FITConnectClient(fitconnect.Environment.TESTING, sender_id, sender_secret)
        sender.token_url, sender.submission_api_url = f"{url}/token", f"{url}/v1"
        config = FitConnectConfig(
            token_url=f"{url}/token", submission_api_url=url, client_id=subscriber_id,
            client_secret=subscriber_secret,
            destinations=[DestinationConfig(id=destination_id, encryption_key=keys.encryption_private,
                                            signing_key=keys.signing_private, tenant="memmingen")])
        with SubscriberClient(config) as subscriber:
            yield World(url, emu, destination_id, keys, sender, subscriber)
    emu.close()


def send(world: World, attachments: list[bytes], **kw: Any) -> str:
    result = world.sender.submission(world.destination_id, LEIKA, data=XML, data_schema=SCHEMA,
                                     attachments=attachments, **kw)
    return str(result["submissionId"])


def pick(world: World, submission_id: str) -> Any:
    (ref,) = [r for r in world.subscriber.pending(world.destination_id) if r.submission_id == submission_id]
    return ref


@pytest.mark.parametrize("attachments", [[], [b"%PDF-1.7 " + os.urandom(3 * 1024 * 1024)]])
def test_pypi_sender_to_hub_accept(world: World, tmp_path: Path, attachments: list[bytes]) -> None:
    submission_id = send(world, attachments)
    ref = pick(world, submission_id)
    got = world.subscriber.fetch(ref, tmp_path)
    assert got.data.decode() == XML and got.data_mime_type == "application/xml"
    assert got.service_identifier == LEIKA
    assert [a.path.read_bytes() for a in got.attachments] == attachments
    world.subscriber.accept(ref, got.auth_tags)
    world.subscriber.accept(ref, got.auth_tags)  # idempotent: a repeat after a crash sends nothing
    assert str(world.emulator.submission_status(submission_id)).endswith("accepted")
    events = world.subscriber.event_log(ref.case_id, world.destination_id)
    assert all(e.verified for e in events), events
    accepted = [e for e in events if e.event == ACCEPT]
    assert len(accepted) == 1 and accepted[0].issuer == world.destination_id
    assert accepted[0].payload["events"][ACCEPT]["authenticationTags"] == got.auth_tags.as_json()
    # the sender's view: the accept SET verifies against the destination's public signing key
    raw = next(t for t in _log(world, ref.case_id) if ACCEPT in _claims(t)["events"])
    token = jws.JWS()
    token.deserialize(raw)
    token.verify(jwk.JWK(**json.loads(world.keys.signing_public.read_text())), alg="PS512")
    assert submission_id not in {r.submission_id for r in world.subscriber.pending(world.destination_id)}


def test_tampered_data_is_rejected(world: World, tmp_path: Path) -> None:
    encrypted = world.sender.encrypt(world.destination_id, XML)
    parts = encrypted.split(".")
    parts[3] = ("A" if parts[3][0] != "A" else "B") + parts[3][1:]
    submission_id = send(world, [], data_encrypted=".".join(parts),
                         data_sha512=hashlib.sha512(XML.encode()).hexdigest())
    ref = pick(world, submission_id)
    with pytest.raises(SubmissionRejected) as info:
        world.subscriber.fetch(ref, tmp_path)
    assert [(p.type.rsplit("/", 1)[-1], p.instance) for p in info.value.problems] == [("encryption-issue", "data")]
    assert list(tmp_path.iterdir()) == []
    world.subscriber.reject(ref, info.value.problems)
    world.subscriber.reject(ref, info.value.problems)  # idempotent
    assert str(world.emulator.submission_status(submission_id)).endswith("rejected")


def _log(world: World, case_id: str) -> list[str]:
    response = world.subscriber.api.get_json(f"/v1/cases/{case_id}/events", what="test")
    return [str(t) for t in response["eventLog"]]


def _claims(token: str) -> dict[str, Any]:
    return dict(json.loads(b64u_decode(token.split(".")[1])))
