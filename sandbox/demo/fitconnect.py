"""The FIT-Connect part of ``xhub demo``: the local delivery-service emulator, a destination owned by the
hub (keys generated for it), and one submission sent with the public ``fitconnect`` SDK, as an online
service would send it. ``endpoints.json`` tells anyone how to point their own FIT-Connect client at it.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from channels.fitconnect import KeyFiles, generate_destination_keys
from hub.models import Message
from sandbox.fitconnect import Emulator, create_fitconnect_emulator
from xhub.runtime import serve_in_thread

__all__ = ["FitConnectDemo", "start"]

LEIKA = "urn:de:fim:leika:leistung:99036012104000"  # Kfz-Zulassung: the shipped route kfz-zulassung
JSON_SCHEMA = {"schemaUri": "urn:xoev-hub:sandbox:any-json-schema", "mimeType": "application/json"}


@dataclass
class FitConnectDemo:
    emulator: Emulator
    url: str
    destination_id: str
    sender: tuple[str, str]
    subscriber: tuple[str, str]
    keys: KeyFiles
    callback_secret: str

    def config_section(self) -> str:
        return f"""
[fitconnect]
token_url = "{self.url}/token"
submission_api_url = "{self.url}/v1"
client_id = "{self.subscriber[0]}"
client_secret = "{self.subscriber[1]}"
callback_secret = "{self.callback_secret}"
poll_interval_seconds = 30

[[fitconnect.destinations]]
id = "{self.destination_id}"
tenant = "memmingen"
encryption_key = "{self.keys.encryption_private}"
signing_key = "{self.keys.signing_private}"
"""

    def endpoints(self) -> dict[str, Any]:
        return {"token_url": f"{self.url}/token", "submission_api_url": f"{self.url}/v1",
                "sender_client_id": self.sender[0], "sender_client_secret": self.sender[1],
                "destination_id": self.destination_id, "service_identifier": LEIKA,
                "submission_schema": JSON_SCHEMA}

    def send(self, application: dict[str, Any], attachment: bytes) -> str:
        """Send as an EfA online service would: the public SDK, pointed at the emulator."""
        import fitconnect  # the public SDK (a dev dependency, installed by `make demo`)

        client = fitconnect.FITConnectClient(fitconnect.Environment.TESTING, *self.sender)
        client.token_url, client.submission_api_url = f"{self.url}/token", f"{self.url}/v1"
        sent = client.submission(self.destination_id, LEIKA, data=json.dumps(application), data_schema=JSON_SCHEMA,
                                 attachments=[attachment])
        return str(sent["submissionId"])


def start(stack: ExitStack, workdir: Path, hub_port: int) -> FitConnectDemo:
    """Keys for a destination, the emulator serving it, callbacks to the hub at ``hub_port``."""
    keys = generate_destination_keys(workdir / "fitconnect-keys", name="Stadt Memmingen (demo)")
    emulator = Emulator(workdir / "fitconnect-emulator")
    stack.callback(emulator.close)
    url = stack.enter_context(serve_in_thread(create_fitconnect_emulator(emulator)))
    secret = secrets.token_urlsafe(32)
    destination_id = emulator.add_destination(
        json.loads(keys.encryption_public.read_text()), json.loads(keys.signing_public.read_text()), [LEIKA],
        callback_url=f"http://127.0.0.1:{hub_port}/api/v1/fitconnect/callback", callback_secret=secret)
    return FitConnectDemo(emulator, url, destination_id, emulator.add_client("sender", [destination_id]),
                          emulator.add_client("subscriber", [destination_id]), keys, secret)


def message_of(engine: Engine, submission_id: str, timeout: float) -> uuid.UUID | None:
    """The hub's message for a submission, once the poller has stored it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            found = conn.execute(select(Message.id).where(Message.channel == "fitconnect",
                                                          Message.external_id == submission_id)).first()
        if found is not None:
            return uuid.UUID(str(found[0]))
        time.sleep(0.1)
    return None
