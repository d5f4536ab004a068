"""Destination keys: loading private JWKs, x5c chains, and key generation for test environments.

A destination has two RSA key pairs (≥ 4096 bit): an encryption key (``RSA-OAEP-256``; senders encrypt
to its public half) and a signing key (``PS512``; our SETs are signed with it). JWK parsing and export,
RFC 7638 thumbprints, JWS signing and the RSA-OAEP-256 key unwrap are jwcrypto's; this module adds what
FIT-Connect demands on top (RSA only, ≥ 4096 bit, ``alg``/``use``/``key_ops`` fitting the purpose) and the
x5c chain check, which is X.509 (``cryptography``), not JOSE.

Private halves are held in :class:`PrivateKey`, whose ``repr`` shows only ``kid``, thumbprint and size: key
material never reaches a log line, an exception message or the console. Loading failures are our own
misconfiguration and raise :class:`~hub.errors.Permanent`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from jwcrypto import jwk, jws
from jwcrypto.common import JWException, base64url_decode
from jwcrypto.jwa import JWA

from hub.errors import Permanent
from hub.jsonsafe import JsonLimits, JsonRejected, loads

__all__ = [
    "KeyFiles",
    "PrivateKey",
    "b64u_decode",
    "generate_destination_keys",
    "load_private_key",
    "public_key_from_jwk",
    "verify_certificate_chain",
]

log = logging.getLogger(__name__)
MIN_BITS = 4096
Purpose = Literal["encryption", "signing"]
_ALG: dict[str, str] = {"encryption": "RSA-OAEP-256", "signing": "PS512"}
_USE: dict[str, str] = {"encryption": "enc", "signing": "sig"}
#: the JWK operations of each purpose: (public half, private half)
_OPS: dict[str, tuple[str, str]] = {"encryption": ("wrapKey", "unwrapKey"), "signing": ("verify", "sign")}
_CRT = ("p", "q", "dp", "dq", "qi")
_BASE64URL = re.compile(rb"[A-Za-z0-9_-]*")
#: a private RSA-4096 JWK is about 3.3 kB; with an x5c chain of a few certificates it stays far below this
_KEY_LIMITS = JsonLimits(max_bytes=256 * 1024, max_depth=8, max_number_chars=40, max_string_chars=64 * 1024)


def b64u_decode(text: str | bytes) -> bytes:
    """Strict base64url without padding (RFC 7515 §2); raises ``ValueError`` on anything else.

    jwcrypto's decoder skips characters outside the alphabet, so the alphabet is checked here first."""
    raw = text.encode("ascii") if isinstance(text, str) else text
    if not _BASE64URL.fullmatch(raw):
        raise ValueError("not base64url")
    return cast(bytes, base64url_decode(raw.decode("ascii")))


def public_key_from_jwk(members: Mapping[str, Any]) -> rsa.RSAPublicKey:
    """The RSA public key of a JWK, whatever its ``use``; raises ``ValueError`` for anything else."""
    if members.get("kty") != "RSA":
        raise ValueError("only RSA keys are used in FIT-Connect")
    try:
        key = jwk.JWK(kty="RSA", n=members.get("n"), e=members.get("e")).get_op_key("verify")
    except JWException as exc:
        raise ValueError(f"not an RSA public JWK ({type(exc).__name__})") from None
    return cast(rsa.RSAPublicKey, key)


def _public_jwk(key: jwk.JWK, *, kid: str, purpose: Purpose, x5c: list[str] | None) -> dict[str, Any]:
    public: dict[str, Any] = {"kty": "RSA", "kid": kid, "alg": _ALG[purpose], "use": _USE[purpose],
                              "key_ops": [_OPS[purpose][0]], "n": key["n"], "e": key["e"]}
    if x5c:
        public["x5c"] = list(x5c)
    return public


