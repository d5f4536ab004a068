"""Security Event Tokens: the delivery service's own (signed here) and the subscriber's (verified here).

A SET is a compact JWS with header ``{"typ": "secevent+jwt", "alg": "PS512", "kid": …}`` and the claims
``$schema``, ``jti``, ``iat``, ``iss``, ``sub`` (``submission:<id>``), ``txn`` (``case:<id>``) and ``events``
(one event URI → its payload). The emulator's signing key (RSA 4096, PS512) is created once per state
directory and published at ``/.well-known/jwks.json``. Signing and signature checks are jwcrypto's; a
subscriber's header and claims are parsed by :mod:`hub.jsonsafe` before jwcrypto sees them.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jwcrypto import jwk, jws
from jwcrypto.common import JWException, base64url_decode

from hub.jsonsafe import JsonLimits, JsonRejected, loads
from sandbox.fitconnect.problem_types import Problem, ProblemType

__all__ = ["ACCEPT", "CREATE", "EVENTS", "REJECT", "SET_SCHEMA", "SUBMIT", "ServerKey", "SubscriberEvent",
           "authentication_tag", "verify_subscriber_set"]

SET_SCHEMA = "https://schema.fitko.de/fit-connect/set-payload/1.0.0/set-payload.schema.json"
_SET_SCHEMA_1X = re.compile(r"^https://schema\.fitko\.de/fit-connect/set-payload/1\.\d+\.\d+/set-payload\.schema\.json$")
EVENTS = "https://schema.fitko.de/fit-connect/events/"
CREATE = EVENTS + "create-submission"
SUBMIT = EVENTS + "submit-submission"
ACCEPT = EVENTS + "accept-submission"
REJECT = EVENTS + "reject-submission"
_CLOCK_SKEW = 300  # seconds a subscriber's iat may lie in the future
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
#: a subscriber's SET: a reject with a few problems, or an accept with the tags of up to 100 attachments
_SET_LIMITS = JsonLimits(max_bytes=256 * 1024, max_depth=16, max_number_chars=40, max_string_chars=64 * 1024)


def authentication_tag(compact_jwe: str) -> str:
    """The authentication tag of a compact JWE: its last segment."""
    return compact_jwe.rsplit(".", 1)[-1]


class ServerKey:
    """The emulator's PS512 signing key, kept as a private JWK file (mode 0600) in the state directory."""

    def __init__(self, key: jwk.JWK) -> None:
        self._key = key
        self.kid = str(key.get("kid"))

    @classmethod
    def load_or_create(cls, path: Path, seed: jwk.JWK | None = None) -> ServerKey:
        """Load the key at ``path``; without one, store ``seed`` there (tests share one) or a new RSA-4096 key."""
        if path.exists():
            return cls(jwk.JWK.from_json(path.read_text("utf-8")))
        key = seed if seed is not None else jwk.JWK.generate(kty="RSA", size=4096)
        data = key.export_private(as_dict=True)
        data.setdefault("kid", key.thumbprint())
        data.update(alg="PS512", use="sig")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        return cls(jwk.JWK(**data))

    def public_jwk(self) -> dict[str, Any]:
        data: dict[str, Any] = self._key.export_public(as_dict=True)
        data.update(kid=self.kid, alg="PS512", use="sig", key_ops=["verify"])
        return data

    def sign(self, *, issuer: str, event: str, submission_id: str, case_id: str,
             payload: Mapping[str, Any] | None = None) -> tuple[str, str]:
        """``(jti, compact SET)`` for one event of the delivery service."""
        jti = str(uuid.uuid4())
        claims = {"$schema": SET_SCHEMA, "jti": jti, "iat": int(time.time()), "iss": issuer,
                  "sub": f"submission:{submission_id}", "txn": f"case:{case_id}",
                  "events": {event: dict(payload or {})}}
        token = jws.JWS(json.dumps(claims, separators=(",", ":")).encode())
        token.add_signature(self._key, alg="PS512",
                            protected=json.dumps({"typ": "secevent+jwt", "alg": "PS512", "kid": self.kid}))
        return jti, str(token.serialize(compact=True))


@dataclass(frozen=True)
class SubscriberEvent:
    """A verified SET from a subscriber: which submission, which decision, with what payload."""

    jti: str
    submission_id: str
    event: str
    payload: dict[str, Any]


