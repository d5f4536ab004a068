"""Key generation, loading, x5c chains, and that private keys never show."""

from __future__ import annotations

import json
import pickle
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from jwcrypto import jwk, jws

from channels.fitconnect import generate_destination_keys, verify_certificate_chain
from channels.fitconnect.keys import KeyFiles, b64u_decode, load_private_key, public_key_from_jwk
from hub.errors import Permanent


def test_generated_files(keys: KeyFiles) -> None:
    for private in (keys.encryption_private, keys.signing_private):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    enc = json.loads(keys.encryption_public.read_text())
    sig = json.loads(keys.signing_public.read_text())
    assert (enc["alg"], enc["use"], enc["key_ops"], enc["kid"]) == ("RSA-OAEP-256", "enc", ["wrapKey"],
                                                                    keys.encryption_kid)
    assert (sig["alg"], sig["use"], sig["key_ops"], sig["kid"]) == ("PS512", "sig", ["verify"], keys.signing_kid)
    assert "d" not in enc and "d" not in sig
    assert len(enc["n"]) >= 683  # the API's minimum for 4096 bit


def test_generated_keys_load_and_chains_verify(keys: KeyFiles) -> None:
    enc = load_private_key(keys.encryption_private, "encryption", where="t")
    sig = load_private_key(keys.signing_private, "signing", where="t")
    assert enc.bits == sig.bits == 4096 and enc.kid == keys.encryption_kid
    ca = x509.load_pem_x509_certificate(keys.ca_certificate.read_bytes())
    for public in (keys.encryption_public, keys.signing_public):
        chain = verify_certificate_chain(json.loads(public.read_text()), trust_anchor=ca)
        assert len(chain) == 2 and chain[1] == ca


def test_jwcrypto_reads_the_generated_jwks(keys: KeyFiles) -> None:
    enc = load_private_key(keys.encryption_private, "encryption", where="t")
    sig = load_private_key(keys.signing_private, "signing", where="t")
    for path, loaded in ((keys.encryption_private, enc), (keys.encryption_public, enc),
                         (keys.signing_private, sig), (keys.signing_public, sig)):
        key = jwk.JWK.from_json(path.read_text())
        assert key.thumbprint() == loaded.thumbprint and key.get("kid") == loaded.kid
    assert enc.public_jwk == json.loads(keys.encryption_public.read_text())
    assert sig.public_jwk == json.loads(keys.signing_public.read_text())


def test_a_private_jwk_without_crt_members_loads(tmp_path: Path, keys: KeyFiles) -> None:
    """RFC 7518 §6.3.2: d alone is a complete private key; p, q, dp, dq, qi are recovered."""
    full = json.loads(keys.signing_private.read_text())
    path = tmp_path / "d-only.json"
    path.write_text(json.dumps({k: v for k, v in full.items() if k not in ("p", "q", "dp", "dq", "qi")}))
    short = load_private_key(path, "signing", where="t")
    token = jws.JWS()
    token.deserialize(short.sign_jws(b"{}", typ="secevent+jwt"))
    token.verify(jwk.JWK.from_json(keys.signing_public.read_text()), alg="PS512")
    assert short.thumbprint == load_private_key(keys.signing_private, "signing", where="t").thumbprint


def test_keys_refuse_the_other_purpose(keys: KeyFiles) -> None:
    enc = load_private_key(keys.encryption_private, "encryption", where="t")
    sig = load_private_key(keys.signing_private, "signing", where="t")
    with pytest.raises(ValueError, match="not a signing key"):
        enc.sign_jws(b"{}", typ="secevent+jwt")
    with pytest.raises(ValueError, match="not an encryption key"):
        sig.unwrap(bytes(512))
    with pytest.raises(ValueError, match="256-bit"):  # RSA-OAEP-256 around a 128-bit key: not A256GCM's
        enc.unwrap(public_key_from_jwk(enc.public_jwk).encrypt(bytes(16), padding.OAEP(
            mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)))


@pytest.mark.parametrize("members", [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}, {"kty": "RSA"},
                                     {"kty": "RSA", "n": 5, "e": "AQAB"}, {"kty": "RSA", "n": "", "e": "AQAB"}, []])
def test_public_key_from_jwk_refuses_what_is_not_an_rsa_key(members: Any) -> None:
    with pytest.raises(ValueError):
        public_key_from_jwk(members if isinstance(members, dict) else {})


@pytest.mark.parametrize("text", ["AA=", "A+/A", "AA AA", "AAAAA", "AA\n", "ÄÄ"])
def test_base64url_is_strict(text: str) -> None:
    with pytest.raises(ValueError):
        b64u_decode(text)


def test_a_chain_for_another_key_is_refused(keys: KeyFiles, other_keys: KeyFiles) -> None:
    mixed = {**json.loads(keys.encryption_public.read_text()),
             "x5c": json.loads(other_keys.encryption_public.read_text())["x5c"]}
    with pytest.raises(ValueError, match="leaf certificate does not hold"):
        verify_certificate_chain(mixed)
    swapped = json.loads(keys.encryption_public.read_text())
    swapped["x5c"] = [swapped["x5c"][0], json.loads(other_keys.encryption_public.read_text())["x5c"][1]]
    with pytest.raises(ValueError, match="not issued by"):
        verify_certificate_chain(swapped)


def test_private_keys_never_show(keys: KeyFiles) -> None:
    key = load_private_key(keys.signing_private, "signing", where="t")
    d = json.loads(keys.signing_private.read_text())["d"]
    assert d not in repr(key) and d not in str(key) and "kid=" in repr(key)
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_refuses_to_overwrite(keys: KeyFiles) -> None:
    with pytest.raises(FileExistsError):
        generate_destination_keys(keys.encryption_private.parent, name="dest")


UNUSABLE: dict[str, tuple[Any, str]] = {
    "missing": (None, "cannot read"),
    "public": (lambda k, p: k.encryption_public.read_text(), "public JWK"),
    "swapped": (lambda k, p: k.signing_private.read_text(), "swapped"),
    "garbage": (lambda k, p: json.dumps({**p, "n": "!!"}), "not a usable private JWK"),
    "small": (lambda k, p: jwk.JWK.generate(kty="RSA", size=2048).export_private(), "at least 4096"),
    "not JSON": (lambda k, p: "{'kty': 'RSA'}", "not acceptable JSON"),
    "nested": (lambda k, p: "[" * 100 + "]" * 100, "not acceptable JSON"),
    "a list": (lambda k, p: "[]", "not a JSON object"),
    "key_ops": (lambda k, p: json.dumps({**p, "key_ops": ["wrapKey"]}), "does not allow 'unwrapKey'"),
    "use": (lambda k, p: json.dumps({**p, "use": "sig"}), "use is 'sig'"),
    "kid": (lambda k, p: json.dumps({**p, "kid": 7}), "kid is not a string"),
    "inconsistent": (lambda k, p: json.dumps({**p, "d": p["dp"]}), "not a usable private JWK"),
}


@pytest.mark.parametrize(("content", "message"), UNUSABLE.values(), ids=UNUSABLE.keys())
def test_unusable_keys_are_permanent(tmp_path: Path, keys: KeyFiles, content: Any, message: str) -> None:
    path = tmp_path / "k.json"
    private = json.loads(keys.encryption_private.read_text())
    if content is not None:
        path.write_text(content(keys, private))
    with pytest.raises(Permanent, match=message) as info:
        load_private_key(path, "encryption", where=str(path))
    assert private["d"] not in str(info.value)
