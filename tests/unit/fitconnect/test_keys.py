"""Key generation, loading, x5c chains, and that private keys never show."""

from __future__ import annotations

import json
import pickle
import stat
from pathlib import Path

import pytest
from cryptography import x509
from jwcrypto import jwk

from channels.fitconnect import generate_destination_keys, verify_certificate_chain
from channels.fitconnect.keys import KeyFiles, load_private_key, thumbprint
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
    for path in (keys.encryption_private, keys.encryption_public, keys.signing_private, keys.signing_public):
        key = jwk.JWK.from_json(path.read_text())
        assert key.thumbprint() == thumbprint(json.loads(path.read_text()))


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


@pytest.mark.parametrize("case, message", [
    ("missing", "cannot read"),
    ("public", "public JWK"),
    ("swapped", "swapped"),
    ("garbage", "not a usable private JWK"),
    ("small", "at least 4096"),
])
def test_unusable_keys_are_permanent(tmp_path: Path, keys: KeyFiles, case: str, message: str) -> None:
    path = tmp_path / "k.json"
    private = json.loads(keys.encryption_private.read_text())
    if case == "public":
        path.write_text(keys.encryption_public.read_text())
    elif case == "swapped":
        path.write_text(keys.signing_private.read_text())
    elif case == "garbage":
        path.write_text(json.dumps({**private, "n": "!!"}))
    elif case == "small":
        small = jwk.JWK.generate(kty="RSA", size=2048)
        path.write_text(small.export_private())
    with pytest.raises(Permanent, match=message) as info:
        load_private_key(path, "encryption", where=str(path))
    assert private["d"] not in str(info.value)
