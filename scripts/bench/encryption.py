"""Benchmark: what encryption at rest (hub.sealing) costs per message, against the same run without it.

For each backend (SQLite, PostgreSQL when reachable) and payload (the 4 KiB XBau sample, which is validated
against its XSD; a 1 MiB JSON document, which is not), the same messages go through the hub twice in one run,
alternating plain and sealed rounds (``--rounds``, the median is reported):

* **intake**: ``hub.store.accept`` of ``--messages`` messages (one transaction each): µs per message;
* **delivery**: an in-process worker takes them all through verify, validate, route, deliver (file target) and
  acknowledge: µs per message;
* **seal + open**: the AES-256-GCM work alone (one seal at intake, one open per stage run), µs per message.

A last row streams a 64 MiB attachment into the blob store, moved as it is vs sealed in 1 MiB segments (MB/s).

    .venv/bin/python scripts/bench/encryption.py [--messages 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, postgres_url, report

from hub import migrate, sealing, store
from hub.blobs import BlobStore
from hub.db import make_engine
from xhub.config import HubConfig
from xhub.runtime import install_keyring, make_worker

XBAU = ROOT / "tests/fixtures/xoev/xbau-2.6/constructed_prozessnachrichten.eingangsbestaetigung.1120.xml"


def _json_mib() -> bytes:
    row = {"familienname": "Musterfrau", "vorname": "Erika", "strasse": "Maximilianstraße", "hausnummer": "12a"}
    rows = json.dumps(row).encode()
    return b'{"rows": [' + b",".join([rows] * (1024 * 1024 // (len(rows) + 1))) + b"]}"


PAYLOADS: dict[str, tuple[bytes, str]] = {
    "xbau 4 KiB": (XBAU.read_bytes(), "application/xml"),
    "json 1 MiB": (_json_mib(), "application/json"),
}


def _config(db_url: str, workdir: Path, key: Path | None) -> HubConfig:
    storage: dict[str, Any] = {"blob_dir": str(workdir / "blobs")}
    if key is not None:
        storage["master_key_file"] = str(key)
    return HubConfig.model_validate({
        "database": {"url": db_url}, "storage": storage, "rules_dir": str(workdir / "rules"),
        "worker": {"poll_interval_seconds": 0.01},
        "targets": {"outbox": {"adapter": "file", "directory": str(workdir / "outbox")}},
        "routes": [{"name": "all", "targets": ["outbox"], "not_checked": "pass"}],
    })


def _round(db_url: str, workdir: Path, key: Path | None, body: bytes, content_type: str,
           n: int) -> tuple[float, float]:
    """(intake µs/msg, delivery µs/msg) on a fresh schema."""
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    config = _config(db_url, workdir, key)
    install_keyring(config, engine, env={})
    start = time.perf_counter()
    for i in range(n):
        store.accept(engine, store.NewMessage("bench", "rest", "bench", [store.Part("payload", content_type, body)],
                                              idempotency_key=f"bench-{i}"), actor="sender:bench")
    intake = (time.perf_counter() - start) / n * 1e6
    worker = make_worker(config, engine)
    start = time.perf_counter()
    handled = worker.run(exit_when_idle=True)
    delivery = (time.perf_counter() - start) / n * 1e6
    worker.channels.close()
    sealing.install(engine, None)
    engine.dispose()
    delivered = sum(1 for _ in (workdir / "outbox").iterdir())
    if delivered != n:
        raise RuntimeError(f"only {delivered} of {n} messages were delivered ({handled})")
    return intake, delivery


def _reset(db_url: str, fresh: Callable[[], str | None], workdir: Path) -> str:
    for folder in ("outbox", "blobs"):
        target = workdir / folder
        if target.exists():
            for p in sorted(target.rglob("*"), reverse=True):
                p.rmdir() if p.is_dir() else p.unlink()
    url = fresh() if db_url.startswith("postgresql") else db_url
    if url is None:
        raise RuntimeError("PostgreSQL went away")
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    return url


def _crypto_only(body: bytes, engine_url: str, key: Path, n: int) -> float:
    engine = make_engine(engine_url)
    migrate.upgrade(engine)
    keyring = sealing.Keyring(engine, sealing.MasterKey.from_file(key))
    mid = uuid.uuid4()
    keyring.open(*_seal(keyring, body, mid))  # warm: the key is unwrapped once per process
    start = time.perf_counter()
    for _ in range(n):
        sealed, key_id = keyring.seal(body, mid, 0)
        for _stage in range(3):  # verify, validate (cached), deliver read the parts once per run; a retry again
            keyring.open(sealed, mid, 0, key_id)
    engine.dispose()
    return (time.perf_counter() - start) / n * 1e6


def _seal(keyring: sealing.Keyring, body: bytes, mid: uuid.UUID) -> tuple[bytes, uuid.UUID, int, int]:
    sealed, key_id = keyring.seal(body, mid, 0)
    return sealed, mid, 0, key_id


def _blob_rate(workdir: Path, key: Path, db_url: str, size: int = 64 * 1024 * 1024) -> tuple[float, float]:
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    keyring = sealing.Keyring(engine, sealing.MasterKey.from_file(key))
    blobs = BlobStore(workdir / "blobs")
    rates = []
    for ring in (None, keyring):
        source = workdir / f"upload-{uuid.uuid4().hex}"
        with open(source, "wb") as fh:
            for _ in range(size // (1024 * 1024)):
                fh.write(b"%PDF " * (1024 * 1024 // 5) + b"x" * (1024 * 1024 % 5))
        mid = uuid.uuid4()
        start = time.perf_counter()
        blobs.put(mid, 2, source, ring)
        rates.append(size / (time.perf_counter() - start) / 1e6)
        blobs.remove(mid)
    engine.dispose()
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("xhub.runtime").setLevel(logging.ERROR)  # the plain rounds' "no master key" warning
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="xhub-bench-encryption-") as tmp:
        workdir = Path(tmp)
        key = workdir / "master.key"
        sealing.MasterKey.write_new(key)
        backends: list[tuple[str, str, Callable[[], str | None]]] = [
            ("sqlite", f"sqlite:///{workdir / 'bench.db'}", lambda: None)]
        pg = postgres_url("xhub_bench_encryption")
        if pg is not None:
            backends.append(("postgresql", pg, lambda: postgres_url("xhub_bench_encryption")))
        for backend, url, fresh in backends:
            for name, (body, content_type) in PAYLOADS.items():
                n = args.messages if len(body) < 100_000 else max(10, args.messages // 5)
                measured: dict[str, list[tuple[float, float]]] = {"plain": [], "sealed": []}
                url = _reset(url, fresh, workdir)
                _round(url, workdir, key, body, content_type, min(n, 10))  # warm-up: schemas compiled, key unwrapped
                for _ in range(args.rounds):
                    for mode, k in (("plain", None), ("sealed", key)):
                        url = _reset(url, fresh, workdir)
                        measured[mode].append(_round(url, workdir, k, body, content_type, n))
                for index, stage in enumerate(("intake", "delivery")):
                    plain = statistics.median(m[index] for m in measured["plain"])
                    sealed = statistics.median(m[index] for m in measured["sealed"])
                    rows.append({"backend": backend, "payload": name, "stage": stage, "messages": n,
                                 "plain_us": round(plain), "sealed_us": round(sealed),
                                 "added_us": round(sealed - plain), "ratio": round(sealed / plain, 3)})
                url = _reset(url, fresh, workdir)
                rows.append({"backend": "-", "payload": name, "stage": "seal + 3 opens", "messages": n,
                             "plain_us": 0, "sealed_us": round(_crypto_only(body, url, key, n), 1),
                             "added_us": "", "ratio": ""})
        url = _reset(f"sqlite:///{workdir / 'bench.db'}", lambda: None, workdir)
        plain_rate, sealed_rate = _blob_rate(workdir, key, url)
        rows.append({"backend": "-", "payload": "blob 64 MiB", "stage": "into the blob store (MB/s)", "messages": 1,
                     "plain_us": round(plain_rate), "sealed_us": round(sealed_rate), "added_us": "",
                     "ratio": round(plain_rate / sealed_rate, 2)})
    report("encryption", [("backend", "backend"), ("payload", "payload"), ("stage", "stage"),
                          ("messages", "msgs"), ("plain_us", "plain µs/msg"), ("sealed_us", "sealed µs/msg"),
                          ("added_us", "added µs"), ("ratio", "ratio")], rows,
           ROOT / "scripts/bench/results/encryption.json",
           extra={"rounds": args.rounds, "note": "median of alternating plain/sealed rounds in one run; the blob "
                  "row is MB/s (plain: a move on the same file system, sealed: read, encrypt, write, fsync)"})


if __name__ == "__main__":
    main()
