"""SETs: ours are checked by jwcrypto, by ``cryptography`` directly and by the emulator; theirs are verified by
us, and forged, tampered, mis-keyed, expired or oversized ones are refused."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from jwcrypto import jwk, jws
from jwcrypto.common import base64url_encode

from channels.fitconnect import AuthTags, SubmissionRef
from channels.fitconnect.events import ACCEPT, REJECT, SET_SCHEMA, SetInvalid, accept_set, reject_set, verify_set
from channels.fitconnect.keys import KeyFiles, PrivateKey, b64u_decode, load_private_key, public_key_from_jwk
from channels.fitconnect.reject_reasons import hash_mismatch
from sandbox.fitconnect.problem_types import Problem, ProblemType
from sandbox.fitconnect.sets import ServerKey, verify_subscriber_set


@pytest.fixture(scope="module")
def signing(keys: KeyFiles) -> PrivateKey:
    return load_private_key(keys.signing_private, "signing", where="t")


@pytest.fixture(scope="module")
def other(other_keys: KeyFiles) -> PrivateKey:
    return load_private_key(other_keys.signing_private, "signing", where="t")


REF = SubmissionRef(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()))
TAGS = AuthTags("md-tag", "data-tag", {"2046f9f1-dc89-4440-9c24-c76a8f40d668": "att-tag"})
SUBMIT = "https://schema.fitko.de/fit-connect/events/submit-submission"


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


def test_accept_set_verifies_with_cryptography_directly(signing: PrivateKey, sig_public: dict[str, Any]) -> None:
    """RFC 7518 §3.5 by hand: RSASSA-PSS, SHA-512, MGF1-SHA-512, 64-byte salt, over ``header.claims``."""
    header, claims, signature = accept_set(signing, REF, TAGS).split(".")
    public = rsa.RSAPublicNumbers(int.from_bytes(b64u_decode(sig_public["e"]), "big"),
                                  int.from_bytes(b64u_decode(sig_public["n"]), "big")).public_key()
    public.verify(b64u_decode(signature), f"{header}.{claims}".encode("ascii"),
                  padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=64), hashes.SHA512())
    assert json.loads(b64u_decode(claims))["events"][ACCEPT]["authenticationTags"]["data"] == "data-tag"


def test_reject_set(signing: PrivateKey, sig_public: dict[str, Any]) -> None:
    _, claims = jwcrypto_claims(reject_set(signing, REF, [hash_mismatch("data")]), sig_public)
    (problem,) = claims["events"][REJECT]["problems"]
    assert problem["type"] == "https://schema.fitko.de/fit-connect/events/problems/hash-mismatch"
    assert problem["instance"] == "data"
    with pytest.raises(ValueError):
        reject_set(signing, REF, [])


def test_the_emulator_accepts_our_sets(signing: PrivateKey, sig_public: dict[str, Any]) -> None:
    for token, event in ((accept_set(signing, REF, TAGS), ACCEPT),
                         (reject_set(signing, REF, [hash_mismatch("data")]), REJECT)):
        checked = verify_subscriber_set(token, case_id=REF.case_id, destination_id=REF.destination_id,
                                        signature_jwk=sig_public)
        assert (checked.event, checked.submission_id) == (event, REF.submission_id)


def resolver(key: rsa.RSAPublicKey | None) -> Any:
    return lambda kid, iss: key


def by_kid(**keys: PrivateKey) -> Any:
    """The client's resolver: a key only for the kid it is published under."""
    return lambda kid, iss: keys[kid].public_key() if kid in keys else None


def test_verify_our_own_set(signing: PrivateKey) -> None:
    event = verify_set(accept_set(signing, REF, TAGS, issued_at=1_700_000_000), resolver(signing.public_key()))
    assert event.verified and event.event == ACCEPT and event.name == "accept-submission"
    assert event.submission_id == REF.submission_id and event.issued_at.year == 2023


def test_the_emulators_sets_verify(other_keys: KeyFiles, tmp_path: Any) -> None:
    server = ServerKey.load_or_create(tmp_path / "k.jwk", jwk.JWK.from_json(other_keys.signing_private.read_text()))
    _, token = server.sign(issuer="https://emulator/", event=SUBMIT, submission_id=REF.submission_id,
                           case_id=REF.case_id)
    public = public_key_from_jwk(server.public_jwk())
    assert verify_set(token, lambda kid, iss: public if kid == server.kid else None).verified


def test_tampered_set_is_not_verified(signing: PrivateKey) -> None:
    header, claims, signature = accept_set(signing, REF, TAGS).split(".")
    forged = json.loads(b64u_decode(claims))
    forged["events"] = {REJECT: {"problems": []}}
    token = f"{header}.{base64url_encode(json.dumps(forged))}.{signature}"
    event = verify_set(token, resolver(signing.public_key()))
    assert not event.verified and event.event == REJECT


