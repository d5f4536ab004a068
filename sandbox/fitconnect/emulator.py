"""The emulator's state and its admin side: destinations, API clients, access tokens, the signing key.

Everything lives under one state directory and survives restarts::

    <state_dir>/emulator.sqlite3    destinations, clients, tokens, submissions, event log
    <state_dir>/attachments/        one file per uploaded attachment (the compact JWE as sent)
    <state_dir>/signing-key.jwk     the delivery service's private PS512 key (RSA 4096, mode 0600)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jwcrypto import jwk
from jwcrypto.common import JWException

from sandbox.fitconnect.db import Database
from sandbox.fitconnect.sets import ServerKey
from sandbox.fitconnect.status import Status
from sandbox.fitconnect.submissions import Submissions

__all__ = ["MAX_ATTACHMENT_BYTES", "Client", "Destination", "Emulator", "InvalidClient", "Role"]

log = logging.getLogger(__name__)

Role = Literal["sender", "subscriber"]
MAX_ATTACHMENT_BYTES = 500 * 1024 * 1024
"""FIT-Connect's limit per attachment (plaintext); the upload limit allows for the JWE's base64url overhead."""
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_DEFAULT_SCHEMAS = ({"schemaUri": "urn:xoev-hub:sandbox:any-json-schema", "mimeType": "application/json"},
                    {"schemaUri": "urn:xoev-hub:sandbox:any-xml-schema", "mimeType": "application/xml"})


class InvalidClient(Exception):
    """Unknown client id or wrong secret (OAuth2 ``invalid_client``)."""


@dataclass(frozen=True)
class Client:
    """An API client as a bearer token authenticates it."""

    client_id: str
    role: Role
    destinations: frozenset[str]


@dataclass(frozen=True)
class Destination:
    """A destination as stored: its public keys (with ``alg`` and ``key_ops`` filled in), services, callback."""

    destination_id: str
    status: str
    encryption_kid: str
    encryption_jwk: dict[str, Any]
    signature_jwk: dict[str, Any]
    services: list[dict[str, Any]]
    callback_url: str | None
    callback_secret: str | None

    def public(self) -> dict[str, Any]:
        """The ``PublicDestination`` of the Submission API."""
        return {"destinationId": self.destination_id, "status": self.status, "services": self.services,
                "encryptionKid": self.encryption_kid, "metadataVersions": ["1.0.0"]}

    def key(self, kid: str) -> dict[str, Any] | None:
        return next((k for k in (self.encryption_jwk, self.signature_jwk) if k["kid"] == kid), None)


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _public_jwk(given: Mapping[str, Any], purpose: Literal["encryption", "signature"]) -> dict[str, Any]:
    """Check a destination's public JWK as the Submission API's ``JWK`` schema has it; fill in alg and key_ops."""
    alg, op = ("RSA-OAEP-256", "wrapKey") if purpose == "encryption" else ("PS512", "verify")
    key = dict(given)
    if _PRIVATE_MEMBERS & key.keys():
        raise ValueError(f"the {purpose} JWK contains private key material: pass the public key only")
    if key.get("kty") != "RSA" or key.get("e") != "AQAB":
        raise ValueError(f"the {purpose} JWK must be an RSA key with e = AQAB")
    kid = key.get("kid")
    if not isinstance(kid, str) or not 8 <= len(kid) <= 64:
        raise ValueError(f"the {purpose} JWK needs a kid of 8 to 64 characters")
    if key.setdefault("alg", alg) != alg:
        raise ValueError(f"the {purpose} JWK must have alg {alg}, not {key['alg']}")
    key.setdefault("key_ops", [op])
    if op not in key["key_ops"]:
        raise ValueError(f"the {purpose} JWK must allow key_ops {op}")
    try:
        jwk.JWK(**{k: v for k, v in key.items() if k != "key_ops"})
    except (JWException, ValueError, TypeError) as exc:
        raise ValueError(f"the {purpose} JWK is not a valid RSA public key: {exc}") from exc
    bits = len(base64.urlsafe_b64decode(key["n"] + "=" * (-len(key["n"]) % 4)).lstrip(b"\0")) * 8
    if bits < 2048:
        raise ValueError(f"the {purpose} key has {bits} bits; FIT-Connect requires 4096")
    if bits < 4096:
        log.warning("the %s key %s has %d bits: FIT-Connect requires 4096, and the public SDK refuses to "
                    "encrypt for smaller keys", purpose, kid, bits)
    return key


class Emulator:
    """A local FIT-Connect delivery service's state (see the module docstring for the files).

    ``signing_key`` is used only when the state directory has no key yet (tests share one key to spare
    an RSA-4096 generation per state directory). ``issuer`` is the ``iss`` of the emulator's own SETs;
    by default the base URL the request came in on.
    """

    def __init__(self, state_dir: str | Path, *, token_ttl_seconds: int = 1800, signing_key: jwk.JWK | None = None,
                 max_attachment_bytes: int = MAX_ATTACHMENT_BYTES, issuer: str | None = None) -> None:
        self.state_dir = Path(state_dir)
        (self.state_dir / "attachments").mkdir(parents=True, exist_ok=True)
        self.token_ttl_seconds = token_ttl_seconds
        # a compact JWE of n plaintext bytes is about 4/3 n, plus header, encrypted key, iv and tag
        self.max_upload_bytes = max_attachment_bytes * 4 // 3 + 64 * 1024
        self.issuer = issuer
        self.db = Database(self.state_dir / "emulator.sqlite3")
        self.server_key = ServerKey.load_or_create(self.state_dir / "signing-key.jwk", signing_key)
        self.submissions = Submissions(self.db, self.state_dir / "attachments", self.server_key, self.destination)

    def close(self) -> None:
        self.db.close()

    # -- admin -----------------------------------------------------------------------------------------------

    def add_destination(self, encryption_jwk: Mapping[str, Any], signature_jwk: Mapping[str, Any],
                        service_identifiers: Sequence[str], callback_url: str | None = None,
                        callback_secret: str | None = None, *, regions: Sequence[str] = ("DE",),
                        submission_schemas: Sequence[Mapping[str, str]] = _DEFAULT_SCHEMAS,
                        status: str = "active") -> str:
        """Create an (active) destination with these public keys; returns its id. Raises ValueError."""
        enc, sig = _public_jwk(encryption_jwk, "encryption"), _public_jwk(signature_jwk, "signature")
        if enc["kid"] == sig["kid"]:
            raise ValueError("the encryption and the signature key need different kids")
        if not service_identifiers:
            raise ValueError("a destination offers at least one service")
        if (callback_url is None) != (callback_secret is None):
            raise ValueError("a callback needs both a URL and a secret")
        if callback_secret is not None and not 32 <= len(callback_secret) <= 512:
            raise ValueError("the callback secret must be 32 to 512 characters long")
        if callback_url is not None and not callback_url.startswith(("https://", "http://")):
            raise ValueError("the callback URL must be an http(s) URL")
        if status not in ("created", "active", "inactive", "decommissioned"):
            raise ValueError(f"unknown destination status {status!r}")
        services = [{"identifier": s, "regions": list(regions), "submissionSchemas": [dict(x) for x in
                                                                                      submission_schemas]}
                    for s in service_identifiers]
        destination_id = str(uuid.uuid4())
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO destinations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (
                destination_id, status, enc["kid"], json.dumps(enc), sig["kid"], json.dumps(sig),
                json.dumps(services), callback_url, callback_secret, time.time()))
        return destination_id

    def set_destination_status(self, destination_id: str, status: str) -> None:
        if status not in ("created", "active", "inactive", "decommissioned"):
            raise ValueError(f"unknown destination status {status!r}")
        with self.db.transaction() as conn:
            if conn.execute("UPDATE destinations SET status = ? WHERE destination_id = ?",
                            (status, destination_id)).rowcount != 1:
                raise KeyError(destination_id)

    def add_client(self, role: Role, destinations: Iterable[str] = ()) -> tuple[str, str]:
        """Register an API client; returns ``(client_id, client_secret)``. A sender may send to, a subscriber
        fetch from, the ``destinations`` listed."""
        if role not in ("sender", "subscriber"):
            raise ValueError(f"role must be sender or subscriber, not {role!r}")
        destinations = list(dict.fromkeys(destinations))
        client_id, secret = str(uuid.uuid4()), secrets.token_urlsafe(32)
        with self.db.transaction() as conn:
            for d in destinations:
                if conn.execute("SELECT 1 FROM destinations WHERE destination_id = ?", (d,)).fetchone() is None:
                    raise ValueError(f"unknown destination {d}")
            conn.execute("INSERT INTO clients VALUES (?, ?, ?, ?)", (client_id, _sha256(secret), role, time.time()))
            conn.executemany("INSERT INTO client_destinations VALUES (?, ?)", [(client_id, d) for d in destinations])
        return client_id, secret

    def submission_status(self, submission_id: str) -> Status:
        with self.db.read() as conn:
            row = conn.execute("SELECT status FROM submissions WHERE submission_id = ?", (submission_id,)).fetchone()
        if row is None:
            raise KeyError(submission_id)
        return Status(row["status"])

    def overview(self) -> list[dict[str, Any]]:
        """All submissions with their status and event names, oldest first (for the admin endpoint)."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT submission_id, case_id, destination_id, status FROM submissions "
                                "ORDER BY created_at").fetchall()
            events = conn.execute("SELECT submission_id, event FROM events ORDER BY seq").fetchall()
        by_submission: dict[str, list[str]] = {}
        for e in events:
            by_submission.setdefault(e["submission_id"], []).append(e["event"].rsplit("/", 1)[-1])
        return [{"submissionId": r["submission_id"], "caseId": r["case_id"], "destinationId": r["destination_id"],
                 "status": r["status"], "events": by_submission.get(r["submission_id"], [])} for r in rows]

    # -- OAuth2 ----------------------------------------------------------------------------------------------

    def issue_token(self, client_id: str, client_secret: str) -> tuple[str, Client]:
        """A new bearer token for valid client credentials (valid ``token_ttl_seconds``); raises InvalidClient."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT secret_sha256 FROM clients WHERE client_id = ?", (client_id,)).fetchone()
            if row is None or not hmac.compare_digest(row["secret_sha256"], _sha256(client_secret)):
                raise InvalidClient(client_id)
            token = secrets.token_urlsafe(32)
            now = time.time()
            conn.execute("DELETE FROM tokens WHERE expires_at < ?", (now,))
            conn.execute("INSERT INTO tokens VALUES (?, ?, ?)",
                         (_sha256(token), client_id, now + self.token_ttl_seconds))
        client = self._client(client_id)
        assert client is not None
        return token, client

    def client_for_token(self, token: str) -> Client | None:
        """The client a (live) bearer token belongs to, or None."""
        with self.db.read() as conn:
            row = conn.execute("SELECT client_id FROM tokens WHERE token_sha256 = ? AND expires_at > ?",
                               (_sha256(token), time.time())).fetchone()
        return None if row is None else self._client(row["client_id"])

    def _client(self, client_id: str) -> Client | None:
        with self.db.read() as conn:
            row = conn.execute("SELECT role FROM clients WHERE client_id = ?", (client_id,)).fetchone()
            dests = conn.execute("SELECT destination_id FROM client_destinations WHERE client_id = ?",
                                 (client_id,)).fetchall()
        if row is None:
            return None
        return Client(client_id, row["role"], frozenset(d["destination_id"] for d in dests))

    # -- destinations ----------------------------------------------------------------------------------------

    def destination(self, destination_id: str) -> Destination | None:
        with self.db.read() as conn:
            row = conn.execute("SELECT * FROM destinations WHERE destination_id = ?", (destination_id,)).fetchone()
        if row is None:
            return None
        return Destination(row["destination_id"], row["status"], row["encryption_kid"],
                           json.loads(row["encryption_jwk"]), json.loads(row["signature_jwk"]),
                           json.loads(row["services"]), row["callback_url"], row["callback_secret"])

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.server_key.public_jwk()]}
