"""Test doubles for the FIT-Connect subscriber: a sender that encrypts with jwcrypto (an independent JOSE
implementation), and an in-memory delivery service behind ``httpx.MockTransport``."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from jwcrypto import jwe, jwk, jws

from channels.fitconnect import DestinationConfig, FitConnectConfig, KeyFiles

LEIKA = "urn:de:fim:leika:leistung:99010003001006"
METADATA_SCHEMA = "https://schema.fitko.de/fit-connect/metadata/1.0.0/metadata.schema.json"
SERVICE_ISSUER = "https://fake-delivery-service.test/"
SUBMIT_EVENT = "https://schema.fitko.de/fit-connect/events/submit-submission"


def public_jwk(keys: KeyFiles) -> dict[str, Any]:
    return dict(json.loads(keys.encryption_public.read_text()))


def encrypt(public: dict[str, Any], plaintext: bytes, *, zip_def: bool = False, kid: str | None = "from-key",
            cty: str = "application/json") -> str:
    key = jwk.JWK(**public)
    header: dict[str, Any] = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": cty}
    if kid == "from-key":
        header["kid"] = public["kid"]
    elif kid is not None:
        header["kid"] = kid
    if zip_def:
        header["zip"] = "DEF"
    token = jwe.JWE(plaintext, protected=json.dumps(header))
    token.add_recipient(key)
    return str(token.serialize(compact=True))


def sha512(raw: bytes) -> str:
    return hashlib.sha512(raw).hexdigest()


def metadata_for(data: bytes, attachments: dict[str, bytes], *, mime: str = "application/xml",
                 service: str = LEIKA) -> dict[str, Any]:
    return {
        "$schema": METADATA_SCHEMA,
        "publicServiceType": {"identifier": service, "name": "Bauantrag"},
        "contentStructure": {
            "data": {"hash": {"type": "sha512", "content": sha512(data)},
                     "submissionSchema": {"schemaUri": "urn:xoev-de:bmk:standard:xbau_2.3", "mimeType": mime}},
            "attachments": [{"attachmentId": a, "hash": {"type": "sha512", "content": sha512(raw)},
                             "mimeType": "application/pdf", "purpose": "attachment", "filename": f"../{a}.pdf"}
                            for a, raw in attachments.items()],
        },
    }


@dataclass
class FakeSubmission:
    submission_id: str
    case_id: str
    destination_id: str
    encrypted_metadata: str | None
    encrypted_data: str | None
    attachments: dict[str, str]  # id → compact JWE
    service: str = LEIKA


def build_submission(public: dict[str, Any], destination_id: str, *, data: bytes = b"<antrag>1</antrag>",
                     attachments: dict[str, bytes] | None = None, mime: str = "application/xml",
                     zip_def: bool = False, metadata: dict[str, Any] | None = None,
                     tamper: Callable[[FakeSubmission], None] | None = None) -> FakeSubmission:
    attachments = attachments or {}
    md = metadata if metadata is not None else metadata_for(data, attachments, mime=mime)
    submission = FakeSubmission(
        str(uuid.uuid4()), str(uuid.uuid4()), destination_id,
        encrypt(public, json.dumps(md).encode(), zip_def=zip_def),
        encrypt(public, data, zip_def=zip_def, cty=mime),
        {a: encrypt(public, raw, zip_def=zip_def, cty="application/pdf") for a, raw in attachments.items()})
    if tamper:
        tamper(submission)
    return submission


def flip_ciphertext(token: str) -> str:
    parts = token.split(".")
    ct = parts[3]
    parts[3] = ("A" if ct[0] != "A" else "B") + ct[1:]
    return ".".join(parts)


@dataclass
class FakeDeliveryService:
    """Just enough of the Submission API 1.1.3 for the subscriber, with scripted failures."""

    destination_id: str
    signing_public: dict[str, Any]  # the destination's public signing JWK (to check accept/reject SETs)
    service_key: jwk.JWK = field(default_factory=lambda: jwk.JWK.generate(kty="RSA", size=2048, kid="svc-1"))
    submissions: dict[str, FakeSubmission] = field(default_factory=dict)
    events: dict[str, list[str]] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    token_requests: int = 0
    requests: list[httpx.Request] = field(default_factory=list)
    script: list[tuple[str, httpx.Response]] = field(default_factory=list)  # (path regex, response), used once
    token_lifetime: int = 300

    def add(self, submission: FakeSubmission) -> FakeSubmission:
        self.submissions[submission.submission_id] = submission
        self.status[submission.submission_id] = "submitted"
        self.events.setdefault(submission.case_id, []).append(self.service_set(submission, SUBMIT_EVENT, {}))
        return submission

    def service_set(self, s: FakeSubmission, event: str, payload: dict[str, Any]) -> str:
        claims = {"$schema": "https://schema.fitko.de/fit-connect/set-payload/1.0.0/set-payload.schema.json",
                  "jti": str(uuid.uuid4()), "iat": int(time.time()), "iss": SERVICE_ISSUER,
                  "sub": f"submission:{s.submission_id}", "txn": f"case:{s.case_id}", "events": {event: payload}}
        token = jws.JWS(json.dumps(claims).encode())
        token.add_signature(self.service_key, alg="PS512",
                            protected=json.dumps({"typ": "secevent+jwt", "alg": "PS512", "kid": "svc-1"}))
        return str(token.serialize(compact=True))

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(lambda request: self.handle(request))

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        for i, (pattern, response) in enumerate(self.script):
            if re.fullmatch(pattern, path):
                del self.script[i]
                return response
        if path == "/token":
            self.token_requests += 1
            return httpx.Response(200, json={"access_token": f"tok-{self.token_requests}",
                                             "expires_in": self.token_lifetime, "token_type": "Bearer"})
        if path == "/.well-known/jwks.json":
            return httpx.Response(200, json={"keys": [{**self.service_key.export_public(as_dict=True),
                                                       "alg": "PS512", "key_ops": ["verify"]}]})
        if not request.headers.get("authorization", "").startswith("Bearer tok-"):
            return problem(401, "unauthorized")
        if path == "/v1/submissions":
            return self._list(request)
        if m := re.fullmatch(r"/v1/submissions/([^/]+)", path):
            s = self.submissions.get(m.group(1))
            if s is None or self.status[s.submission_id] != "submitted":
                return problem(404, "submission-not-found")
            body: dict[str, Any] = {"submissionId": s.submission_id, "caseId": s.case_id,
                                    "destinationId": s.destination_id, "attachments": list(s.attachments),
                                    "serviceType": {"name": "Bauantrag", "identifier": s.service}}
            if s.encrypted_metadata is not None:
                body["encryptedMetadata"] = s.encrypted_metadata
            if s.encrypted_data is not None:
                body["encryptedData"] = s.encrypted_data
            return httpx.Response(200, json=body)
        if m := re.fullmatch(r"/v1/submissions/([^/]+)/attachments/([^/]+)", path):
            s = self.submissions.get(m.group(1))
            if s is None or m.group(2) not in s.attachments:
                return problem(404, "attachment-not-found")
            return httpx.Response(200, content=s.attachments[m.group(2)].encode(),
                                  headers={"content-type": "application/jose"})
        if m := re.fullmatch(r"/v1/cases/([^/]+)/events", path):
            return self._events(request, m.group(1))
        return problem(404, "not-found")

    def _list(self, request: httpx.Request) -> httpx.Response:
        dest = request.url.params.get("destinationId")
        limit, offset = int(request.url.params.get("limit", 100)), int(request.url.params.get("offset", 0))
        items = [{"destinationId": s.destination_id, "submissionId": s.submission_id, "caseId": s.case_id}
                 for s in self.submissions.values()
                 if self.status[s.submission_id] == "submitted" and s.destination_id == dest]
        page = items[offset:offset + limit]
        return httpx.Response(200, json={"count": len(page), "offset": offset, "totalCount": len(items),
                                         "submissions": page})

    def _events(self, request: httpx.Request, case_id: str) -> httpx.Response:
        log = self.events.get(case_id)
        if log is None:
            return problem(404, "case-not-found")
        if request.method == "GET":
            limit, offset = int(request.url.params.get("limit", 100)), int(request.url.params.get("offset", 0))
            page = log[offset:offset + limit]
            return httpx.Response(200, json={"count": len(page), "offset": offset, "totalCount": len(log),
                                             "eventLog": page})
        token = request.content.decode()
        verified = jws.JWS()
        verified.deserialize(token)
        verified.verify(jwk.JWK(**self.signing_public), alg="PS512")
        claims = json.loads(verified.payload)
        submission_id = claims["sub"].removeprefix("submission:")
        if self.status.get(submission_id) != "submitted":
            return problem(409, "invalid-state-transition")
        (event,) = claims["events"]
        self.status[submission_id] = "accepted" if event.endswith("accept-submission") else "rejected"
        log.append(token)
        return httpx.Response(204)


def problem(status: int, name: str) -> httpx.Response:
    return httpx.Response(status, json={"type": f"https://schema.fitko.de/fit-connect/submission-api/problems/{name}",
                                        "title": name, "status": status},
                          headers={"content-type": "application/problem+json"})


def config_for(keys: KeyFiles, destination_id: str, **overrides: Any) -> FitConnectConfig:
    values: dict[str, Any] = {
        "token_url": "https://auth.fake.test/token", "submission_api_url": "https://fake.test/v1",
        "client_id": "hub", "client_secret": "s3cret-client",
        "destinations": [DestinationConfig(id=destination_id, encryption_key=keys.encryption_private,
                                           signing_key=keys.signing_private, tenant="memmingen")],
        **overrides}
    return FitConnectConfig(**values)


def tree(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.exists() else []