def test_unknown_or_wrong_key_is_not_verified(signing: PrivateKey, other: PrivateKey) -> None:
    token = accept_set(signing, REF, TAGS)
    assert not verify_set(token, resolver(None)).verified
    assert not verify_set(token, resolver(other.public_key())).verified


def test_a_kid_names_only_its_own_key(signing: PrivateKey, other: PrivateKey, other_keys: KeyFiles) -> None:
    ours = accept_set(signing, REF, TAGS)
    assert verify_set(ours, by_kid(**{signing.kid: signing})).verified
    # another key's signature under our kid (its own header, re-signed): the kid finds our key, which refuses it
    header = {"typ": "secevent+jwt", "alg": "PS512", "kid": signing.kid}
    impostor = jws.JWS(b64u_decode(ours.split(".")[1]))
    impostor.add_signature(jwk.JWK.from_json(other_keys.signing_private.read_text()), alg="PS512",
                           protected=json.dumps(header))
    assert not verify_set(impostor.serialize(compact=True), by_kid(**{signing.kid: signing})).verified
    # our signature under a kid nobody published
    assert not verify_set(ours, by_kid(**{other.kid: other})).verified


def test_jwcrypto_signed_set_verifies() -> None:
    service = jwk.JWK.generate(kty="RSA", size=2048, kid="svc")
    claims = {"iss": "https://svc/", "iat": 1, "jti": "j", "sub": "submission:x", "txn": "case:y",
              "events": {SUBMIT: {}}}
    token = jws.JWS(json.dumps(claims).encode())
    token.add_signature(service, alg="PS512", protected=json.dumps({"typ": "secevent+jwt", "alg": "PS512",
                                                                     "kid": "svc"}))
    public = service.get_op_key("verify")
    event = verify_set(token.serialize(compact=True), resolver(public))
    assert event.verified and event.issuer == "https://svc/"


def test_a_key_under_2048_bit_verifies_nothing() -> None:
    weak = jwk.JWK.generate(kty="RSA", size=1536, kid="svc")
    token = jws.JWS(json.dumps(_claims()).encode())
    token.add_signature(weak, alg="PS512", protected=json.dumps({"typ": "secevent+jwt", "alg": "PS512", "kid": "svc"}))
    assert not verify_set(token.serialize(compact=True), resolver(weak.get_op_key("verify"))).verified


def _claims(**changes: Any) -> dict[str, Any]:
    claims = {"$schema": SET_SCHEMA, "jti": str(uuid.uuid4()), "iat": int(time.time()), "iss": REF.destination_id,
              "sub": f"submission:{REF.submission_id}", "txn": f"case:{REF.case_id}", "events": {SUBMIT: {}}}
    return {k: v for k, v in {**claims, **changes}.items() if v is not None}


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join([base64url_encode(json.dumps(header)), base64url_encode(json.dumps(claims)),
                     base64url_encode(signature)])


def _hs512(kid: str, secret: bytes, *, alg: str = "HS512") -> str:
    """The classic confusion: an HMAC keyed with the RSA public key, hoping the verifier treats it as a secret."""
    head, body, _ = _unsigned({"typ": "secevent+jwt", "alg": alg, "kid": kid}, _claims()).split(".")
    mac = hmac.HMAC(secret, hashes.SHA512())
    mac.update(f"{head}.{body}".encode())
    return f"{head}.{body}.{base64url_encode(mac.finalize())}"


