"""Destination keys: loading private JWKs, thumbprints, x5c chains, and key generation for test environments.

A destination has two RSA key pairs (≥ 4096 bit): an encryption key (``RSA-OAEP-256``; senders encrypt
to its public half) and a signing key (``PS512``; our SETs are signed with it). Private halves are held
in :class:`PrivateKey`, whose ``repr`` shows only ``kid``, thumbprint and size: key material never reaches
a log line, an exception message or the console. Loading failures are our own misconfiguration and raise
:class:`~hub.errors.Permanent`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from hub.errors import Permanent

__all__ = [
    "KeyFiles",
    "PrivateKey",
    "b64u_decode",
    "b64u_encode",
    "generate_destination_keys",
    "load_private_key",
    "public_key_from_jwk",
    "thumbprint",
    "verify_certificate_chain",
]

log = logging.getLogger(__name__)
MIN_BITS = 4096
Purpose = Literal["encryption", "signing"]
_ALG: dict[str, str] = {"encryption": "RSA-OAEP-256", "signing": "PS512"}
_USE: dict[str, str] = {"encryption": "enc", "signing": "sig"}


def b64u_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64u_decode(text: str | bytes) -> bytes:
    """Strict base64url without padding (RFC 7515 §2); raises ``ValueError`` on anything else."""
    raw = text.encode("ascii") if isinstance(text, str) else text
    if b"=" in raw or len(raw) % 4 == 1:
        raise ValueError("not base64url")
    return base64.b64decode(raw.translate(bytes.maketrans(b"-_", b"+/")) + b"=" * (-len(raw) % 4), validate=True)


def _int(value: Any, name: str) -> int:
    if not isinstance(value, str) or not value:
        raise ValueError(f"JWK member {name!r} missing")
    return int.from_bytes(b64u_decode(value), "big")


def _uint(value: int) -> str:
    return b64u_encode(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of an RSA JWK (the ``kid`` the PyPI ``fitconnect`` sender uses)."""
    canonical = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"), sort_keys=True)
    return b64u_encode(hashlib.sha256(canonical.encode("ascii")).digest())


def public_key_from_jwk(jwk: dict[str, Any]) -> rsa.RSAPublicKey:
    if jwk.get("kty") != "RSA":
        raise ValueError("only RSA keys are used in FIT-Connect")
    return rsa.RSAPublicNumbers(_int(jwk.get("e"), "e"), _int(jwk.get("n"), "n")).public_key()


def _public_jwk(key: rsa.RSAPublicKey, *, kid: str, purpose: Purpose, x5c: list[str] | None) -> dict[str, Any]:
    numbers = key.public_numbers()
    jwk: dict[str, Any] = {"kty": "RSA", "kid": kid, "alg": _ALG[purpose], "use": _USE[purpose],
                           "key_ops": ["wrapKey"] if purpose == "encryption" else ["verify"],
                           "n": _uint(numbers.n), "e": _uint(numbers.e)}
    if x5c:
        jwk["x5c"] = list(x5c)
    return jwk


class PrivateKey:
    """An RSA private key from a JWK. Holds the key; shows only who it is."""

    __slots__ = ("_key", "alg", "kid", "public_jwk", "purpose", "thumbprint")

    def __init__(self, key: rsa.RSAPrivateKey, *, kid: str, purpose: Purpose, x5c: list[str] | None = None) -> None:
        self._key = key
        self.kid, self.purpose, self.alg = kid, purpose, _ALG[purpose]
        self.public_jwk = _public_jwk(key.public_key(), kid=kid, purpose=purpose, x5c=x5c)
        self.thumbprint = thumbprint(self.public_jwk)

    @property
    def bits(self) -> int:
        return self._key.key_size

    def public_key(self) -> rsa.RSAPublicKey:
        return self._key.public_key()

    def matches(self, kid: str | None) -> bool:
        """True when a JOSE header's ``kid`` names this key, by ``kid`` or by RFC 7638 thumbprint."""
        return kid is not None and kid in (self.kid, self.thumbprint)

    def unwrap(self, encrypted_key: bytes) -> bytes:
        """RSA-OAEP-256 (SHA-256, MGF1-SHA-256): the content encryption key of a JWE."""
        if self.purpose != "encryption":
            raise ValueError("not an encryption key")
        return self._key.decrypt(encrypted_key, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                             algorithm=hashes.SHA256(), label=None))

    def sign(self, message: bytes) -> bytes:
        """PS512: RSASSA-PSS with SHA-512, MGF1-SHA-512 and a 64-byte salt (RFC 7518 §3.5)."""
        if self.purpose != "signing":
            raise ValueError("not a signing key")
        return self._key.sign(message, padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=64),
                              hashes.SHA512())

    def __repr__(self) -> str:
        return (f"PrivateKey(purpose={self.purpose!r}, kid={self.kid!r}, thumbprint={self.thumbprint!r}, "
                f"bits={self.bits})")

    __str__ = __repr__

    def __reduce__(self) -> Any:  # keep private keys out of pickles (multiprocessing, caches)
        raise TypeError("PrivateKey cannot be pickled")


