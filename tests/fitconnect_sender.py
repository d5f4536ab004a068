"""A FIT-Connect sender for the tests: encrypts with jwcrypto (an independent JOSE implementation) and talks to
the delivery-service emulator over HTTP, able to send what no real SDK would (tampered ciphertext, wrong keys,
metadata that does not fit the data). No fake delivery service: the other side is always the emulator
(:mod:`sandbox.fitconnect`)."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
from jwcrypto import jwe, jwk

LEIKA = "urn:de:fim:leika:leistung:99010003001006"
METADATA_SCHEMA = "https://schema.fitko.de/fit-connect/metadata/1.0.0/metadata.schema.json"
JSON_SCHEMA = {"schemaUri": "urn:xoev-hub:sandbox:any-json-schema", "mimeType": "application/json"}
XML_SCHEMA = {"schemaUri": "urn:xoev-hub:sandbox:any-xml-schema", "mimeType": "application/xml"}
EVENTS = "https://schema.fitko.de/fit-connect/events/"
GOOD_DATA = b'{"antrag": {"name": "Erika Mustermann", "ort": "Memmingen"}}'


def encrypt(public: dict[str, Any], plaintext: bytes, *, zip_def: bool = False, kid: str | None = "from-key",
            cty: str = "application/json", **header: Any) -> str:
    """A compact JWE (RSA-OAEP-256, A256GCM) for ``public``; ``kid``: the key's (default), another, or none."""
    protected: dict[str, Any] = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": cty}
    if kid is not None:
        protected["kid"] = public["kid"] if kid == "from-key" else kid
    if zip_def:
        protected["zip"] = "DEF"
    token = jwe.JWE(plaintext, protected=json.dumps({**protected, **header}))
    token.add_recipient(jwk.JWK(**public))
    return str(token.serialize(compact=True))


def flip_ciphertext(token: str) -> str:
    """The same JWE with its ciphertext changed: the authentication tag no longer fits."""
    parts = token.split(".")
    parts[3] = ("A" if parts[3][0] != "A" else "B") + parts[3][1:]
    return ".".join(parts)


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
        return encrypt(self.public_key, plaintext, **header)

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