def _b64json(segment: str, what: str) -> dict[str, Any]:
    try:
        value = loads(base64url_decode(segment), _SET_LIMITS)
    except JsonRejected as exc:
        raise Problem(ProblemType.INVALID_REQUEST, f"the {what} of the token is not acceptable JSON: "
                                                   f"{exc.detail}") from exc
    except ValueError as exc:
        raise Problem(ProblemType.INVALID_REQUEST, f"the {what} of the token is not base64url") from exc
    if not isinstance(value, dict):
        raise Problem(ProblemType.INVALID_REQUEST, f"the {what} of the token is not a JSON object")
    return value


def _invalid(detail: str) -> Problem:
    return Problem(ProblemType.SET_INVALID, detail)


def verify_subscriber_set(token: str, *, case_id: str, destination_id: str, signature_jwk: Mapping[str, Any]) -> \
        SubscriberEvent:
    """Check a subscriber's SET for ``case_id`` to the letter; raise a :class:`Problem` saying what is wrong.

    Order: syntax (400), header (422), signature against the destination's signature key (422), claims (422).
    Whether the named submission belongs to the case and may change status is the caller's business.
    """
    parts = token.split(".")
    if len(parts) != 3 or not all(_SEGMENT.fullmatch(p) for p in parts):
        raise Problem(ProblemType.INVALID_REQUEST, "the body is not a compact JWS (three base64url segments)")
    header = _b64json(parts[0], "header")
    claims = _b64json(parts[1], "payload")
    if header.get("typ") != "secevent+jwt":
        raise _invalid(f"header typ must be secevent+jwt, not {header.get('typ')!r}")
    if header.get("alg") != "PS512":
        raise _invalid(f"header alg must be PS512, not {header.get('alg')!r}")
    if header.get("kid") != signature_jwk.get("kid"):
        raise Problem(ProblemType.SET_SIGNATURE_INVALID,
                      f"kid {header.get('kid')!r} is not the signature key of destination {destination_id}")
    if not parts[2]:
        raise Problem(ProblemType.SET_SIGNATURE_INVALID, "the token carries no signature")
    try:
        verifier = jws.JWS()
        verifier.allowed_algs = ["PS512"]
        verifier.deserialize(token)
        verifier.verify(jwk.JWK(**{k: v for k, v in signature_jwk.items() if k != "key_ops"}), alg="PS512")
    except JWException as exc:
        raise Problem(ProblemType.SET_SIGNATURE_INVALID,
                      f"the signature does not verify with the destination's signature key ({exc})") from exc
    return _check_claims(claims, case_id=case_id, destination_id=destination_id)


def _uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return isinstance(value, str)


def _check_claims(claims: dict[str, Any], *, case_id: str, destination_id: str) -> SubscriberEvent:
    if not isinstance(claims.get("$schema"), str) or not _SET_SCHEMA_1X.match(claims["$schema"]):
        raise _invalid(f"$schema must be the SET payload schema 1.x ({SET_SCHEMA})")
    if not _uuid(claims.get("jti")):
        raise _invalid("jti must be a UUID")
    iat = claims.get("iat")
    if not isinstance(iat, int) or isinstance(iat, bool) or iat > time.time() + _CLOCK_SKEW:
        raise _invalid("iat must be a unix time (seconds), not in the future")
    if claims.get("iss") != destination_id:
        raise _invalid(f"iss must be the destination id {destination_id}")
    if claims.get("txn") != f"case:{case_id}":
        raise _invalid(f"txn must be case:{case_id}")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.startswith("submission:") or not _uuid(sub.removeprefix("submission:")):
        raise _invalid("sub must be submission:<uuid>")
    events = claims.get("events")
    if not isinstance(events, dict) or len(events) != 1:
        raise _invalid("events must hold exactly one event")
    (event, payload), = events.items()
    if event not in (ACCEPT, REJECT):
        raise _invalid(f"a subscriber may only send {ACCEPT} or {REJECT}, not {event}")
    if not isinstance(payload, dict):
        raise _invalid("the event payload must be an object")
    if event == REJECT:
        problems = payload.get("problems")
        if not isinstance(problems, list) or not problems or not all(
                isinstance(p, dict) and isinstance(p.get("type"), str) for p in problems):
            raise _invalid("reject-submission needs problems: a non-empty list of objects with a type")
    tags = payload.get("authenticationTags")
    if tags is not None and not isinstance(tags, dict):
        raise _invalid("authenticationTags must be an object")
    return SubscriberEvent(jti=str(claims["jti"]), submission_id=sub.removeprefix("submission:"), event=event,
                           payload=payload)
