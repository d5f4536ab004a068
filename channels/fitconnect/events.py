"""Security Event Tokens (SET, RFC 8417) as FIT-Connect uses them: building, signing, parsing, verifying.

A SET is a compact JWS with header ``{"typ": "secevent+jwt", "alg": "PS512", "kid": ...}`` and claims
``$schema``, ``jti``, ``iat``, ``iss``, ``sub`` (``submission:<id>``), ``txn`` (``case:<id>``) and ``events``
(exactly one event URI → its payload). The subscriber issues ``accept-submission`` (with the authentication
tags) and ``reject-submission`` (with problems), ``iss`` = the destination id, signed with the destination's
PS512 key. PS512 is RSASSA-PSS with SHA-512 and a 64-byte salt, done here with ``cryptography`` directly.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from channels.fitconnect.keys import PrivateKey, b64u_decode, b64u_encode
from channels.fitconnect.models import AuthTags, CaseEvent, SubmissionRef
from channels.fitconnect.reject_reasons import EventProblem
from hub.jsonsafe import JsonLimits, JsonRejected, loads

__all__ = ["ACCEPT", "EVENT_BASE", "REJECT", "SET_SCHEMA", "SetInvalid", "accept_set", "build_set", "parse_set",
           "reject_set", "verify_set"]

EVENT_BASE = "https://schema.fitko.de/fit-connect/events/"
ACCEPT = EVENT_BASE + "accept-submission"
REJECT = EVENT_BASE + "reject-submission"
SET_SCHEMA = "https://schema.fitko.de/fit-connect/set-payload/1.0.0/set-payload.schema.json"
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=64)
#: a SET's header and claims (problems, authentication tags of up to 100 attachments) fit easily
_SET_LIMITS = JsonLimits(max_bytes=256 * 1024, max_depth=16, max_number_chars=40, max_string_chars=64 * 1024)
_LATEST_IAT = 253402300799  # 9999-12-31T23:59:59Z: anything later is not a time

#: finds the public key for a SET: (kid, iss) → key, or None when the issuer's key is unknown
KeyResolver = Callable[[str, str], rsa.RSAPublicKey | None]


class SetInvalid(ValueError):
    """Not a well-formed FIT-Connect SET."""


def _json_b64(value: dict[str, Any]) -> str:
    # ASCII with \u escapes: encoding can never fail, whatever text a problem detail carries
    return b64u_encode(json.dumps(value, separators=(",", ":")).encode("ascii"))


def build_set(key: PrivateKey, *, issuer: str, submission_id: str, case_id: str, event: str,
              payload: dict[str, Any], issued_at: int | None = None, jti: str | None = None) -> str:
    header = {"typ": "secevent+jwt", "alg": "PS512", "kid": key.kid}
    claims = {"$schema": SET_SCHEMA, "jti": jti or str(uuid.uuid4()), "iat": int(issued_at or time.time()),
              "iss": issuer, "sub": f"submission:{submission_id}", "txn": f"case:{case_id}",
              "events": {event: payload}}
    signing_input = f"{_json_b64(header)}.{_json_b64(claims)}"
    return f"{signing_input}.{b64u_encode(key.sign(signing_input.encode('ascii')))}"


def accept_set(key: PrivateKey, ref: SubmissionRef, tags: AuthTags, **kw: Any) -> str:
    return build_set(key, issuer=ref.destination_id, submission_id=ref.submission_id, case_id=ref.case_id,
                     event=ACCEPT, payload={"authenticationTags": tags.as_json()}, **kw)


def reject_set(key: PrivateKey, ref: SubmissionRef, problems: list[EventProblem], **kw: Any) -> str:
    if not problems:
        raise ValueError("reject-submission needs at least one problem")
    return build_set(key, issuer=ref.destination_id, submission_id=ref.submission_id, case_id=ref.case_id,
                     event=REJECT, payload={"problems": [p.as_json() for p in problems]}, **kw)


def parse_set(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """(header, claims, signing input, signature) of a compact JWS; checks shape, not the signature."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise SetInvalid(f"not a compact JWS ({len(parts)} segments)")
    try:
        header, claims = loads(b64u_decode(parts[0]), _SET_LIMITS), loads(b64u_decode(parts[1]), _SET_LIMITS)
        signature = b64u_decode(parts[2])
    except JsonRejected as exc:
        raise SetInvalid(f"header or claims are not acceptable JSON ({exc.title})") from None
    except ValueError:
        raise SetInvalid("header, claims or signature are not base64url JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise SetInvalid("header and claims must be JSON objects")
    if header.get("typ") != "secevent+jwt" or header.get("alg") != "PS512" or not header.get("kid"):
        raise SetInvalid(f"unexpected JOSE header typ={header.get('typ')!r} alg={header.get('alg')!r} "
                         f"kid={header.get('kid')!r}")
    events = claims.get("events")
    if not isinstance(events, dict) or len(events) != 1:
        raise SetInvalid("a SET carries exactly one event")
    for name in ("iss", "jti", "sub", "txn"):
        if not isinstance(claims.get(name), str):
            raise SetInvalid(f"claim {name!r} missing")
    iat = claims.get("iat")
    if not isinstance(iat, int) or isinstance(iat, bool) or not 0 <= iat <= _LATEST_IAT:
        raise SetInvalid("claim 'iat' missing or not a time")
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature


def verify_set(token: str, resolve: KeyResolver) -> CaseEvent:
    """Parse a SET and check its signature with the key ``resolve`` finds for its ``kid`` and issuer.

    A well-formed SET always yields a :class:`CaseEvent`; ``verified`` says whether the signature holds.
    A malformed one raises :class:`SetInvalid`."""
    header, claims, signing_input, signature = parse_set(token)
    key = resolve(str(header["kid"]), claims["iss"])
    verified = False
    if key is not None and key.key_size >= 2048:
        try:
            key.verify(signature, signing_input, _PSS, hashes.SHA512())
            verified = True
        except InvalidSignature:
            verified = False
    (event,) = claims["events"]
    return CaseEvent(event=str(event), issuer=claims["iss"], issued_at=datetime.fromtimestamp(claims["iat"], UTC),
                     payload=claims, verified=verified)
