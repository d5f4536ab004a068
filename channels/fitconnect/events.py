"""Security Event Tokens (SET, RFC 8417) as FIT-Connect uses them: building, signing, parsing, verifying.

A SET is a compact JWS with header ``{"typ": "secevent+jwt", "alg": "PS512", "kid": ...}`` and claims
``$schema``, ``jti``, ``iat``, ``iss``, ``sub`` (``submission:<id>``), ``txn`` (``case:<id>``) and ``events``
(exactly one event URI → its payload). The subscriber issues ``accept-submission`` (with the authentication
tags) and ``reject-submission`` (with problems), ``iss`` = the destination id, signed with the destination's
PS512 key. Signing and signature checks are jwcrypto's; this module checks what jwcrypto leaves open: the
header and claims are parsed by :mod:`hub.jsonsafe` before jwcrypto sees them, only PS512 with ``typ``
``secevent+jwt`` and a ``kid`` is accepted, the claims FIT-Connect requires must be there, ``iat`` must not
lie in the future (nor ``exp``, when present, in the past), and the issuer's key must have ≥ 2048 bit.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeGuard

from cryptography.hazmat.primitives.asymmetric import rsa
from jwcrypto import jwk, jws
from jwcrypto.common import JWException

from channels.fitconnect.keys import PrivateKey, b64u_decode
from channels.fitconnect.models import AuthTags, CaseEvent, SubmissionRef
from channels.fitconnect.reject_reasons import EventProblem
from hub.jsonsafe import JsonLimits, JsonRejected, loads

__all__ = ["ACCEPT", "EVENT_BASE", "REJECT", "SET_SCHEMA", "SetInvalid", "accept_set", "build_set", "parse_set",
           "reject_set", "verify_set"]

EVENT_BASE = "https://schema.fitko.de/fit-connect/events/"
ACCEPT = EVENT_BASE + "accept-submission"
REJECT = EVENT_BASE + "reject-submission"
SET_SCHEMA = "https://schema.fitko.de/fit-connect/set-payload/1.0.0/set-payload.schema.json"
#: a SET's header and claims (problems, authentication tags of up to 100 attachments) fit easily
_SET_LIMITS = JsonLimits(max_bytes=256 * 1024, max_depth=16, max_number_chars=40, max_string_chars=64 * 1024)
_MAX_TOKEN = _SET_LIMITS.max_bytes * 3  # two base64url segments of at most max_bytes, and a signature
_CLOCK_SKEW = 300  # seconds another clock may run ahead of ours
#: FIT-Connect publishes ≥ 4096-bit keys; the floor stays where it was (2048), below it a signature proves nothing
_MIN_VERIFY_BITS = 2048

#: finds the public key for a SET: (kid, iss) → key, or None when the issuer's key is unknown
KeyResolver = Callable[[str, str], rsa.RSAPublicKey | None]


class SetInvalid(ValueError):
    """Not a well-formed FIT-Connect SET, or one that is not valid now."""


def build_set(key: PrivateKey, *, issuer: str, submission_id: str, case_id: str, event: str,
              payload: dict[str, Any], issued_at: int | None = None, jti: str | None = None) -> str:
    claims = {"$schema": SET_SCHEMA, "jti": jti or str(uuid.uuid4()), "iat": int(issued_at or time.time()),
              "iss": issuer, "sub": f"submission:{submission_id}", "txn": f"case:{case_id}",
              "events": {event: payload}}
    # ASCII with \u escapes: encoding can never fail, whatever text a problem detail carries
    return key.sign_jws(json.dumps(claims, separators=(",", ":")).encode("ascii"), typ="secevent+jwt")


def accept_set(key: PrivateKey, ref: SubmissionRef, tags: AuthTags, **kw: Any) -> str:
    return build_set(key, issuer=ref.destination_id, submission_id=ref.submission_id, case_id=ref.case_id,
                     event=ACCEPT, payload={"authenticationTags": tags.as_json()}, **kw)


def reject_set(key: PrivateKey, ref: SubmissionRef, problems: list[EventProblem], **kw: Any) -> str:
    if not problems:
        raise ValueError("reject-submission needs at least one problem")
    return build_set(key, issuer=ref.destination_id, submission_id=ref.submission_id, case_id=ref.case_id,
                     event=REJECT, payload={"problems": [p.as_json() for p in problems]}, **kw)


def _segment(segment: str, what: str) -> Any:
    try:
        return loads(b64u_decode(segment), _SET_LIMITS)
    except JsonRejected as exc:
        raise SetInvalid(f"the {what} segment is not acceptable JSON ({exc.title})") from None
    except ValueError:
        raise SetInvalid(f"the {what} segment is not base64url") from None


def parse_set(token: str, *, now: float | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a SET, checked as the module docstring says; not the signature."""
    if len(token) > _MAX_TOKEN:
        raise SetInvalid(f"the token is longer than {_MAX_TOKEN} characters")
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise SetInvalid(f"not a compact JWS ({len(parts)} segments)")
    header, claims = _segment(parts[0], "header"), _segment(parts[1], "claims")
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise SetInvalid("header and claims must be JSON objects")
    kid = header.get("kid")
    if header.get("typ") != "secevent+jwt" or header.get("alg") != "PS512" or not isinstance(kid, str) or not kid:
        raise SetInvalid(f"unexpected JOSE header typ={header.get('typ')!r} alg={header.get('alg')!r} "
                         f"kid={kid!r}")
    events = claims.get("events")
    if not isinstance(events, dict) or len(events) != 1 or not isinstance(next(iter(events.values())), dict):
        raise SetInvalid("a SET carries exactly one event, with an object as its payload")
    for name in ("iss", "jti", "sub", "txn"):
        if not isinstance(claims.get(name), str):
            raise SetInvalid(f"claim {name!r} missing")
    moment = time.time() if now is None else now
    if not _is_time(iat := claims.get("iat")) or iat > moment + _CLOCK_SKEW:
        raise SetInvalid("claim 'iat' missing, not a time, or in the future")
    if "exp" in claims and (not _is_time(exp := claims["exp"]) or exp < moment - _CLOCK_SKEW):
        raise SetInvalid("claim 'exp' is not a time or has passed")
    return header, claims


def _is_time(value: object) -> TypeGuard[int]:
    """Seconds since the epoch, as RFC 7519 NumericDate (an integer here, as FIT-Connect sends it)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _signature_holds(token: str, key: rsa.RSAPublicKey) -> bool:
    if key.key_size < _MIN_VERIFY_BITS:
        return False
    checked = jws.JWS()
    checked.allowed_algs = ["PS512"]
    try:
        checked.deserialize(token.strip())
        checked.verify(jwk.JWK.from_pyca(key), alg="PS512")
    except JWException:
        return False
    return True


def verify_set(token: str, resolve: KeyResolver, *, now: float | None = None) -> CaseEvent:
    """Parse a SET and check its signature with the key ``resolve`` finds for its ``kid`` and issuer.

    A well-formed SET always yields a :class:`CaseEvent`; ``verified`` says whether the signature holds.
    A malformed one, or one that is not valid at ``now``, raises :class:`SetInvalid`."""
    header, claims = parse_set(token, now=now)
    key = resolve(header["kid"], claims["iss"])
    (event,) = claims["events"]
    return CaseEvent(event=str(event), issuer=claims["iss"], issued_at=datetime.fromtimestamp(claims["iat"], UTC),
                     payload=claims, verified=key is not None and _signature_holds(token, key))