class PrivateKey:
    """An RSA private key from a JWK. Holds the key; shows only who it is."""

    __slots__ = ("_jwk", "alg", "kid", "public_jwk", "purpose", "thumbprint")

    def __init__(self, key: jwk.JWK, *, kid: str, purpose: Purpose, x5c: list[str] | None = None) -> None:
        self._jwk = key
        self.kid, self.purpose, self.alg = kid, purpose, _ALG[purpose]
        self.public_jwk = _public_jwk(key, kid=kid, purpose=purpose, x5c=x5c)
        self.thumbprint = str(key.thumbprint())

    @property
    def bits(self) -> int:
        return self.public_key().key_size

    def public_key(self) -> rsa.RSAPublicKey:
        return public_key_from_jwk(self.public_jwk)

    def matches(self, kid: str | None) -> bool:
        """True when a JOSE header's ``kid`` names this key, by ``kid`` or by RFC 7638 thumbprint."""
        return kid is not None and kid in (self.kid, self.thumbprint)

    def unwrap(self, encrypted_key: bytes) -> bytes:
        """The 256-bit content encryption key of an ``RSA-OAEP-256`` JWE; ``ValueError`` when it is not one."""
        if self.purpose != "encryption":
            raise ValueError("not an encryption key")
        try:
            return cast(bytes, JWA.keymgmt_alg(self.alg).unwrap(self._jwk, 256, encrypted_key, {}))
        except JWException:  # a key of another length came out
            raise ValueError("the encrypted key does not hold a 256-bit key") from None

    def sign_jws(self, payload: bytes, *, typ: str) -> str:
        """A compact JWS of ``payload`` with the protected header ``{"typ", "alg": PS512, "kid"}``."""
        if self.purpose != "signing":
            raise ValueError("not a signing key")
        token = jws.JWS(payload)
        token.add_signature(self._jwk, alg=self.alg, protected=json.dumps(
            {"typ": typ, "alg": self.alg, "kid": self.kid}, separators=(",", ":")))
        return str(token.serialize(compact=True))

    def __repr__(self) -> str:
        return (f"PrivateKey(purpose={self.purpose!r}, kid={self.kid!r}, thumbprint={self.thumbprint!r}, "
                f"bits={self.bits})")

    __str__ = __repr__

    def __reduce__(self) -> Any:  # keep private keys out of pickles (multiprocessing, caches)
        raise TypeError("PrivateKey cannot be pickled")


def _with_crt_members(members: dict[str, Any]) -> dict[str, Any]:
    """RFC 7518 §6.3.2 allows a private JWK with ``d`` but without p, q, dp, dq, qi; jwcrypto needs them."""
    if all(members.get(k) for k in _CRT):
        return members
    public = public_key_from_jwk(members).public_numbers()
    d = int.from_bytes(b64u_decode(members["d"]), "big")
    p, q = rsa.rsa_recover_prime_factors(public.n, public.e, d)
    numbers = rsa.RSAPrivateNumbers(p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q),
                                    rsa.rsa_crt_iqmp(p, q), public)
    complete = jwk.JWK.from_pyca(numbers.private_key()).export_private(as_dict=True)
    return {**members, **{k: complete[k] for k in _CRT}}


def load_private_key(source: Path | str, purpose: Purpose, *, where: str, min_bits: int = MIN_BITS) -> PrivateKey:
    """Load a private RSA JWK from a file (``Path``) or from JSON text (e.g. an environment variable).

    ``where`` names the source in error messages (a path or ``$VARIABLE``), never the content."""
    try:
        text = source.read_text("utf-8") if isinstance(source, Path) else source
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise Permanent(f"{purpose} key {where}: cannot read ({reason})") from None
    if isinstance(source, Path):
        try:
            if source.stat().st_mode & 0o077:
                log.warning("fitconnect: private %s key %s is readable by group/others; chmod 600", purpose, where)
        except OSError:
            pass
    try:
        members = _checked(loads(text, _KEY_LIMITS), purpose)
        key = jwk.JWK()
        key.import_key(**_with_crt_members(members))
        bits = cast(rsa.RSAPrivateKey, key.get_op_key(_OPS[purpose][1])).key_size
    except JsonRejected as exc:
        raise Permanent(f"{purpose} key {where}: not acceptable JSON ({exc.title})") from None
    except _KeyProblem as exc:
        raise Permanent(f"{purpose} key {where}: {exc}") from None
    except (JWException, ValueError, TypeError, UnsupportedAlgorithm) as exc:  # base64, RSA consistency, key_ops
        raise Permanent(f"{purpose} key {where}: not a usable private JWK ({type(exc).__name__})") from None
    if bits < min_bits:
        raise Permanent(f"{purpose} key {where}: {bits} bit, FIT-Connect requires at least {min_bits}")
    x5c = members.get("x5c") if isinstance(members.get("x5c"), list) else None
    loaded = PrivateKey(key, kid=str(members.get("kid") or "") or str(key.thumbprint()), purpose=purpose, x5c=x5c)
    if x5c:
        try:
            verify_certificate_chain(loaded.public_jwk)
        except ValueError as exc:
            raise Permanent(f"{purpose} key {where}: x5c does not fit ({exc})") from None
    return loaded


