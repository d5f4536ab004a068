"""End to end, in one run: the hub on PostgreSQL (``xhub serve --no-worker`` + 2 ``xhub worker``), the hub
embedded on SQLite (``xhub serve``, one process), and a naive script (lxml XSD validation + httpx POST, one
process, no durability), on the same XGewerbesteuer messages (~1.9 KB) and the same target stand-in
(``sink201.py``, its own process).

The load generator (this process, ``--senders`` concurrent HTTP clients, each message with an
Idempotency-Key) is not counted as the hub's CPU. Counted: the hub's processes (``/proc/<pid>/stat``) and
the PostgreSQL backends serving them. Throughput: messages / (first POST → last ``acknowledged`` event).
The ``http-floor`` row is uvicorn + FastAPI answering ``202`` and doing nothing else: what any Python HTTP
intake costs here before it stores anything. Latency: per message, ``received`` event → ``acknowledged``
event; ``--rate`` paces the senders (offered load in msg/s; 0 = as fast as they can).

    .venv/bin/python scripts/bench/e2e.py [--messages 3000] [--senders 16] [--rate 0]
                                          [--only postgres,sqlite,script,floor]
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
from sqlalchemy import func, select, text

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, free_port, percentile, postgres_url, proc_cpu, report, wait_http, xhub

from hub import migrate
from hub.auth import hash_token
from hub.db import make_engine
from hub.models import Event, Message

SAMPLES = sorted((ROOT / "tests/fixtures/xoev/xgewerbesteuer-1.4").glob("*.xml"))
XSD = ROOT / "xsd/xgewerbesteuer-1.4/gewerbesteuer.xsd"
TOKEN = "bench-token"


def write_config(workdir: Path, url: str, port: int, sink: str) -> Path:
    path = workdir / "hub.toml"
    path.write_text(f"""rules_dir = "{workdir / 'rules'}"
