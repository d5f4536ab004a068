"""SETs: built and signed by us, checked by jwcrypto; verified by us, including tampered ones."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwcrypto import jwk, jws

from channels.fitconnect import AuthTags, SubmissionRef
from channels.fitconnect.events import ACCEPT, REJECT, SET_SCHEMA, SetInvalid, accept_set, reject_set, verify_set
from channels.fitconnect.keys import KeyFiles, PrivateKey, b64u_decode, b64u_encode, load_private_key
from channels.fitconnect.reject_reasons import hash_mismatch


@pytest.fixture(scope="module")
def signing(keys: KeyFiles) -> PrivateKey:
    return load_private_key(keys.signing_private, "signing", where="t")


REF = SubmissionRef(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()))
TAGS = AuthTags("md-tag", "data-tag", {"2046f9f1-dc89-4440-9c24-c76a8f40d668": "att-tag"})


def jwcrypto_claims(token: str, public: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    checked = jws.JWS()
    checked.deserialize(token)
    checked.verify(jwk.JWK(**public), alg="PS512")
    return dict(checked.jose_header), json.loads(checked.payload)


def test_accept_set_verifies_with_jwcrypto(signing: PrivateKey, sig_public: dict[str, Any]) -> None:
    header, claims = jwcrypto_claims(accept_set(signing, REF, TAGS), sig_public)
    assert header == {"typ": "secevent+jwt", "alg": "PS512", "kid": signing.kid}
    assert claims["$schema"] == SET_SCHEMA and uuid.UUID(claims["jti"])
    assert (claims["iss"], claims["sub"], claims["txn"]) == (REF.destination_id, f"submission:{REF.submission_id}",
                                                             f"case:{REF.case_id}")
    assert claims["events"] == {ACCEPT: {"authenticationTags": {
        "metadata": "md-tag", "data": "data-tag", "attachments": {"2046f9f1-dc89-4440-9c24-c76a8f40d668": "att-tag"}}}}


def test_reject_set(signing: PrivateKey, sig_public: dict[str, Any]) -> None:
    _, claims = jwcrypto_claims(reject_set(signing, REF, [hash_mismatch("data")]), sig_public)
    (problem,) = claims["events"][REJECT]["problems"]
    assert problem["type"] == "https://schema.fitko.de/fit-connect/events/problems/hash-mismatch"
    assert problem["instance"] == "data"
    with pytest.raises(ValueError):
        reject_set(signing, REF, [])


def resolver(key: rsa.RSAPublicKey | None) -> Any:
    return lambda kid, iss: key


def test_verify_our_own_set(signing: PrivateKey) -> None:
    event = verify_set(accept_set(signing, REF, TAGS, issued_at=1_700_000_000), resolver(signing.public_key()))
    assert event.verified and event.event == ACCEPT and event.name == "accept-submission"
    assert event.submission_id == REF.submission_id and event.issued_at.year == 2023


def test_tampered_set_is_not_verified(signing: PrivateKey) -> None:
    header, claims, signature = accept_set(signing, REF, TAGS).split(".")
    forged = json.loads(b64u_decode(claims))
    forged["events"] = {REJECT: {"problems": []}}
    token = f"{header}.{b64u_encode(json.dumps(forged).encode())}.{signature}"
    event = verify_set(token, resolver(signing.public_key()))
    assert not event.verified and event.event == REJECT


def test_unknown_or_wrong_key_is_not_verified(signing: PrivateKey, other_keys: KeyFiles) -> None:
    other = load_private_key(other_keys.signing_private, "signing", where="t")
    token = accept_set(signing, REF, TAGS)
    assert not verify_set(token, resolver(None)).verified
    assert not verify_set(token, resolver(other.public_key())).verified


def test_jwcrypto_signed_set_verifies(signing: PrivateKey) -> None:
    service = jwk.JWK.generate(kty="RSA", size=2048, kid="svc")
    claims = {"iss": "https://svc/", "iat": 1, "jti": "j", "sub": "submission:x", "txn": "case:y",
              "events": {"https://schema.fitko.de/fit-connect/events/submit-submission": {}}}
    token = jws.JWS(json.dumps(claims).encode())
    token.add_signature(service, alg="PS512", protected=json.dumps({"typ": "secevent+jwt", "alg": "PS512",
                                                                     "kid": "svc"}))
    public = service.get_op_key("verify")
    event = verify_set(token.serialize(compact=True), resolver(public))
    assert event.verified and event.issuer == "https://svc/"


@pytest.mark.parametrize("token", ["a.b", "e30.e30.e30", "eyJ0eXAiOiJKV1QiLCJhbGciOiJQUzUxMiIsImtpZCI6ImsifQ.e30.AA"])
def test_malformed_sets(token: str) -> None:
    with pytest.raises(SetInvalid):
        verify_set(token, resolver(None))
