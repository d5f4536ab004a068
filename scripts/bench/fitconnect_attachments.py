"""Peak memory and throughput of decrypting large FIT-Connect attachments (issue 6, item 6).

For each size (default 100 MB and 500 MB) this script generates a pseudo-random attachment, encrypts it
to a compact JWE file (RSA-OAEP-256 / A256GCM, streamed, as a sender would), then decrypts it through
``channels.fitconnect.crypto.decrypt_file`` in a fresh subprocess, which reports its peak RSS
(``resource.getrusage``) before and after, and the time taken. The plaintext is checked by SHA-512.
Nothing is kept: the files live in a temporary directory (``--workdir``) and are removed.

    .venv/bin/python scripts/bench/fitconnect_attachments.py [--sizes 100,500] [--workdir /tmp]

Prints a table and writes ``scripts/bench/results/fitconnect_attachments.json``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

MB = 1024 * 1024
PLAIN_CHUNK = 3 * 256 * 1024  # a multiple of 3: each chunk's ciphertext base64-encodes without padding


def b64u(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def make_attachment(path: Path, size: int) -> str:
    """Write ``size`` incompressible bytes; returns their SHA-512."""
    digest = hashlib.sha512()
    block = os.urandom(MB)
    with path.open("wb") as f:
        written = 0
        while written < size:
            piece = (written.to_bytes(8, "big") + block)[: min(MB, size - written)]
            f.write(piece)
            digest.update(piece)
            written += len(piece)
    return digest.hexdigest()


def encrypt_file(src: Path, dst: Path, public_jwk: dict[str, Any]) -> None:
    """A streaming JWE encryptor (the sender side), so that the benchmark itself stays small in memory."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from channels.fitconnect.keys import public_key_from_jwk

    header = b64u(json.dumps({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": public_jwk["kid"],
                              "cty": "application/pdf"}).encode())
    cek, iv = os.urandom(32), os.urandom(12)
    ek = public_key_from_jwk(public_jwk).encrypt(cek, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                                   algorithm=hashes.SHA256(), label=None))
    encryptor = Cipher(algorithms.AES(cek), modes.GCM(iv)).encryptor()
    encryptor.authenticate_additional_data(header)
    with src.open("rb") as f, dst.open("wb") as out:
        out.write(header + b"." + b64u(ek) + b"." + b64u(iv) + b".")
        carry = b""
        while chunk := f.read(PLAIN_CHUNK):
            data = carry + encryptor.update(chunk)
            usable = len(data) - len(data) % 3
            out.write(b64u(data[:usable]))
            carry = data[usable:]
        out.write(b64u(carry + encryptor.finalize()) + b"." + b64u(encryptor.tag))


def child(jwe: Path, out: Path, key: Path) -> None:
    """Runs in the subprocess: decrypt and report."""
    from channels.fitconnect.crypto import decrypt_file
    from channels.fitconnect.keys import load_private_key

    private = load_private_key(key, "encryption", where=str(key))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    result = decrypt_file(jwe, out, [private], max_plaintext=600 * MB)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "rss_before_kb": before, "peak_rss_kb": after, "size": result.size,
                      "sha512": result.sha512}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,500", help="attachment sizes in MB, comma-separated")
    parser.add_argument("--workdir", default=None, help="where the temporary files go (default: the system's)")
    parser.add_argument("--child", nargs=3, metavar=("JWE", "OUT", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*(Path(a) for a in args.child))
        return
    from channels.fitconnect import generate_destination_keys

    rows = []
    with tempfile.TemporaryDirectory(prefix="fitconnect-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)
        keys = generate_destination_keys(work / "keys", name="bench")
        public = json.loads(keys.encryption_public.read_text())
        for size_mb in (int(s) for s in args.sizes.split(",")):
            plain, jwe, out = work / "plain.bin", work / "attachment.jwe", work / "decrypted.bin"
            expected = make_attachment(plain, size_mb * MB)
            encrypt_file(plain, jwe, public)
            plain.unlink()
            proc = subprocess.run([sys.executable, __file__, "--child", str(jwe), str(out),
                                   str(keys.encryption_private)], capture_output=True, text=True, check=True)
            result = json.loads(proc.stdout)
            if result["sha512"] != expected:
                raise SystemExit(f"{size_mb} MB: the decrypted attachment differs")
            rows.append({"attachment_mb": size_mb, "jwe_mb": round(jwe.stat().st_size / MB, 1),
                         "seconds": round(result["seconds"], 2),
                         "mb_per_s": round(size_mb / result["seconds"], 1),
                         "rss_before_decrypt_mb": round(result["rss_before_kb"] / 1024, 1),
                         "peak_rss_mb": round(result["peak_rss_kb"] / 1024, 1)})
            for p in (jwe, out):
                p.unlink()
        shutil.rmtree(work / "keys")
    header = f"{'attachment':>10} {'JWE':>8} {'seconds':>8} {'MB/s':>7} {'RSS before':>11} {'peak RSS':>9}"
    print(header)
    for r in rows:
        print(f"{r['attachment_mb']:>7} MB {r['jwe_mb']:>5} MB {r['seconds']:>8} {r['mb_per_s']:>7} "
              f"{r['rss_before_decrypt_mb']:>8} MB {r['peak_rss_mb']:>6} MB")
    results = ROOT / "scripts" / "bench" / "results" / "fitconnect_attachments.json"
    results.write_text(json.dumps({
        "benchmark": "fitconnect_attachments", "what": "decrypt_file: compact JWE file → plaintext file, "
        "SHA-512 and SHA-256 computed on the way, in a fresh subprocess", "chunk_bytes": 1 << 20,
        "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "rows": rows}, indent=2) + "\n")
    print(f"written to {results.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
