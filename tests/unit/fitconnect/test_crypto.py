"""JWE decryption against tokens made by jwcrypto: in memory and streamed from files."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from jwcrypto.common import base64url_encode

from channels.fitconnect.crypto import DecryptionFailed, PlaintextTooLarge, decrypt_compact, decrypt_file
from channels.fitconnect.keys import KeyFiles, PrivateKey, b64u_decode, load_private_key
from tests.fitconnect_sender import encrypt, flip_ciphertext


@pytest.fixture(scope="module")
def key(keys: KeyFiles) -> PrivateKey:
    return load_private_key(keys.encryption_private, "encryption", where="test")


@pytest.fixture(scope="module")
def wrong(other_keys: KeyFiles) -> PrivateKey:
    return load_private_key(other_keys.encryption_private, "encryption", where="test")


LIMIT = 10 * 1024 * 1024


@pytest.mark.parametrize("zip_def", [False, True])
def test_decrypts_what_jwcrypto_encrypted(key: PrivateKey, enc_public: dict[str, Any], zip_def: bool) -> None:
    plaintext = b"<antrag>" + b"x" * 5000 + b"</antrag>"
    token = encrypt(enc_public, plaintext, zip_def=zip_def)
    out, tag = decrypt_compact(token, [key], max_plaintext=LIMIT)
    assert out == plaintext and tag == token.split(".")[4]


def test_key_found_by_thumbprint_or_without_kid(key: PrivateKey, enc_public: dict[str, Any]) -> None:
    by_thumbprint = encrypt(enc_public, b"a", kid=key.thumbprint)  # what the PyPI fitconnect sender does
    assert decrypt_compact(by_thumbprint, [key], max_plaintext=LIMIT)[0] == b"a"
    assert decrypt_compact(encrypt(enc_public, b"b", kid=None), [key], max_plaintext=LIMIT)[0] == b"b"


def test_picks_the_key_named_by_kid(key: PrivateKey, wrong: PrivateKey, enc_public: dict[str, Any]) -> None:
    assert decrypt_compact(encrypt(enc_public, b"c"), [wrong, key], max_plaintext=LIMIT)[0] == b"c"


def test_unknown_kid_is_the_wrong_key(wrong: PrivateKey, enc_public: dict[str, Any]) -> None:
    with pytest.raises(DecryptionFailed, match="not this destination's encryption key"):
        decrypt_compact(encrypt(enc_public, b"x"), [wrong], max_plaintext=LIMIT)


def test_wrong_key_with_a_matching_kid(wrong: PrivateKey, enc_public: dict[str, Any]) -> None:
    with pytest.raises(DecryptionFailed, match="cannot be decrypted with this destination's key"):
        decrypt_compact(encrypt(enc_public, b"x", kid=None), [wrong], max_plaintext=LIMIT)


def test_tampered_ciphertext_fails_the_tag(key: PrivateKey, enc_public: dict[str, Any]) -> None:
    with pytest.raises(DecryptionFailed, match="authentication tag does not match"):
        decrypt_compact(flip_ciphertext(encrypt(enc_public, b"hello world")), [key], max_plaintext=LIMIT)


def test_tampered_header_fails_the_tag(key: PrivateKey, enc_public: dict[str, Any]) -> None:
    parts = encrypt(enc_public, b"hello").split(".")
    header = json.loads(b64u_decode(parts[0]))
    header["cty"] = "application/xml"  # AAD covers the header
    parts[0] = base64url_encode(json.dumps(header))
    with pytest.raises(DecryptionFailed, match="authentication tag"):
        decrypt_compact(".".join(parts), [key], max_plaintext=LIMIT)


@pytest.mark.parametrize("token, reason", [
    ("a.b.c", "5"),
    ("eyJhbGciOiJSU0ExXzUiLCJlbmMiOiJBMTI4R0NNIn0.a.b.c.d", "unsupported JWE algorithms"),
    ("!!!.a.b.c.d", "header"),
])
def test_malformed_tokens(key: PrivateKey, token: str, reason: str) -> None:
    with pytest.raises(DecryptionFailed, match=reason):
        decrypt_compact(token, [key], max_plaintext=LIMIT)


def test_zip_bomb_is_bounded(key: PrivateKey, enc_public: dict[str, Any]) -> None:
    token = encrypt(enc_public, b"\0" * (3 * 1024 * 1024), zip_def=True)
    assert len(token) < 100_000
    with pytest.raises(PlaintextTooLarge):
        decrypt_compact(token, [key], max_plaintext=1024 * 1024)


@pytest.mark.parametrize("zip_def", [False, True])
@pytest.mark.parametrize("chunk_size", [4, 4096, 1 << 20])
def test_streamed_file_decryption(tmp_path: Path, key: PrivateKey, enc_public: dict[str, Any], zip_def: bool,
                                  chunk_size: int) -> None:
    plaintext = os.urandom(200_001) + b"tail"
    src = tmp_path / "a.jwe"
    token = encrypt(enc_public, plaintext, zip_def=zip_def)
    src.write_text(token + "\n")  # a trailing newline is tolerated
    result = decrypt_file(src, tmp_path / "a.bin", [key], max_plaintext=LIMIT, chunk_size=chunk_size)
    assert (tmp_path / "a.bin").read_bytes() == plaintext
    assert result.size == len(plaintext) and result.auth_tag == token.split(".")[4]
    assert result.sha512 == hashlib.sha512(plaintext).hexdigest()
    assert result.sha256 == hashlib.sha256(plaintext).hexdigest()


def test_streamed_tampering_leaves_nothing_behind(tmp_path: Path, key: PrivateKey, enc_public: dict[str, Any]) -> None:
    src = tmp_path / "a.jwe"
    src.write_text(flip_ciphertext(encrypt(enc_public, os.urandom(50_000))))
    with pytest.raises(DecryptionFailed, match="authentication tag"):
        decrypt_file(src, tmp_path / "a.bin", [key], max_plaintext=LIMIT, chunk_size=1024)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jwe"]


def test_streamed_size_limit(tmp_path: Path, key: PrivateKey, enc_public: dict[str, Any]) -> None:
    src = tmp_path / "a.jwe"
    src.write_text(encrypt(enc_public, b"y" * 10_000))
    with pytest.raises(PlaintextTooLarge):
        decrypt_file(src, tmp_path / "a.bin", [key], max_plaintext=9_999)
    assert not (tmp_path / "a.bin").exists() and not (tmp_path / "a.bin.part").exists()


def test_streamed_file_that_is_not_a_jwe(tmp_path: Path, key: PrivateKey) -> None:
    src = tmp_path / "a.jwe"
    src.write_text("just.some.text")
    with pytest.raises(DecryptionFailed, match="not a compact JWE"):
        decrypt_file(src, tmp_path / "a.bin", [key], max_plaintext=LIMIT)