class _KeyProblem(ValueError):
    """A reason worded by us (never containing key material)."""


def _checked(members: Any, purpose: Purpose) -> dict[str, Any]:
    """What jwcrypto leaves to us: the key type, private half and ``alg`` FIT-Connect expects for ``purpose``."""
    if not isinstance(members, dict):
        raise _KeyProblem("not a JSON object")
    if members.get("kty") != "RSA":
        raise _KeyProblem("not an RSA JWK (kty)")
    if "d" not in members:
        raise _KeyProblem("a public JWK; the private one (with 'd') is needed")
    if members.get("alg") not in (None, _ALG[purpose]):
        raise _KeyProblem(f"alg is {members.get('alg')!r}, expected {_ALG[purpose]} "
                          "(encryption and signing key swapped?)")
    if not isinstance(members.get("kid"), str | None):
        raise _KeyProblem("kid is not a string")
    if members.get("use") not in (None, _USE[purpose]):
        raise _KeyProblem(f"use is {members.get('use')!r}, expected {_USE[purpose]!r}")
    ops = members.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or _OPS[purpose][1] not in ops):
        raise _KeyProblem(f"key_ops is {ops!r}, which does not allow {_OPS[purpose][1]!r}")
    return members


def verify_certificate_chain(public_jwk: dict[str, Any], *, trust_anchor: x509.Certificate | None = None,
                             now: dt.datetime | None = None) -> list[x509.Certificate]:
    """Check a JWK's ``x5c``: the leaf holds the JWK's key, each certificate is issued by the next, all are
    valid now, and the last is self-signed (or equals ``trust_anchor``). Raises ``ValueError``."""
    chain_b64 = public_jwk.get("x5c")
    if not isinstance(chain_b64, list) or not chain_b64:
        raise ValueError("no x5c chain")
    try:
        chain = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in chain_b64]
    except (ValueError, TypeError):
        raise ValueError("x5c holds something that is not a DER certificate") from None
    leaf_key = chain[0].public_key()
    if not isinstance(leaf_key, rsa.RSAPublicKey) or leaf_key.public_numbers() != public_key_from_jwk(
            public_jwk).public_numbers():
        raise ValueError("the leaf certificate does not hold the JWK's key")
    moment = now or dt.datetime.now(dt.UTC)
    for i, cert in enumerate(chain):
        if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
            raise ValueError(f"certificate {i} ({cert.subject.rfc4514_string()}) is not valid at {moment:%Y-%m-%d}")
        issuer = chain[i + 1] if i + 1 < len(chain) else cert
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            raise ValueError(f"certificate {i} is not issued by {issuer.subject.rfc4514_string()}") from None
    if trust_anchor is not None and chain[-1] != trust_anchor:
        raise ValueError("the chain does not end in the trust anchor")
    return chain


@dataclass(frozen=True)
class KeyFiles:
    """What :func:`generate_destination_keys` wrote. Private files are mode 0600."""

    encryption_private: Path
    encryption_public: Path
    signing_private: Path
    signing_public: Path
    ca_certificate: Path
    encryption_kid: str
    signing_kid: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "xoev-hub test environment")])


