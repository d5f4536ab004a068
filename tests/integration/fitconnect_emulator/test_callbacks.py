"""Callbacks: new-submissions to the destination, new-events to the sender, each with a correct HMAC."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from sandbox.fitconnect import Status, create_fitconnect_emulator
from tests.integration.fitconnect_emulator.conftest import LEIKA, Keys, Setup, add_destination, make_emulator
from tests.integration.fitconnect_emulator.parties import Subscriber, sdk_sender, token
from tests.support import wait_for
from xhub.runtime import free_port, serve_in_thread

SECRET = "insecure_unsafe_qHScgrg_kP-R31jHUwp3GkVkGJolvBchz65b74Lzue0"
SENDER_SECRET = "another-callback-secret-of-32-characters-at-least"


@dataclass
class Receiver:
    url: str
    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    def wait(self, n: int) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + 10
        while len(self.calls) < n and time.monotonic() < deadline:
            self.arrived.wait(0.05)
        assert len(self.calls) >= n, self.calls
        return self.calls


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    app = FastAPI()
    holder: list[Receiver] = []

    @app.post("/callback/{who}")
    async def callback(request: Request) -> Response:
        holder[0].calls.append(({**request.headers, "path": request.url.path}, await request.body()))
        holder[0].arrived.set()
        return Response(status_code=200)

    with serve_in_thread(app) as url:
        holder.append(Receiver(url))
        yield holder[0]


def check_hmac(headers: dict[str, str], body: bytes, secret: str) -> None:
    timestamp = headers["callback-timestamp"]
    assert abs(int(timestamp) - time.time()) < 300
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha512).hexdigest()
    assert headers["callback-authentication"] == expected
    assert expected == expected.lower() and len(expected) == 128


@pytest.fixture
def with_callback(tmp_path: Path, keys: Keys, receiver: Receiver) -> Iterator[Setup]:
    emu = make_emulator(tmp_path / "state", keys)
    dest = add_destination(emu, keys, callback_url=f"{receiver.url}/callback/destination", callback_secret=SECRET)
    try:
        with serve_in_thread(create_fitconnect_emulator(emu)) as url:
            yield Setup(emu, url, dest, emu.add_client("sender", [dest]), emu.add_client("subscriber", [dest]), keys)
    finally:
        emu.close()


def test_a_new_submission_is_announced_with_a_correct_hmac(with_callback: Setup, receiver: Receiver) -> None:
    sent = sdk_sender(with_callback).submission(with_callback.destination_id, LEIKA, data={"$schema": "urn:x:y"})
    ((headers, body),) = receiver.wait(1)
    assert headers["path"] == "/callback/destination"
    assert headers["content-type"] == "application/json"
    check_hmac(headers, body, SECRET)
    payload = json.loads(body)
    assert payload == {
        "type": "https://schema.fitko.de/fit-connect/submission-api/callbacks/new-submissions",
        "submissionIds": [sent["submissionId"]],
        "submissions": [{"destinationId": with_callback.destination_id, "submissionId": sent["submissionId"],
                         "caseId": sent["caseId"]}]}


def test_the_sender_hears_of_the_decision(with_callback: Setup, receiver: Receiver) -> None:
    setup = with_callback
    with httpx.Client(base_url=setup.url, headers={"Authorization": f"Bearer {token(setup.url, *setup.sender)}"}) \
            as sender:
        created = sender.post("/v1/submissions", json={
            "destinationId": setup.destination_id, "announcedAttachments": [],
            "serviceType": {"identifier": LEIKA},
            "callback": {"url": f"{receiver.url}/callback/sender", "secret": SENDER_SECRET}}).json()
        metadata = sdk_sender(setup).encrypt(setup.destination_id, {"contentStructure": {"attachments": []}})
        assert sender.put(f"/v1/submissions/{created['submissionId']}",
                          json={"encryptedMetadata": metadata}).status_code == 202
    receiver.wait(1)
    sub = Subscriber(setup)
    try:
        r = sub.http.get(f"/v1/submissions/{created['submissionId']}")
        assert r.status_code == 200 and "encryptedData" not in r.json()
        assert sub.post_event(created["caseId"], sub.reject({**r.json(), "attachment_tags": {}})).status_code == 204
    finally:
        sub.close()
    calls = receiver.wait(2)
    headers, body = calls[1]
    assert headers["path"] == "/callback/sender"
    check_hmac(headers, body, SENDER_SECRET)
    assert json.loads(body)["type"] == "https://schema.fitko.de/fit-connect/submission-api/callbacks/new-events"


def test_an_unreachable_callback_is_not_fatal(tmp_path: Path, keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    emu = make_emulator(tmp_path / "state", keys)
    dest = add_destination(emu, keys, callback_url=f"http://127.0.0.1:{free_port()}/gone", callback_secret=SECRET)
    try:
        with serve_in_thread(create_fitconnect_emulator(emu)) as url:
            setup = Setup(emu, url, dest, emu.add_client("sender", [dest]), emu.add_client("subscriber", [dest]),
                          keys)
            sent: dict[str, Any] = sdk_sender(setup).submission(dest, LEIKA, data={"$schema": "urn:x:y"})
            wait_for(lambda: "callback to" in caplog.text, timeout=10)
        assert "callback to" in caplog.text and "failed" in caplog.text
        assert emu.submission_status(sent["submissionId"]) is Status.SUBMITTED
    finally:
        emu.close()