def _private_from_jwk(jwk: dict[str, Any]) -> rsa.RSAPrivateKey:
    n, e, d = _int(jwk.get("n"), "n"), _int(jwk.get("e"), "e"), _int(jwk.get("d"), "d")
    if all(jwk.get(k) for k in ("p", "q", "dp", "dq", "qi")):
        p, q = _int(jwk["p"], "p"), _int(jwk["q"], "q")
        dp, dq, qi = _int(jwk["dp"], "dp"), _int(jwk["dq"], "dq"), _int(jwk["qi"], "qi")
    else:
        p, q = rsa.rsa_recover_prime_factors(n, e, d)
        dp, dq, qi = rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q)
    return rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, rsa.RSAPublicNumbers(e, n)).private_key()


def load_private_key(source: Path | str, purpose: Purpose, *, where: str, min_bits: int = MIN_BITS) -> PrivateKey:
    """Load a private RSA JWK from a file (``Path``) or from JSON text (e.g. an environment variable).

    ``where`` names the source in error messages (a path or ``$VARIABLE``), never the content."""
    try:
        text = source.read_text("utf-8") if isinstance(source, Path) else source
    except OSError as exc:
        raise Permanent(f"{purpose} key {where}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if isinstance(source, Path):
        try:
            if source.stat().st_mode & 0o077:
                log.warning("fitconnect: private %s key %s is readable by group/others; chmod 600", purpose, where)
        except OSError:
            pass
    try:
        jwk = json.loads(text)
        key = _private_from_jwk(_checked(jwk, purpose))
    except _KeyProblem as exc:
        raise Permanent(f"{purpose} key {where}: {exc}") from None
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # JSON, base64 or RSA consistency errors
        raise Permanent(f"{purpose} key {where}: not a usable private JWK ({type(exc).__name__})") from None
    if key.key_size < min_bits:
        raise Permanent(f"{purpose} key {where}: {key.key_size} bit, FIT-Connect requires at least {min_bits}")
    x5c = jwk.get("x5c") if isinstance(jwk.get("x5c"), list) else None
    kid = str(jwk.get("kid") or "") or thumbprint(jwk)
    loaded = PrivateKey(key, kid=kid, purpose=purpose, x5c=x5c)
    if x5c:
        try:
            verify_certificate_chain(loaded.public_jwk)
        except ValueError as exc:
            raise Permanent(f"{purpose} key {where}: x5c does not fit ({exc})") from None
    return loaded


class _KeyProblem(ValueError):
    """A reason worded by us (never containing key material)."""


def _checked(jwk: Any, purpose: Purpose) -> dict[str, Any]:
    if not isinstance(jwk, dict):
        raise _KeyProblem("not a JSON object")
    if jwk.get("kty") != "RSA":
        raise _KeyProblem("not an RSA JWK (kty)")
    if "d" not in jwk:
        raise _KeyProblem("a public JWK; the private one (with 'd') is needed")
    if jwk.get("alg") not in (None, _ALG[purpose]):
        raise _KeyProblem(f"alg is {jwk.get('alg')!r}, expected {_ALG[purpose]} (encryption and signing key swapped?)")
    if jwk.get("use") not in (None, _USE[purpose]):
        raise _KeyProblem(f"use is {jwk.get('use')!r}, expected {_USE[purpose]!r}")
    if not isinstance(jwk.get("n"), str) or not isinstance(jwk.get("e"), str):
        raise _KeyProblem("n or e missing")
    return jwk


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


def _write(path: Path, jwk: dict[str, Any], *, private: bool) -> None:
    data = (json.dumps(jwk, indent=2) + "\n").encode("utf-8")
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
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        leaf = _certificate(f"{name} {purpose}", key.public_key(), ca_name, ca_key, ca=False,
                            purpose=purpose, days=days)
        x5c = [base64.b64encode(leaf.public_bytes(Encoding.DER)).decode("ascii"), ca_b64]
        kid = str(uuid.uuid4())
        public = _public_jwk(key.public_key(), kid=kid, purpose=purpose, x5c=x5c)
        n = key.private_numbers()
        private = {**public, "key_ops": ["unwrapKey"] if purpose == "encryption" else ["sign"],
                   "d": _uint(n.d), "p": _uint(n.p), "q": _uint(n.q), "dp": _uint(n.dmp1), "dq": _uint(n.dmq1),
                   "qi": _uint(n.iqmp)}
        _write(paths[f"{short}.jwk.json"], private, private=True)
        _write(paths[f"{short}.pub.jwk.json"], public, private=False)
        kids[purpose] = kid
    paths["ca.pem"].write_bytes(ca_cert.public_bytes(Encoding.PEM))
    return KeyFiles(paths["enc.jwk.json"], paths["enc.pub.jwk.json"], paths["sig.jwk.json"],
                    paths["sig.pub.jwk.json"], paths["ca.pem"], kids["encryption"], kids["signing"])

