"""Benchmark: memory of the hub under many concurrent maximum-size intake bodies, SQLite and PostgreSQL.

For each backend, body variant and configuration:

1. ``xhub serve`` (API with its embedded worker, as deployed by default) in its own process, on a fresh
   database, with the default ``api.max_body_bytes`` (10 MiB);
2. ``--rounds`` rounds of ``--clients`` concurrent POSTs of bodies just under that limit;
3. the worker drains every accepted message (verify parses it again, then validate, route, deliver to a
   file target, acknowledge); the measurement window ends when nothing is left to do.

The RSS of the hub's process tree is sampled every 10 ms (``/proc``, Linux); the table shows that peak and
the kernel's high-water mark of the hub process (``VmHWM``). Configurations: ``budget`` is the default
(``intake_memory_bytes`` 64 MiB, one parse thread); ``unbounded`` opens both wide (a budget of 1 TiB and 16
parse threads), the baseline in the same run. Variants: ``xml-dense`` and ``json-dense`` are what an attacker
sends (millions of tiny elements or arrays: the parsed tree is 25 to 33 times the body), ``xml-mixed`` the
worst shape measured (empty elements alternating with text: 50 times); ``xml-text`` and
``json-text`` are what portals send (a form with large base64 attachments).

Answers are counted as 202 (accepted), 503 (``intake-busy``, with Retry-After) or other (must be 0).

    .venv/bin/python scripts/bench/intake_memory.py [--rounds 3] [--clients 16] [--backends sqlite postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, free_port, postgres_url, report, wait_http, xhub

from hub import migrate
from hub.auth import hash_token
from hub.db import make_engine
from hub.models import Message
from hub.statemachine import TERMINAL

TOKEN = "bench-memory-token"
MIB = 1024 * 1024
MAX_BODY = 10 * MIB
CONFIGS = {"budget": "", "unbounded": f"intake_memory_bytes = {2 ** 40}\nintake_parse_threads = 16\n"}


def bodies(size: int) -> dict[str, tuple[str, bytes]]:
    """(content type, body) per variant, each ``size`` bytes or a little less."""
    dense_xml = b'<r xmlns="urn:bench:dense">' + b"<a/>" * ((size - 40) // 4) + b"</r>"
    mixed_xml = b'<r xmlns="urn:bench:mixed">' + b"<a/>x" * ((size - 40) // 5) + b"</r>"
    attachment = (b"QkVOQ0g=" * (MIB // 8))[: MIB - 64]
    n = (size - 4096) // MIB
    text_xml = (b'<antrag xmlns="urn:bench:text"><name>Erika Mustermann</name>'
                + b"".join(b'<anlage nr="%d">' % i + attachment + b"</anlage>" for i in range(n)) + b"</antrag>")
    dense_json = b'{"a":[' + b"[]," * ((size - 16) // 3) + b"[]]}"
    text_json = (b'{"antrag": {"name": "Erika Mustermann"}, "anlagen": ['
                 + b",".join(b'"' + attachment + b'"' for _ in range(n)) + b"]}")
    return {"xml-dense": ("application/xml", dense_xml), "xml-mixed": ("application/xml", mixed_xml),
            "xml-text": ("application/xml", text_xml),
            "json-dense": ("application/json", dense_json), "json-text": ("application/json", text_json)}


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        total += status_kib(p, "VmRSS") * 1024
    return total


def status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.01):
            self.peak = max(self.peak, tree_rss(self.pid))


def write_config(workdir: Path, url: str, port: int, extra_api: str) -> Path:
    path = workdir / "hub.toml"
    path.write_text(
        f"""
rules_dir = "{workdir / 'rules'}"
[database]
url = "{url}"
[api]
port = {port}
{extra_api}
[worker]
poll_interval_seconds = 0.05
[[senders]]
name = "bench"
tenant = "bench"
token_sha256 = "{hash_token(TOKEN)}"
[targets.outbox]
adapter = "file"
directory = "{workdir / 'outbox'}"
[[routes]]
name = "all"
targets = ["outbox"]
""",
        encoding="utf-8",
    )
    return path


async def rounds(base: str, content_type: str, body: bytes, clients: int, n: int) -> dict[str, int]:
    counts = {"202": 0, "503": 0, "other": 0}
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=300) as client:
        for _ in range(n):
            answers = await asyncio.gather(*(client.post("/api/v1/messages", content=body, headers=headers)
                                             for _ in range(clients)))
            for r in answers:
                key = str(r.status_code) if r.status_code in (202, 503) else "other"
                counts[key] += 1
                if key == "other":
                    print(f"unexpected answer {r.status_code}: {r.text[:300]}", file=sys.stderr)
    return counts


def drained(url: str, timeout: float = 900) -> None:
    engine = make_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                left = conn.execute(select(func.count()).select_from(Message)
                                    .where(Message.status.not_in([s.value for s in TERMINAL]))).scalar_one()
            if left == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("the worker did not finish the accepted messages")
    finally:
        engine.dispose()


def run_one(backend: str, variant: str, config_name: str, content_type: str, body: bytes,
            args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"xhub-bench-memory-{backend}-") as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'hub.db'}" if backend == "sqlite" else postgres_url("xhub_bench_memory")
        assert url is not None
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        port = free_port()
        server = subprocess.Popen(xhub(write_config(workdir, url, port, CONFIGS[config_name]), "serve"))
        try:
            wait_http(f"http://127.0.0.1:{port}/health")
            sampler = Sampler(server.pid)
            sampler.start()
            start = time.perf_counter()
            counts = asyncio.run(rounds(f"http://127.0.0.1:{port}", content_type, body, args.clients, args.rounds))
            drained(url)
            seconds = time.perf_counter() - start
            sampler.done.set()
            sampler.join()
            hwm = status_kib(server.pid, "VmHWM") * 1024
        finally:
            server.terminate()
            server.wait(timeout=60)
    row = {"backend": backend, "variant": variant, "config": config_name, "body_mib": round(len(body) / MIB, 2),
           "requests": args.clients * args.rounds, "accepted": counts["202"], "busy_503": counts["503"],
           "other": counts["other"], "peak_rss_mib": round(sampler.peak / MIB), "hwm_mib": round(hwm / MIB),
           "seconds": round(seconds, 1)}
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--variants", nargs="+", default=["xml-dense", "xml-mixed", "xml-text", "json-dense",
                                                           "json-text"])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "bench" / "results" / "intake_memory.json")
    args = parser.parse_args()
    if not Path("/proc/self/status").exists():
        sys.exit("this benchmark reads /proc (Linux)")
    variants = bodies(MAX_BODY - 1024)
    rows = []
    for backend in args.backends:
        if backend == "postgres" and postgres_url("xhub_bench_memory") is None:
            continue
        for variant in args.variants:
            content_type, body = variants[variant]
            for config_name in args.configs:
                rows.append(run_one(backend, variant, config_name, content_type, body, args))
    columns = [("backend", "backend"), ("variant", "variant"), ("config", "config"), ("requests", "requests"),
               ("accepted", "202"), ("busy_503", "503"), ("other", "other"), ("peak_rss_mib", "peak RSS MiB"),
               ("hwm_mib", "VmHWM MiB"), ("seconds", "s")]
    report("intake_memory", columns, rows, args.out,
           {"max_body_bytes": MAX_BODY, "rounds": args.rounds, "clients": args.clients,
            "configs": {k: v.strip().replace("\n", "; ") or "defaults" for k, v in CONFIGS.items()}})
    if any(r["other"] for r in rows):
        sys.exit("some answers were neither 202 nor 503")


if __name__ == "__main__":
    main()
