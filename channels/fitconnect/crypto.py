"""JWE decryption (compact serialization, RSA-OAEP-256 / A256GCM, optional ``zip: DEF``), also streaming.

FIT-Connect encrypts metadata, data and every attachment as a compact JWE
``header.encrypted_key.iv.ciphertext.tag``. The ciphertext is one base64url segment, so a 500 MB attachment
is a ~670 MB line; :func:`decrypt_file` never holds it in memory: it finds the five segments by position,
decodes the ciphertext in chunks, feeds AES-GCM incrementally (``cryptography``'s GCM decryptor, tag checked
in ``finalize``), inflates ``zip: DEF`` incrementally, and hashes (SHA-512 for the metadata check, SHA-256
for the hub) while writing the plaintext to ``<dst>.part``. Only when the tag verifies is the file renamed
to ``dst``; on any failure it is removed, so unauthenticated plaintext never stays on disk.

The key is chosen by the header's ``kid``, which may be the key's ``kid`` or its RFC 7638 thumbprint
(the PyPI ``fitconnect`` sender uses the thumbprint); jwcrypto unwraps the content key
(:meth:`PrivateKey.unwrap`). Every failure raises :class:`DecryptionFailed` with a reason that is safe to
send back to the sender (no key material, no plaintext).

Metadata and data, held in memory, take the same path (:func:`decrypt_compact`) rather than jwcrypto's
JWE: one implementation of the format, and jwcrypto would refuse ``zip: DEF`` ciphertexts above 256 KiB
(data may be 64 MiB) and word every failure as "no recipient matched", where the sender needs the reason.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from channels.fitconnect.keys import PrivateKey, b64u_decode
from hub.jsonsafe import JsonLimits, JsonRejected, loads

__all__ = ["CHUNK", "DecryptedFile", "DecryptionFailed", "PlaintextTooLarge", "decrypt_compact", "decrypt_file",
           "protected_header"]

CHUNK = 1 << 20  # base64url characters per read; a multiple of 4, so chunks decode independently
_HEAD = 64 * 1024  # the protected header, encrypted key and IV must lie within the first 64 KiB
_TRANSLATE = bytes.maketrans(b"-_", b"+/")
#: a JOSE header is a handful of short members; anything bigger or deeper is not a FIT-Connect JWE
_HEADER_LIMITS = JsonLimits(max_bytes=16 * 1024, max_depth=8, max_number_chars=40, max_string_chars=8 * 1024)


class DecryptionFailed(Exception):
    """Undecryptable. ``str()`` is a reason fit for the sender (``encryption-issue``)."""


class PlaintextTooLarge(DecryptionFailed):
    """The plaintext would exceed the configured limit (also guards against ``zip`` bombs)."""


@dataclass(frozen=True)
class DecryptedFile:
    path: Path
    size: int
    sha512: str
    sha256: str
    auth_tag: str
    header: dict[str, Any]


def protected_header(segment: bytes | str) -> dict[str, Any]:
    if len(segment) > _HEADER_LIMITS.max_bytes * 4 // 3 + 4:
        raise DecryptionFailed(f"the JWE header is larger than {_HEADER_LIMITS.max_bytes} bytes")
    try:
        header = loads(b64u_decode(segment), _HEADER_LIMITS)
    except JsonRejected as exc:
        raise DecryptionFailed(f"the JWE header is not acceptable JSON ({exc.title}: {exc.detail})") from None
    except ValueError:
        raise DecryptionFailed("the JWE header is not base64url-encoded JSON") from None
    if not isinstance(header, dict):
        raise DecryptionFailed("the JWE header is not a JSON object")
    if header.get("alg") != "RSA-OAEP-256" or header.get("enc") != "A256GCM":
        raise DecryptionFailed(f"unsupported JWE algorithms alg={header.get('alg')!r} enc={header.get('enc')!r}; "
                               "FIT-Connect uses RSA-OAEP-256 with A256GCM")
    if header.get("zip") not in (None, "DEF"):
        raise DecryptionFailed(f"unsupported JWE compression zip={header.get('zip')!r}")
    if "crit" in header:
        raise DecryptionFailed(f"unsupported critical JWE header parameters {header['crit']!r}")
    return header


def _content_key(header: dict[str, Any], encrypted_key: bytes, keys: Sequence[PrivateKey]) -> bytes:
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise DecryptionFailed("the JWE header's kid is not a string")
    candidates = [k for k in keys if k.matches(kid)] if kid is not None else list(keys)
    if not candidates:
        raise DecryptionFailed(f"the JWE is encrypted for key {kid!r}, which is not this destination's "
                               "encryption key")
    for key in candidates:
        try:
            return key.unwrap(encrypted_key)
        except ValueError:
            continue
    raise DecryptionFailed("the content encryption key cannot be decrypted with this destination's key")


def _decode(segment: bytes, what: str) -> bytes:
    try:
        return b64u_decode(segment)
    except (ValueError, binascii.Error):
        raise DecryptionFailed(f"the JWE {what} is not base64url") from None


def _decrypt(header_b64: bytes, ek_b64: bytes, iv_b64: bytes, ciphertext: Iterator[bytes], tag_b64: bytes,
             keys: Sequence[PrivateKey], write: Callable[[bytes], None], max_plaintext: int) -> dict[str, Any]:
    """The one decryption path: header checks, CEK unwrap, chunked base64url → AES-GCM → inflate → ``write``."""
    header = protected_header(header_b64)
    iv, tag = _decode(iv_b64, "initialization vector"), _decode(tag_b64, "authentication tag")
    if len(iv) != 12 or len(tag) != 16:
        raise DecryptionFailed("the JWE initialization vector or authentication tag has the wrong length")
    cek = _content_key(header, _decode(ek_b64, "encrypted key"), keys)
    decryptor = Cipher(algorithms.AES(cek), modes.GCM(iv, tag)).decryptor()
    decryptor.authenticate_additional_data(header_b64)  # AAD = ASCII(BASE64URL(protected header))
    inflate = zlib.decompressobj(-zlib.MAX_WBITS) if header.get("zip") == "DEF" else None
    written = 0

    def emit(plain: bytes) -> None:
        nonlocal written
        while plain:
            if inflate is not None:
                out = inflate.decompress(plain, CHUNK)  # bounded output per call: no zip bomb in memory
                plain = inflate.unconsumed_tail
            else:
                out, plain = plain, b""
            written += len(out)
            if written > max_plaintext:
                raise PlaintextTooLarge(f"the plaintext exceeds the limit of {max_plaintext} bytes")
            if out:
                write(out)

    carry = b""
    try:
        for piece in ciphertext:
            piece = carry + piece
            usable = len(piece) - len(piece) % 4
            carry = piece[usable:]
            if usable:
                emit(decryptor.update(binascii.a2b_base64(piece[:usable].translate(_TRANSLATE), strict_mode=True)))
        if carry:
            if len(carry) == 1:
                raise ValueError("truncated")
            emit(decryptor.update(binascii.a2b_base64(carry.translate(_TRANSLATE) + b"=" * (-len(carry) % 4),
                                                      strict_mode=True)))
    except (ValueError, binascii.Error):
        raise DecryptionFailed("the JWE ciphertext is not base64url") from None
    except zlib.error:
        raise DecryptionFailed("the compressed (zip: DEF) plaintext is corrupt") from None
    try:
        emit(decryptor.finalize())
    except InvalidTag:
        raise DecryptionFailed("the authentication tag does not match: the ciphertext was altered or "
                               "encrypted with another key") from None
    if inflate is not None:
        try:
            emit(inflate.flush())
        except zlib.error:
            raise DecryptionFailed("the compressed (zip: DEF) plaintext is corrupt") from None
        if not inflate.eof:
            raise DecryptionFailed("the compressed (zip: DEF) plaintext is truncated")
    return header


def decrypt_compact(token: str, keys: Sequence[PrivateKey], *, max_plaintext: int) -> tuple[bytes, str]:
    """Decrypt a compact JWE held in memory (metadata, data). Returns (plaintext, authentication tag)."""
    parts = token.strip().encode("ascii", "replace").split(b".")
    if len(parts) != 5:
        raise DecryptionFailed(f"not a compact JWE (found {len(parts)} segments, expected 5)")
    out = io.BytesIO()

    def write(plain: bytes) -> None:
        out.write(plain)

    ciphertext = parts[3]
    chunks = (ciphertext[i:i + CHUNK] for i in range(0, len(ciphertext), CHUNK))
    _decrypt(parts[0], parts[1], parts[2], chunks, parts[4], keys, write, max_plaintext)
    return out.getvalue(), parts[4].decode("ascii")


def _segments(f: BinaryIO, size: int) -> tuple[bytes, bytes, bytes, int, int, bytes]:
    """Locate the five segments of a compact JWE file: (header, ek, iv, ct_start, ct_end, tag)."""
    head = f.read(min(size, _HEAD))
    dots = [i for i, c in enumerate(head) if c == 0x2E][:3]
    if len(dots) < 3:
        raise DecryptionFailed("not a compact JWE (header, encrypted key and IV not found)")
    f.seek(max(0, size - 256))
    tail = f.read()
    stripped = tail.rstrip(b" \t\r\n")
    last_dot = stripped.rfind(b".")
    ct_end = size - len(tail) + last_dot
    if last_dot < 0 or ct_end <= dots[2]:
        raise DecryptionFailed("not a compact JWE (found fewer than 5 segments)")
    return (head[:dots[0]], head[dots[0] + 1:dots[1]], head[dots[1] + 1:dots[2]], dots[2] + 1, ct_end,
            stripped[last_dot + 1:])


def decrypt_file(src: Path, dst: Path, keys: Sequence[PrivateKey], *, max_plaintext: int,
                 chunk_size: int = CHUNK) -> DecryptedFile:
    """Decrypt the compact JWE in ``src`` to ``dst`` in bounded memory; see the module docstring."""
    if chunk_size % 4:
        raise ValueError("chunk_size must be a multiple of 4")
    part = dst.with_name(dst.name + ".part")
    sha512, sha256 = hashlib.sha512(), hashlib.sha256()
    try:
        with src.open("rb") as f, part.open("wb") as out:
            header_b64, ek_b64, iv_b64, start, end, tag_b64 = _segments(f, os.fstat(f.fileno()).st_size)

            def chunks() -> Iterator[bytes]:
                f.seek(start)
                remaining = end - start
                while remaining > 0:
                    piece = f.read(min(chunk_size, remaining))
                    if not piece:
                        raise DecryptionFailed("the JWE file ended early")
                    remaining -= len(piece)
                    yield piece

            def write(plain: bytes) -> None:
                sha512.update(plain)
                sha256.update(plain)
                out.write(plain)

            header = _decrypt(header_b64, ek_b64, iv_b64, chunks(), tag_b64, keys, write, max_plaintext)
            size = out.tell()
        os.replace(part, dst)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return DecryptedFile(dst, size, sha512.hexdigest(), sha256.hexdigest(), tag_b64.decode("ascii"), header)
