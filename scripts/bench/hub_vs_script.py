"""``make bench``: the hub end to end against a naive script, in one run, on the same messages and target.

What runs (all on this machine, one after another, each phase on a fresh database):

1. **naive script** (``naive_script.py``): xmlschema validate + httpx POST, one process, no durability.
2. **hub on PostgreSQL**, ``xhub serve --no-worker`` + 2 ``xhub worker`` processes, then the same with 1 worker
   (scaling 1 → 2): the load generator (``loadgen.py``, its own process) posts every message to the REST intake
   with 16 concurrent senders, as fast as the hub takes them.
3. **hub embedded on SQLite**: ``xhub serve`` with its embedded worker, one process, the same load.
4. **offered load** (PostgreSQL, 2 workers): open-loop rates at fractions of the maximum measured in 2.;
   achieved throughput and latency percentiles per rate (p99 at half the maximum is a goal of issue 16).
5. **target outage** (PostgreSQL, 2 workers): the target answers 503 for ``BENCH_OUTAGE_SECONDS`` while messages
   arrive; events per waiting message during the outage, and every message delivered after it.

Figures: throughput = delivered messages / (last ``delivered`` event - first ``received`` event) of the measured
messages; latency = ``received`` → ``delivered`` event per message; hub CPU = CPU seconds of the API process,
the worker processes and the database's PostgreSQL backends (``pg_stat_activity`` by database name) while the
phase ran, per delivered message. The load generator's and the target's CPU are not the hub's. Every message
goes to the same target stand-in (nginx answering 201, see ``harness.py``).

Sizes come from the environment (``BENCH_QUICK=1`` for a short run):

    BENCH_MESSAGES=3000 BENCH_CONCURRENCY=16 BENCH_STEP_SECONDS=8 BENCH_RATES=0.25,0.5,0.75,1,1.25
    BENCH_OUTAGE_MESSAGES=200 BENCH_OUTAGE_SECONDS=30 BENCH_POLL=0.2 BENCH_OUT=docs/benchmarks

Writes ``$BENCH_OUT/hub_vs_script.json`` and four PNG charts there; prints the tables.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from harness import (
    Backends,
    CpuMeter,
    Hub,
    Nginx,
    drop_database,
    env_float,
    env_int,
    fresh_database,
    load,
    make_messages,
    percentiles,
    target_stand_in,
    trail,
    wait_done,
)

ROOT = Path(__file__).resolve().parents[2]
QUICK = os.environ.get("BENCH_QUICK") == "1"
MESSAGES = env_int("BENCH_MESSAGES", 300 if QUICK else 3000)
CONCURRENCY = env_int("BENCH_CONCURRENCY", 16)
STEP_SECONDS = env_float("BENCH_STEP_SECONDS", 3 if QUICK else 8)
RATES = [float(r) for r in os.environ.get("BENCH_RATES", "0.25,0.5,0.75,1,1.25").split(",")]
OUTAGE_MESSAGES = env_int("BENCH_OUTAGE_MESSAGES", 50 if QUICK else 200)
OUTAGE_SECONDS = env_float("BENCH_OUTAGE_SECONDS", 12 if QUICK else 30)
POLL = env_float("BENCH_POLL", 0.2)
WARMUP = env_int("BENCH_WARMUP", 30)
OUT = Path(os.environ.get("BENCH_OUT", ROOT / "docs" / "benchmarks"))
DRAIN_TIMEOUT = env_float("BENCH_DRAIN_TIMEOUT", 3600)


class Phase:
    """A running hub and what one measured load on it cost."""

    def __init__(self, name: str, target: Nginx, tmp: Path, engine: str, workers: int) -> None:
        self.name, self.target, self.tmp, self.engine = name, target, tmp / name, engine
        self.db = fresh_database(f"xhub_bench_{name}", engine, self.tmp)
        self.hub = Hub(self.db, target.url, self.tmp, workers=workers, embedded=engine == "sqlite",
                       poll_seconds=POLL).prepare().start()
        self.backends = Backends(self.db) if engine == "postgres" else None
        self.batch = 0
        self.send(WARMUP)  # connections open, schemas compiled, caches warm: not measured

    def files(self, n: int) -> list[Path]:
        self.batch += 1
        return make_messages(self.tmp / f"batch{self.batch}", n)

    def send(self, n: int, rate: float | None = None) -> list[str]:
        out = self.tmp / f"load{self.batch + 1}.json"
        summary = load(self.hub.url, self.files(n), out, concurrency=CONCURRENCY, rate=rate)
        ids = [i for i in summary["ids"] if i]
        if len(ids) != n:
            raise RuntimeError(f"{self.name}: the hub accepted {len(ids)} of {n} messages ({summary['refused']})")
        if not wait_done(self.db, ids, DRAIN_TIMEOUT):
            raise RuntimeError(f"{self.name}: not every message was delivered within {DRAIN_TIMEOUT}s")
        return ids

    def measure(self, n: int, rate: float | None = None) -> dict[str, Any]:
        groups: dict[str, Any] = {"api": self.hub.api_pids, "workers": self.hub.worker_pids}
        if self.backends is not None:
            groups["postgres"] = self.backends
        before = self.backends.counters() if self.backends else {}
        meter = CpuMeter(groups).start()
        ids = self.send(n, rate)
        cpu = meter.stop()
        after = self.backends.counters() if self.backends else {}
        t = trail(self.db)
        lat = percentiles(t.latencies_ms(ids))
        row: dict[str, Any] = {
            "messages": n, "delivered_per_s": round(t.throughput(ids), 1),
            **{f"latency_{k}_ms": v for k, v in lat.items()},
            **{f"cpu_{k}_ms_per_msg": round(v * 1000 / n, 2) for k, v in cpu.items()},
            "cpu_hub_ms_per_msg": round(sum(cpu.values()) * 1000 / n, 2),
            "events_per_msg": round(sum(t.events[i] for i in ids) / n, 2),
        }
        if before:
            row["db_per_msg"] = {k: round((after[k] - before[k]) / n, 2) for k in before}
            row["db_per_msg"]["wal_bytes_note"] = "server-wide WAL: includes any other activity on the server"
        if rate:
            row["offered_per_s"] = round(rate, 1)
        return row

    def close(self) -> None:
        self.hub.stop()
        if self.backends is not None:
            self.backends.close()
        drop_database(self.db)


def naive(target: Nginx, tmp: Path) -> dict[str, Any]:
    files = make_messages(tmp / "naive", MESSAGES)
    listing, out = tmp / "naive.files", tmp / "naive.json"
    listing.write_text("\n".join(map(str, files)), encoding="utf-8")
    subprocess.run([sys.executable, str(Path(__file__).parent / "naive_script.py"), "--files", str(listing),
                    "--url", target.url, "--out", str(out)], check=True)
    r = json.loads(out.read_text(encoding="utf-8"))
    if r["delivered"] != MESSAGES:
        raise RuntimeError(f"the naive script delivered {r['delivered']} of {MESSAGES}: {r}")
    return {"messages": MESSAGES, "delivered_per_s": round(r["delivered"] / r["seconds"], 1),
            "cpu_hub_ms_per_msg": round(r["cpu_seconds"] * 1000 / r["delivered"], 2)}


def outage(target: Nginx, tmp: Path) -> dict[str, Any]:
    """Messages arrive while the target answers 503; how many events each one gathers while it waits."""
    phase = Phase("outage", target, tmp, "postgres", 2)
    try:
        target.outage(True)
        began = datetime.now(UTC)
        out = tmp / "outage-load.json"
        summary = load(phase.hub.url, phase.files(OUTAGE_MESSAGES), out, concurrency=CONCURRENCY)
        ids = [i for i in summary["ids"] if i]
        time.sleep(max(0.0, OUTAGE_SECONDS - (datetime.now(UTC) - began).total_seconds()))
        ended = datetime.now(UTC)
        target.outage(False)
        drained = wait_done(phase.db, ids, DRAIN_TIMEOUT)
        t = trail(phase.db)

        def utc(at: datetime) -> datetime:
            return at if at.tzinfo else at.replace(tzinfo=UTC)

        during = [sum(1 for at in t.times[i] if began <= utc(at) <= ended) for i in ids]
        refused = sum(1 for d in target.deliveries() if d.status == 503)
        return {"messages": len(ids), "outage_s": round((ended - began).total_seconds(), 1),
                "events_per_msg_during": round(sum(during) / max(1, len(during)), 2),
                "events_per_msg_during_max": max(during, default=0),
                "events_per_msg_total": round(sum(t.events[i] for i in ids) / max(1, len(ids)), 2),
                "target_calls_during_outage": refused, "all_delivered_after": drained}
    finally:
        target.outage(False)
        phase.close()


def table(columns: list[tuple[str, str]], rows: list[dict[str, Any]]) -> None:
    widths = [max(len(h), *(len(str(r.get(k, ""))) for r in rows)) for k, h in columns]
    print("  ".join(h.rjust(w) for (_, h), w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(r.get(k, "")).rjust(w) for (k, _), w in zip(columns, widths, strict=True)))
    print()


def charts(result: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    main, steps, script = result["rows"], result["offered_load"], result["rows"][0]

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    offered = [s["offered_per_s"] for s in steps]
    ax.plot(offered, [s["delivered_per_s"] for s in steps], "o-", label="hub, PostgreSQL, 2 workers")
    ax.plot(offered, offered, ":", color="grey", label="offered = delivered")
    ax.axhline(script["delivered_per_s"], color="tab:red", linestyle="--", label="naive script (max)")
    ax.set(xlabel="offered load (messages/s)", ylabel="delivered (messages/s)", title="Throughput vs offered load")
    ax.legend()
    written.append(_save(fig, "throughput_vs_offered_load.png"))

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    width = 0.25
    for k, p in enumerate(("p50", "p90", "p99")):
        ax.bar([i + k * width for i in range(len(steps))], [s[f"latency_{p}_ms"] for s in steps], width, label=p)
    ax.set_xticks([i + width for i in range(len(steps))], [f"{s['offered_per_s']:g}/s" for s in steps])
    ax.set(xlabel="offered load", ylabel="intake → delivered (ms)", title="Latency percentiles (PostgreSQL)")
    ax.set_yscale("log")
    ax.legend()
    written.append(_save(fig, "latency_percentiles.png"))

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    labels = [r["what"] for r in main]
    bottom = [0.0] * len(main)
    for part in ("api", "workers", "postgres"):
        values = [r.get(f"cpu_{part}_ms_per_msg", 0.0) for r in main]
        ax.bar(labels, values, bottom=bottom, label=part)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.bar(labels[:1], [script["cpu_hub_ms_per_msg"]], label="script (one process)")
    ax.set(ylabel="CPU ms per delivered message", title="CPU per message")
    ax.tick_params(axis="x", labelrotation=15)
    ax.legend()
    written.append(_save(fig, "cpu_per_message.png"))

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    scaling = result["scaling"]
    ax.bar([f"{s['workers']} worker{'s' if s['workers'] > 1 else ''}" for s in scaling],
           [s["delivered_per_s"] for s in scaling])
    ax.axhline(script["delivered_per_s"], color="tab:red", linestyle="--", label="naive script")
    ax.set(ylabel="delivered (messages/s)", title="Scaling 1 → 2 workers (PostgreSQL)")
    ax.legend()
    written.append(_save(fig, "scaling_workers.png"))
    return written


def _save(fig: Any, name: str) -> str:
    fig.tight_layout()
    path = OUT / name
    fig.savefig(path, dpi=110)
    return str(path)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    target = target_stand_in()
    print(f"target stand-in: {target.kind}; {MESSAGES} messages, {CONCURRENCY} concurrent senders\n", flush=True)
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="xhub-bench-") as tmp_name:
            tmp = Path(tmp_name)
            rows.append({"what": "naive script", **naive(target, tmp)})
            print(f"naive script: {rows[-1]['delivered_per_s']} msg/s", flush=True)
            for name, engine, workers in (("pg2", "postgres", 2), ("pg1", "postgres", 1), ("sqlite", "sqlite", 0)):
                phase = Phase(name, target, tmp, engine, workers)
                try:
                    label = {"pg2": "hub PostgreSQL, 2 workers", "pg1": "hub PostgreSQL, 1 worker",
                             "sqlite": "hub embedded SQLite"}[name]
                    rows.append({"what": label, "workers": workers, **phase.measure(MESSAGES)})
                    print(f"{label}: {rows[-1]['delivered_per_s']} msg/s", flush=True)
                finally:
                    phase.close()
            top = rows[1]["delivered_per_s"]
            steps = []
            phase = Phase("steps", target, tmp, "postgres", 2)
            try:
                for fraction in RATES:
                    rate = max(1.0, top * fraction)
                    steps.append({"fraction": fraction, **phase.measure(max(20, int(rate * STEP_SECONDS)), rate)})
                    print(f"offered {rate:.1f}/s: delivered {steps[-1]['delivered_per_s']} msg/s, "
                          f"p99 {steps[-1]['latency_p99_ms']} ms", flush=True)
            finally:
                phase.close()
            waiting = outage(target, tmp)
    finally:
        target.stop()

    script = rows[0]
    for r in rows:
        r["x_script_throughput"] = round(r["delivered_per_s"] / script["delivered_per_s"], 3)
        r["x_script_cpu"] = round(r["cpu_hub_ms_per_msg"] / script["cpu_hub_ms_per_msg"], 2)
    scaling = [{"workers": r["workers"], "delivered_per_s": r["delivered_per_s"]} for r in (rows[2], rows[1])]
    half = min(steps, key=lambda s: abs(s["fraction"] - 0.5))
    result = {
        "benchmark": "hub_vs_script",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_at_end": os.getloadavg()},
        "target_stand_in": target.kind,
        "settings": {"messages": MESSAGES, "concurrency": CONCURRENCY, "poll_interval_seconds": POLL,
                     "warmup": WARMUP, "rates": RATES, "step_seconds": STEP_SECONDS},
        "rows": rows,
        "offered_load": steps,
        "scaling": scaling,
        "outage": waiting,
        "goals": {
            "throughput_pg_x_script": rows[1]["x_script_throughput"],
            "cpu_hub_ms_per_msg_pg": rows[1]["cpu_hub_ms_per_msg"],
            "p99_ms_at_half_max": half["latency_p99_ms"],
            "sqlite_msg_per_s": rows[3]["delivered_per_s"],
            "events_per_waiting_msg_during_outage": waiting["events_per_msg_during"],
            "scaling_2_over_1_workers": round(rows[1]["delivered_per_s"] / max(0.1, rows[2]["delivered_per_s"]), 2),
        },
    }
    result["charts"] = [Path(c).name for c in charts(result)]
    path = OUT / "hub_vs_script.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    print()
    table([("what", "what"), ("delivered_per_s", "msg/s"), ("x_script_throughput", "x script"),
           ("cpu_api_ms_per_msg", "API ms"), ("cpu_workers_ms_per_msg", "workers ms"),
           ("cpu_postgres_ms_per_msg", "PG ms"), ("cpu_hub_ms_per_msg", "CPU ms/msg"), ("x_script_cpu", "x script"),
           ("latency_p50_ms", "p50 ms"), ("latency_p99_ms", "p99 ms"), ("events_per_msg", "events/msg")], rows)
    table([("offered_per_s", "offered/s"), ("delivered_per_s", "delivered/s"), ("latency_p50_ms", "p50 ms"),
           ("latency_p90_ms", "p90 ms"), ("latency_p99_ms", "p99 ms"), ("cpu_hub_ms_per_msg", "CPU ms/msg")], steps)
    table([(k, k) for k in waiting], [waiting])
    print("goals:", json.dumps(result["goals"]))
    print(f"\nwritten {path} and {', '.join(result['charts'])}")


if __name__ == "__main__":
    main()