def _certificate(subject: str, key: rsa.RSAPublicKey, issuer: x509.Name, issuer_key: rsa.RSAPrivateKey, *,
                 ca: bool, purpose: Purpose | None, days: int) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    usage = {"key_cert_sign": ca, "crl_sign": ca, "digital_signature": purpose == "signing",
             "key_encipherment": purpose == "encryption"}
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer).public_key(key)
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
               .add_extension(x509.KeyUsage(content_commitment=False, data_encipherment=False, key_agreement=False,
                                            encipher_only=False, decipher_only=False, **usage), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False))
    return builder.sign(issuer_key, hashes.SHA512())


def _write(path: Path, jwk_members: dict[str, Any], *, private: bool) -> None:
    data = (json.dumps(jwk_members, indent=2) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def generate_destination_keys(out_dir: Path, *, name: str, bits: int = MIN_BITS, days: int = 730) -> KeyFiles:
    """Create a destination's encryption and signing key pairs as JWK files, for test environments.

    Each public JWK carries ``x5c`` = [leaf, CA]: a fresh self-signed CA (its private key is discarded)
    issues one leaf per key. Files: ``<name>.enc.jwk.json`` / ``<name>.enc.pub.jwk.json``,
    ``<name>.sig.jwk.json`` / ``<name>.sig.pub.jwk.json`` and ``<name>.ca.pem``. Existing files are
    never overwritten (``FileExistsError``)."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"unusable key name {name!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / f"{name}.{k}" for k in ("enc.jwk.json", "enc.pub.jwk.json", "sig.jwk.json",
                                                   "sig.pub.jwk.json", "ca.pem")}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing:
        raise FileExistsError(f"refusing to overwrite {', '.join(existing)}")
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    ca_name = _name(f"{name} test CA")
    ca_cert = _certificate(f"{name} test CA", ca_key.public_key(), ca_name, ca_key, ca=True, purpose=None,
                           days=days)
    ca_b64 = base64.b64encode(ca_cert.public_bytes(Encoding.DER)).decode("ascii")
    kids: dict[str, str] = {}
    pairs: tuple[tuple[Purpose, str], ...] = (("encryption", "enc"), ("signing", "sig"))
    for purpose, short in pairs:
        kid = str(uuid.uuid4())
        key = jwk.JWK.generate(kty="RSA", size=bits, kid=kid, alg=_ALG[purpose], use=_USE[purpose],
                               key_ops=[_OPS[purpose][1]])
        leaf = _certificate(f"{name} {purpose}", public_key_from_jwk(key), ca_name, ca_key, ca=False,
                            purpose=purpose, days=days)
        x5c = [base64.b64encode(leaf.public_bytes(Encoding.DER)).decode("ascii"), ca_b64]
        public = _public_jwk(key, kid=kid, purpose=purpose, x5c=x5c)
        _write(paths[f"{short}.jwk.json"], {**public, **key.export_private(as_dict=True), "x5c": x5c}, private=True)
        _write(paths[f"{short}.pub.jwk.json"], public, private=False)
        kids[purpose] = kid
    paths["ca.pem"].write_bytes(ca_cert.public_bytes(Encoding.PEM))
    return KeyFiles(paths["enc.jwk.json"], paths["enc.pub.jwk.json"], paths["sig.jwk.json"],
                    paths["sig.pub.jwk.json"], paths["ca.pem"], kids["encryption"], kids["signing"])


def certificate_end(source: Path | str) -> dt.datetime | None:
    """When the certificate of a JWK (``x5c[0]``, from a file or JSON text) stops being valid; ``None`` for a
    JWK without ``x5c``. Raises ``ValueError``/``OSError`` for what cannot be read (the reason, never the key)."""
    text = source.read_text("utf-8") if isinstance(source, Path) else source
    try:
        members = loads(text, _KEY_LIMITS)
    except JsonRejected as exc:
        raise ValueError(f"not acceptable JSON ({exc.title})") from None
    chain = members.get("x5c") if isinstance(members, dict) else None
    if not chain:
        return None
    if not isinstance(chain, list) or not isinstance(chain[0], str):
        raise ValueError("x5c is not a list of certificates")
    try:
        return x509.load_der_x509_certificate(base64.b64decode(chain[0], validate=True)).not_valid_after_utc
    except (ValueError, TypeError):
        raise ValueError("x5c holds something that is not a DER certificate") from None
