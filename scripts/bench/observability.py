"""Benchmark: what observability costs: per message on the hot path, per scrape, per log line.

1. **Hooks per message**: what one message that goes through every stage to one target records (the status
   counter for 5 transitions, 5 stage timings, 1 delivery outcome and call timing, the log context and the
   no-op spans), in a fresh process per mode, best of five rounds: ``baseline`` (the same loop without the
   hooks), ``memory`` (prometheus-client counting in memory) and ``multiprocess`` (counting into mmap files,
   as ``xhub serve`` and ``xhub worker`` do). Reported: microseconds per message and the overhead over the baseline.
2. **A scrape**: ``StoreCollector`` reading the database facts (queue, oldest, circuits, loops) from SQLite and,
   if available, PostgreSQL holding ``--waiting`` unfinished and ``--finished`` finished messages (the
   finished ones must not make a scrape slower: only the status index is read). Reported: p50/p99 ms.
3. **A log line**: one record through the JSON formatter (structlog) against the stdlib's plain formatter.

    .venv/bin/python scripts/bench/observability.py [--messages 20000] [--waiting 10000] [--finished 200000]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, percentile, postgres_url, report

from hub import migrate
from hub.db import make_engine
from hub.metrics_store import StoreCollector
from hub.models import Message, utcnow

HOOKS = """
import os, sys, time
from pathlib import Path
mode, n, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3]
from hub import logcontext, metrics, tracing
if mode == "multiprocess":
    from xhub.config import HubConfig
    from xhub.observability import setup_metrics
    setup_metrics(HubConfig.model_validate({"metrics": {"directory": folder}}), clean=True)

class Adapter:
    name = "bench"
    Config = None
    def deliver(self, request):
        return None

adapter = metrics.TimedAdapter("dms", Adapter()) if mode != "baseline" else Adapter()
statuses = ("received", "validated", "routed", "delivered", "acknowledged")
stages = ("verify", "validate", "route", "deliver", "acknowledge")

def one_round():
  began = time.perf_counter()
  for i in range(n):
    if mode == "baseline":
        for stage in stages:
            time.perf_counter()
        adapter.deliver(None)
        continue
    with logcontext.bound(message_id="00000000-0000-0000-0000-000000000000", tenant="memmingen", channel="rest"), \\
            tracing.span("process"):
        for status, stage in zip(statuses, stages):
            t = time.perf_counter()
            with logcontext.bound(stage=stage), tracing.span(stage):
                pass
            metrics.observe_stage(stage, time.perf_counter() - t)
            metrics.record_status(status, tenant="memmingen", channel="rest", route="xbau")
        adapter.deliver(None)
        metrics.record_delivery("dms", "delivered")
  return (time.perf_counter() - began) / n * 1e6

print(min(one_round() for _ in range(5)))  # the best of five: the machine is shared
"""


def hooks(messages: int) -> list[dict[str, Any]]:
    rows = []
    with TemporaryDirectory() as folder:
        for mode in ("baseline", "memory", "multiprocess"):
            out = subprocess.run([sys.executable, "-c", HOOKS, mode, str(messages), folder], capture_output=True,
                                 text=True, check=True, cwd=ROOT)
            rows.append({"case": f"hooks/message {mode}", "us": round(float(out.stdout.strip()), 2)})
    base = rows[0]["us"]
    for row in rows[1:]:
        row["overhead_us"] = round(row["us"] - base, 2)
    return rows


def fill(url: str, waiting: int, finished: int) -> Any:
    engine = make_engine(url)
    migrate.upgrade(engine)
    now = utcnow()
    batch: list[dict[str, Any]] = []

    def row(i: int, status: str) -> dict[str, Any]:
        return {"id": uuid.uuid4(), "tenant": f"t{i % 5}", "channel": "rest" if i % 3 else "fitconnect",
                "sender": "portal", "content_type": "application/xml", "payload_size": 1000, "payload_sha256": "0" * 64,
                "status": status, "attempts": 0, "next_attempt_at": now - timedelta(seconds=i % 600),
                "route": f"r{i % 7}", "created_at": now, "updated_at": now}

    def flush() -> None:
        with engine.begin() as conn:
            conn.execute(Message.__table__.insert(), batch)
        batch.clear()

    for i in range(finished):
        batch.append(row(i, ("acknowledged", "rejected", "dead")[i % 3]))
        if len(batch) >= 5000:
            flush()
    for i in range(waiting):
        batch.append(row(i, ("received", "routed", "retry_wait")[i % 3]))
        if len(batch) >= 5000:
            flush()
    if batch:
        flush()
    return engine


def scrapes(label: str, url: str, waiting: int, finished: int, runs: int = 30) -> dict[str, Any]:
    engine = fill(url, waiting, finished)
    collector = StoreCollector(engine, targets=[f"target{i}" for i in range(10)], loop_kinds=["worker"], ttl=0)
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        families = list(collector.collect())
        times.append((time.perf_counter() - began) * 1000)
    engine.dispose()
    assert any(f.name == "xhub_queue_messages" for f in families)
    return {"case": f"scrape {label} ({waiting} waiting, {finished} finished)",
            "p50_ms": round(percentile(times, 50), 2), "p99_ms": round(percentile(times, 99), 2)}


def log_lines(n: int = 20000) -> list[dict[str, Any]]:
    from xhub.logsetup import setup_logging

    rows = []
    record = logging.LogRecord("hub.worker", logging.INFO, __file__, 1, "message %s → %s",
                               ("00000000-0000-0000-0000-000000000000", "acknowledged"), None)
    plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    setup_logging("info", "json", force=True)
    json_formatter = logging.getLogger().handlers[0].formatter
    logging.getLogger().handlers.clear()
    assert json_formatter is not None
    for label, formatter in (("plain (stdlib)", plain), ("json (structlog)", json_formatter)):
        sink = io.StringIO()
        began = time.perf_counter()
        for _ in range(n):
            sink.write(formatter.format(record))
        rows.append({"case": f"log line {label}", "us": round((time.perf_counter() - began) / n * 1e6, 2)})
    json.loads(json_formatter.format(record))  # it is JSON
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--waiting", type=int, default=10000)
    parser.add_argument("--finished", type=int, default=200000)
    args = parser.parse_args()
    rows = hooks(args.messages)
    with TemporaryDirectory() as folder:
        rows.append(scrapes("sqlite", f"sqlite:///{folder}/hub.db", args.waiting, 0))
        rows.append(scrapes("sqlite", f"sqlite:///{folder}/hub2.db", args.waiting, args.finished))
    pg = postgres_url("xhub_bench_observability")
    if pg:
        rows.append(scrapes("postgresql", pg, args.waiting, args.finished))
    rows += log_lines()
    report("observability", [("case", "case"), ("us", "µs"), ("overhead_us", "overhead µs"), ("p50_ms", "p50 ms"),
                             ("p99_ms", "p99 ms")], rows, ROOT / "scripts/bench/results/observability.json",
           extra={"messages": args.messages})


if __name__ == "__main__":
    main()