[database]
url = "{url}"
[api]
port = {port}
[[senders]]
name = "bench"
tenant = "bench"
token_sha256 = "{hash_token(TOKEN)}"
[targets.sink]
adapter = "rest"
url = "{sink}/in"
[[routes]]
name = "all"
targets = ["sink"]
not_checked = "pass"
""", encoding="utf-8")
    return path


async def send(base: str, n: int, senders: int, rate: float) -> float:
    bodies = [p.read_bytes() for p in SAMPLES]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/xml"}
    counter = iter(range(n))
    started = time.perf_counter()

    async def sender(client: httpx.AsyncClient) -> None:
        for i in counter:
            if rate:
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            r = await client.post("/api/v1/messages", content=bodies[i % len(bodies)],
                                  headers={**headers, "Idempotency-Key": f"e2e-{i}"})
            if r.status_code != 202:
                raise RuntimeError(f"intake answered {r.status_code}: {r.text[:200]}")

    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        await asyncio.gather(*(sender(client) for _ in range(senders)))
    return started


def hub_run(name: str, url: str, sink: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = write_config(Path(tmp), url, port, sink)
        engine = make_engine(url)
        migrate.upgrade(engine)
        embedded = name == "sqlite"
        procs = [subprocess.Popen(xhub(config, "serve", *([] if embedded else ["--no-worker"])))]
        procs += [subprocess.Popen(xhub(config, "worker")) for _ in range(0 if embedded else args.workers)]
        try:
            wait_http(f"http://127.0.0.1:{port}/health/live")
            time.sleep(1.0)
            backends = _backends(engine, url)
            api0, workers0 = proc_cpu([procs[0].pid]), proc_cpu([p.pid for p in procs[1:]])
            pg0 = proc_cpu(backends)
            t0 = time.time()
            asyncio.run(send(f"http://127.0.0.1:{port}", args.messages, args.senders, args.rate))
            deadline = time.monotonic() + 600
            while _acknowledged(engine) < args.messages:
                if time.monotonic() > deadline:
                    raise RuntimeError("not all messages were acknowledged")
                time.sleep(0.05)
            pg = proc_cpu(sorted(set(backends) | set(_backends(engine, url)))) - pg0
            api, workers = proc_cpu([procs[0].pid]) - api0, proc_cpu([p.pid for p in procs[1:]]) - workers0
            with engine.connect() as conn:
                last = conn.execute(select(func.max(Event.at)).where(Event.to_status == "acknowledged")).scalar()
                received = dict(conn.execute(select(Event.message_id, Event.at).where(
                    Event.to_status == "received", Event.from_status.is_(None))).all())
                acked = dict(conn.execute(select(Event.message_id, Event.at).where(
                    Event.to_status == "acknowledged")).all())
            assert last is not None
            wall = last.timestamp() - t0
            latencies = [(acked[m] - received[m]).total_seconds() * 1000 for m in acked]
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=60)
            engine.dispose()
    row = _row(name, args.messages, wall, api + workers + pg, latencies)
    n = args.messages
    row.update(api_ms=round(api * 1000 / n, 2), workers_ms=round(workers * 1000 / n, 2), pg_ms=round(pg * 1000 / n, 2))
    return row


FLOOR_APP = """
import sys, uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
app = FastAPI()
@app.get("/health/live")
def live() -> dict: return {"ok": True}
@app.post("/api/v1/messages")
async def take(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"status": "received"}, status_code=202)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def floor_run(args: argparse.Namespace) -> dict[str, Any]:
    """The floor of any Python HTTP intake here: uvicorn + FastAPI answering 202 without doing anything."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", FLOOR_APP, str(port)])
    try:
        wait_http(f"http://127.0.0.1:{port}/health/live")
        cpu0, t0 = proc_cpu([proc.pid]), time.perf_counter()
        asyncio.run(send(f"http://127.0.0.1:{port}", args.messages, args.senders, 0))
        wall, cpu = time.perf_counter() - t0, proc_cpu([proc.pid]) - cpu0
    finally:
        proc.terminate()
        proc.wait()
    return {**_row("http-floor", args.messages, wall, cpu, [0.0]), "api_ms": round(cpu * 1000 / args.messages, 2),
            "p50_ms": "", "p99_ms": ""}


def _backends(engine: Any, url: str) -> list[int]:
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        me = conn.execute(text("select pg_backend_pid()")).scalar()
        return [pid for pid in conn.execute(text(
            "select pid from pg_stat_activity where datname = current_database()")).scalars() if pid != me]


def _acknowledged(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(Message.status == "acknowledged")).scalar() or 0)


def script_run(sink: str, n: int) -> dict[str, Any]:
    """The naive script: parse, validate against the XSD, POST; one process, nothing stored."""
    from lxml import etree

    schema = etree.XMLSchema(etree.parse(str(XSD)))
    bodies = [p.read_bytes() for p in SAMPLES]
    cpu0, t0 = time.process_time(), time.perf_counter()
    latencies = []
    with httpx.Client(timeout=30) as client:
        for i in range(n):
            start = time.perf_counter()
            body = bodies[i % len(bodies)]
            if not schema.validate(etree.fromstring(body)):
                raise RuntimeError("invalid sample")
            r = client.post(f"{sink}/in", content=body, headers={"Idempotency-Key": f"script-{i}",
                                                                  "Content-Type": "application/xml"})
            r.raise_for_status()
            latencies.append((time.perf_counter() - start) * 1000)
    return _row("script", n, time.perf_counter() - t0, time.process_time() - cpu0, latencies)


def _row(name: str, n: int, wall: float, cpu: float, latencies: list[float]) -> dict[str, Any]:
    return {"what": name, "msg_s": round(n / wall), "cpu_ms": round(cpu * 1000 / n, 2),
            "p50_ms": round(percentile(latencies, 50), 1), "p99_ms": round(percentile(latencies, 99), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--only", default="postgres,sqlite,script,floor")
    parser.add_argument("--out", type=Path, default=ROOT / "scripts/bench/results/e2e.json")
    args = parser.parse_args()
    sink_port = free_port()
    sink_proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "sink201.py"), str(sink_port)])
    sink = f"http://127.0.0.1:{sink_port}"
    rows = []
    try:
        wait_http(f"{sink}/stats")
        for what in args.only.split(","):
            if what == "script":
                rows.append(script_run(sink, args.messages))
            elif what == "floor":
                rows.append(floor_run(args))
            elif what == "postgres":
                url = postgres_url("xhub_bench_e2e")
                if url:
                    rows.append(hub_run("postgres", url, sink, args))
            elif what == "sqlite":
                with tempfile.TemporaryDirectory() as tmp:
                    rows.append(hub_run("sqlite", f"sqlite:///{tmp}/hub.db", sink, args))
        duplicates = httpx.get(f"{sink}/stats").json()["duplicates"]
    finally:
        sink_proc.terminate()
        sink_proc.wait()
    script = next((r for r in rows if r["what"] == "script"), None)
    for r in rows:
        r["vs_script"] = round(r["msg_s"] / script["msg_s"], 2) if script else ""
    columns = [("what", "what"), ("msg_s", "msg/s"), ("vs_script", "x script"), ("cpu_ms", "CPU ms/msg"),
               ("api_ms", "API"), ("workers_ms", "workers"), ("pg_ms", "PostgreSQL"),
               ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms")]
    report("e2e", columns, rows, args.out, {"messages": args.messages, "senders": args.senders,
                                             "rate": args.rate, "duplicates_at_target": duplicates})


if __name__ == "__main__":
    main()
