"""Benchmark: intake throughput and end-to-end throughput of the minimal pipeline, SQLite and PostgreSQL.

For each backend:

1. ``xhub serve --no-worker`` in its own process; ``--clients`` concurrent HTTP clients POST ``--messages``
   XBau messages to the REST intake. Reported: messages/s *committed* (each 202 comes after the commit).
2. ``--workers`` ``xhub worker --exit-when-idle`` processes drain the queue through verify → validate →
   route → deliver (file target) → acknowledge. Reported: messages/s from first claim to last ack.

Prints a table and writes JSON (``--out``). Needs a reachable PostgreSQL for the PostgreSQL rows
(``HUB_BENCH_POSTGRES_URL``, default the local server); skips them with a note otherwise.

    .venv/bin/python scripts/bench/intake.py [--messages 1000] [--clients 16] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
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
from hub.models import Event, Message

SAMPLE = ROOT / "tests/fixtures/xoev/xbau-2.6/constructed_prozessnachrichten.eingangsbestaetigung.1120.xml"
TOKEN = "bench-token"


def write_config(workdir: Path, url: str, port: int) -> Path:
    path = workdir / "hub.toml"
    path.write_text(
        f"""
rules_dir = "{workdir / 'rules'}"

[database]
url = "{url}"
[api]
port = {port}
max_body_bytes = 1048576
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


async def post_all(base: str, n: int, clients: int, body: bytes) -> float:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/xml"}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            r = await client.post("/api/v1/messages", content=body, headers={**headers, "Idempotency-Key": f"b-{i}"})
            if r.status_code != 202:
                raise RuntimeError(f"intake answered {r.status_code}: {r.text}")

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        return time.perf_counter() - start


def pipeline_window(url: str) -> tuple[int, float]:
    """(acknowledged messages, seconds from the first worker event to the last acknowledgement).

    Read from the event trail, so process start-up and the idle exit are not counted.
    """
    engine = make_engine(url)
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(Message).where(Message.status == "acknowledged")).scalar()
        first = conn.execute(select(func.min(Event.at)).where(Event.actor.like("worker:%"))).scalar()
        last = conn.execute(select(func.max(Event.at)).where(Event.to_status == "acknowledged")).scalar()
    engine.dispose()
    return int(n or 0), (last - first).total_seconds()


def run_backend(name: str, url: str, args: argparse.Namespace, workers: int) -> dict[str, Any]:
    body = SAMPLE.read_bytes()
    with tempfile.TemporaryDirectory(prefix=f"xhub-bench-{name}-") as tmp:
        workdir = Path(tmp)
        if name == "sqlite":
            url = f"sqlite:///{workdir / 'hub.db'}"
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        port = free_port()
        config = write_config(workdir, url, port)
        server = subprocess.Popen(xhub(config, "serve", "--no-worker"))
        try:
            wait_http(f"http://127.0.0.1:{port}/health")
            seconds = asyncio.run(post_all(f"http://127.0.0.1:{port}", args.messages, args.clients, body))
        finally:
            server.terminate()
            server.wait(timeout=30)
        procs = [subprocess.Popen(xhub(config, "worker", "--exit-when-idle")) for _ in range(workers)]
        for p in procs:
            if p.wait(timeout=3600) != 0:
                raise RuntimeError("a worker failed")
        done, pipeline_seconds = pipeline_window(url)
        if done != args.messages:
            raise RuntimeError(f"only {done} of {args.messages} messages were acknowledged")
    return {
        "backend": name,
        "workers": workers,
        "messages": args.messages,
        "clients": args.clients,
        "intake_seconds": round(seconds, 3),
        "intake_msgs_per_s": round(args.messages / seconds, 1),
        "pipeline_seconds": round(pipeline_seconds, 3),
        "pipeline_msgs_per_s": round(args.messages / pipeline_seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "bench" / "results" / "intake.json")
    args = parser.parse_args()
    rows = []
    for backend in args.backends:
        for workers in args.workers:
            if backend == "postgres":
                url = postgres_url("xhub_bench")
                if url is None:
                    continue
            else:
                url = ""
            rows.append(run_backend(backend, url, args, workers))
    columns = [("backend", "backend"), ("workers", "workers"), ("messages", "messages"),
               ("intake_msgs_per_s", "intake msg/s"), ("pipeline_msgs_per_s", "pipeline msg/s")]
    report("intake", columns, rows, args.out, {"payload_bytes": len(SAMPLE.read_bytes())})


if __name__ == "__main__":
    main()
