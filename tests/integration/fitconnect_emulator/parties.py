"""The two parties in the tests: the public ``fitconnect`` SDK as sender, and a plain httpx+jwcrypto subscriber."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

import httpx
from fitconnect import Environment, FITConnectClient
from jwcrypto import jwe, jwk, jws

from sandbox.fitconnect.sets import ACCEPT, REJECT, SET_SCHEMA
from tests.integration.fitconnect_emulator.conftest import Setup


def sdk_sender(setup: Setup) -> FITConnectClient:
    """The SDK knows only FITKO's hosts; pointing it elsewhere means overwriting two attributes."""
    client = FITConnectClient(Environment.TESTING, *setup.sender)
    client.token_url = f"{setup.url}/token"
    client.submission_api_url = f"{setup.url}/v1"
    return client


def token(url: str, client_id: str, secret: str) -> str:
    r = httpx.post(f"{url}/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                         "client_secret": secret})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


class Subscriber:
    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.http = httpx.Client(base_url=setup.url, headers={
            "Authorization": f"Bearer {token(setup.url, *setup.subscriber)}"})

    def close(self) -> None:
        self.http.close()

    def pending(self, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        r = self.http.get("/v1/submissions", params={"destinationId": self.setup.destination_id, "limit": limit,
                                                     "offset": offset})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def decrypt(self, compact: str) -> bytes:
        token = jwe.JWE()
        token.deserialize(compact, key=self.setup.keys.encryption)
        return bytes(token.payload)

    def fetch(self, submission_id: str) -> dict[str, Any]:
        """Fetch, decrypt and check the hashes, as a subscriber must."""
        r = self.http.get(f"/v1/submissions/{submission_id}")
        assert r.status_code == 200, r.text
        submission = dict(r.json())
        metadata = json.loads(self.decrypt(submission["encryptedMetadata"]))
        data = self.decrypt(submission["encryptedData"])
        assert hashlib.sha512(data).hexdigest() == metadata["contentStructure"]["data"]["hash"]["content"]
        attachments, tags = {}, {}
        expected = {a["attachmentId"]: a["hash"]["content"] for a in metadata["contentStructure"]["attachments"]}
        for attachment_id in submission["attachments"]:
            with self.http.stream("GET", f"/v1/submissions/{submission_id}/attachments/{attachment_id}") as resp:
                assert resp.status_code == 200
                assert resp.headers["content-type"] == "application/jose"
                compact = b"".join(resp.iter_bytes()).decode()
            attachments[attachment_id] = self.decrypt(compact)
            tags[attachment_id] = compact.rsplit(".", 1)[1]
            assert hashlib.sha512(attachments[attachment_id]).hexdigest() == expected[attachment_id]
        submission.update(metadata=metadata, data=data, attachment_bodies=attachments, attachment_tags=tags)
        return submission

    def set_for(self, submission: dict[str, Any], event: str, payload: dict[str, Any],
                key: jwk.JWK | None = None, header: dict[str, Any] | None = None, **claims: Any) -> str:
        body = {"$schema": SET_SCHEMA, "jti": str(uuid.uuid4()), "iat": int(time.time()),
                "iss": self.setup.destination_id, "sub": f"submission:{submission['submissionId']}",
                "txn": f"case:{submission['caseId']}", "events": {event: payload}, **claims}
        signer = jws.JWS(json.dumps(body).encode())
        key = key or self.setup.keys.signature
        signer.add_signature(key, alg="PS512", protected=json.dumps(
            header or {"typ": "secevent+jwt", "alg": "PS512", "kid": key.get("kid")}))
        return str(signer.serialize(compact=True))

    def accept(self, submission: dict[str, Any]) -> str:
        tags = {"metadata": submission["encryptedMetadata"].rsplit(".", 1)[1],
                "data": submission["encryptedData"].rsplit(".", 1)[1],
                "attachments": submission["attachment_tags"]}
        return self.set_for(submission, ACCEPT, {"authenticationTags": tags})

    def reject(self, submission: dict[str, Any]) -> str:
        return self.set_for(submission, REJECT, {"problems": [{
            "type": "https://schema.fitko.de/fit-connect/events/problems/missing-schema",
            "title": "Schema-Referenz fehlt", "detail": "test", "instance": "metadata"}]})

    def post_event(self, case_id: str, token: str, content_type: str = "application/jose") -> httpx.Response:
        return self.http.post(f"/v1/cases/{case_id}/events", content=token, headers={"Content-Type": content_type})


def event_names(setup: Setup, case_id: str, bearer: str) -> list[str]:
    """The case's event log, every SET verified against the key it names (server's jwks or the destination's)."""
    r = httpx.get(f"{setup.url}/v1/cases/{case_id}/events", headers={"Authorization": f"Bearer {bearer}"})
    assert r.status_code == 200, r.text
    log = r.json()
    assert log["count"] == log["totalCount"] == len(log["eventLog"]) and log["offset"] == 0
    server_keys = {k["kid"]: k for k in httpx.get(f"{setup.url}/.well-known/jwks.json").json()["keys"]}
    names: list[str] = []
    for compact in log["eventLog"]:
        verifier = jws.JWS()
        verifier.deserialize(compact)
        header = verifier.jose_header
        assert header["typ"] == "secevent+jwt" and header["alg"] == "PS512"
        if header["kid"] in server_keys:
            key = jwk.JWK(**{k: v for k, v in server_keys[header["kid"]].items() if k != "key_ops"})
        else:
            key = jwk.JWK(**_destination_key(setup, header["kid"]))
        verifier.verify(key, alg="PS512")
        claims = json.loads(verifier.payload)
        assert claims["txn"] == f"case:{case_id}"
        names.extend(e.rsplit("/", 1)[1] for e in claims["events"])
    return names


def _destination_key(setup: Setup, kid: str) -> dict[str, Any]:
    r = httpx.get(f"{setup.url}/v1/destinations/{setup.destination_id}/keys/{kid}")
    assert r.status_code == 200, r.text
    return {k: v for k, v in r.json().items() if k != "key_ops"}