PS512 = {"typ": "secevent+jwt", "alg": "PS512", "kid": "k"}
MALFORMED: dict[str, tuple[str, str]] = {
    "two segments": ("a.b", "compact JWS"),
    "empty objects": ("e30.e30.e30", "JOSE header"),
    "alg none": (_unsigned({"typ": "secevent+jwt", "alg": "none", "kid": "k"}, _claims()), "alg='none'"),
    "alg HS512": (_hs512("k", b"n-and-e-of-the-public-key"), "alg='HS512'"),
    "typ JWT": (_unsigned({**PS512, "typ": "JWT"}, _claims()), "typ='JWT'"),
    "no kid": (_unsigned({"typ": "secevent+jwt", "alg": "PS512"}, _claims()), "kid=None"),
    "empty kid": (_unsigned({**PS512, "kid": ""}, _claims()), "kid=''"),
    "kid an object": (_unsigned({**PS512, "kid": {"$ref": "x"}}, _claims()), "kid="),
    "no txn": (_unsigned(PS512, _claims(txn=None)), "'txn' missing"),
    "two events": (_unsigned(PS512, _claims(events={SUBMIT: {}, ACCEPT: {}})), "exactly one event"),
    "event payload not an object": (_unsigned(PS512, _claims(events={SUBMIT: []})), "exactly one event"),
    "iat a string": (_unsigned(PS512, _claims(iat="1700000000")), "'iat'"),
    "iat true": (_unsigned(PS512, _claims(iat=True)), "'iat'"),
    "iat in the future": (_unsigned(PS512, _claims(iat=int(time.time()) + 3600)), "in the future"),
    "iat in year 10000": (_unsigned(PS512, _claims(iat=253402300800)), "in the future"),
    "expired": (_unsigned(PS512, _claims(exp=int(time.time()) - 3600)), "'exp'"),
    "exp not a time": (_unsigned(PS512, _claims(exp="tomorrow")), "'exp'"),
    "header with padding": ("eyJhbGciOiJQUzUxMiJ9==.e30.AA", "header segment is not base64url"),
    "claims with +/": ("e30.e+/0.AA", "claims segment is not base64url"),
    "header nested 5000 deep": (".".join([base64url_encode("[" * 5000 + "]" * 5000), "e30", "AA"]),
                                "header segment is not acceptable JSON"),
    "claims with a duplicate key": (".".join([base64url_encode(json.dumps(PS512)),
                                              base64url_encode('{"iss": "a", "iss": "b"}'), "AA"]),
                                    "claims segment is not acceptable JSON"),
    "a megabyte of claims": (_unsigned(PS512, _claims(jti="x" * 1_000_000)), "longer than"),
}


@pytest.mark.parametrize(("token", "reason"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_or_invalid_sets_are_refused(signing: PrivateKey, token: str, reason: str) -> None:
    with pytest.raises(SetInvalid, match=re.escape(reason)):
        verify_set(token, resolver(signing.public_key()))


def test_hs512_keyed_with_our_public_key_is_refused(signing: PrivateKey) -> None:
    token = _hs512(signing.kid, json.dumps(signing.public_jwk).encode())
    with pytest.raises(SetInvalid, match="alg='HS512'"):
        verify_set(token, resolver(signing.public_key()))


def test_a_ps512_header_over_an_hmac_is_not_verified(signing: PrivateKey) -> None:
    token = _hs512(signing.kid, json.dumps(signing.public_jwk).encode(), alg="PS512")
    assert not verify_set(token, resolver(signing.public_key())).verified


def test_an_old_set_without_exp_stays_valid(signing: PrivateKey) -> None:
    """An event log holds SETs of years ago: age alone is no reason to distrust one."""
    assert verify_set(accept_set(signing, REF, TAGS, issued_at=1), resolver(signing.public_key())).verified


def test_clock_skew_is_tolerated(signing: PrivateKey) -> None:
    token = accept_set(signing, REF, TAGS, issued_at=int(time.time()) + 120)
    assert verify_set(token, resolver(signing.public_key())).verified
    with pytest.raises(SetInvalid, match="in the future"):
        verify_set(token, resolver(signing.public_key()), now=time.time() - 600)


EMULATOR_REFUSES: dict[str, tuple[str, ProblemType, str]] = {
    "claims nested 5000 deep": (".".join([base64url_encode(json.dumps(PS512)), base64url_encode("[" * 5000),
                                          "AA"]), ProblemType.INVALID_REQUEST, "not acceptable JSON"),
    "header with a 5000-digit number": (".".join([base64url_encode('{"x": ' + "1" * 5000 + "}"), "e30", "AA"]),
                                        ProblemType.INVALID_REQUEST, "not acceptable JSON"),
    "header not UTF-8": (".".join([base64url_encode(b'{"x": "\xff"}'), "e30", "AA"]), ProblemType.INVALID_REQUEST,
                         "not acceptable JSON"),
    "header of length 4n+1": ("eyJhb.e30.AA", ProblemType.INVALID_REQUEST, "not base64url"),
    "alg HS512": (_hs512("k", b"secret"), ProblemType.SET_INVALID, "alg must be PS512"),
}


@pytest.mark.parametrize(("token", "kind", "detail"), EMULATOR_REFUSES.values(), ids=EMULATOR_REFUSES.keys())
def test_the_emulator_refuses_hostile_sets(sig_public: dict[str, Any], token: str, kind: ProblemType,
                                          detail: str) -> None:
    with pytest.raises(Problem) as info:
        verify_subscriber_set(token, case_id=REF.case_id, destination_id=REF.destination_id, signature_jwk=sig_public)
    assert info.value.kind is kind and detail in info.value.detail
