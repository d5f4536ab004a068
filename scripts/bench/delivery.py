"""Benchmark: delivery to the stand-ins on PostgreSQL, and the hub's added latency per delivery.

For each stand-in (trade register over REST, vehicle registry over SOAP), each started as its own process:

1. **Throughput**: ``--messages`` ready-to-deliver messages (the target's JSON, no mapping, so the figure
   is delivery, not mapping) are stored, then 1 and 2 ``xhub worker`` processes drain them through the
   whole pipeline into the stand-in. Reported: delivered messages/s, from the first worker event to the
   last acknowledgement (read from the event trail, so process start-up is not counted).
2. **Latency**: one worker, ``--latency-messages`` messages fed one at a time. Per message, the hub's time is
   from its first worker event to ``acknowledged`` (claim, verify, validate, route, deliver, acknowledge,
   every transaction). The same requests are sent straight to the stand-in with httpx (the SOAP one as a
   prepared envelope). Reported: p50/p99 of both and the difference: what the hub adds per delivery.

    .venv/bin/python scripts/bench/delivery.py [--messages 500] [--latency-messages 200]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, free_port, percentile, postgres_url, report, wait_http, xhub

from hub import migrate, store
from hub.db import make_engine
from hub.models import Event, Message

TRADE_CASE = ROOT / "mappings/gewerbeanzeige-to-gewerberegister/golden/anmeldung-kosit.expected.json"
VEHICLE_CASE = ROOT / "mappings/vehicle-registration-to-registry/golden/neuzulassung-wunschkennzeichen.expected.json"
SOAP_NS = "urn:xoev-hub:sandbox:vehicle-registry:1"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"


def vin() -> str:
    return "WVWZZZ1JZ" + uuid.uuid4().hex[:8].upper()  # hex has no I, O or Q: a valid VIN


@dataclass(frozen=True)
class StandIn:
    name: str
    command: str  # `xhub sandbox <command>`
    target: Callable[[str], str]  # base URL -> the [targets.x] TOML body
    body: Callable[[], bytes]  # one message for the hub (the target's JSON)
    direct: Callable[[httpx.Client, str, bytes, str], httpx.Response]  # the same call without the hub


def _trade_body() -> bytes:
    case = json.loads(TRADE_CASE.read_text())
    case["meldungNr"] = uuid.uuid4().hex[:12]
    return json.dumps(case).encode()


def _vehicle_body() -> bytes:
    case = json.loads(VEHICLE_CASE.read_text())
    case["Vin"] = vin()
    case.pop("DesiredPlate", None)  # a wish plate can be reserved once; the benchmark registers many cars
    return json.dumps(case).encode()


def _soap_envelope(body: bytes, key: str) -> bytes:
    """The request the SOAP adapter sends, written by hand: what a client without the hub would post."""
    case = json.loads(body)
    owner, address = case["Owner"], case["Owner"]["Address"]
    return (f'<s:Envelope xmlns:s="{SOAP11}" xmlns:v="{SOAP_NS}"><s:Header><v:IdempotencyKey>{key}</v:IdempotencyKey>'
            f"</s:Header><s:Body><v:RegisterVehicle><v:Owner><v:FamilyName>{owner['FamilyName']}</v:FamilyName>"
            f"<v:GivenName>{owner['GivenName']}</v:GivenName><v:BirthDate>{owner['BirthDate']}</v:BirthDate>"
            f"<v:Address><v:Street>{address['Street']}</v:Street><v:HouseNumber>{address['HouseNumber']}"
            f"</v:HouseNumber><v:PostalCode>{address['PostalCode']}</v:PostalCode><v:City>{address['City']}</v:City>"
            f"</v:Address></v:Owner><v:Vin>{case['Vin']}</v:Vin><v:RegistrationDistrict>"
            f"{case['RegistrationDistrict']}</v:RegistrationDistrict></v:RegisterVehicle></s:Body></s:Envelope>"
            ).encode()


STAND_INS = [
    StandIn(
        "trade register (REST)", "trade-register",
        lambda url: f'adapter = "rest"\nurl = "{url}/api/v1/gewerbemeldungen"\n',
        _trade_body,
        lambda c, url, body, key: c.post(f"{url}/api/v1/gewerbemeldungen", content=body,
                                         headers={"Content-Type": "application/json", "Idempotency-Key": key}),
    ),
    StandIn(
        "vehicle registry (SOAP)", "vehicle-registry",
        lambda url: (f'adapter = "soap"\nwsdl = "{url}/VehicleRegistry?wsdl"\noperation = "RegisterVehicle"\n'
                     'reference_path = "RegistrationNumber"\n'),
        _vehicle_body,
        lambda c, url, body, key: c.post(
            f"{url}/VehicleRegistry", content=_soap_envelope(body, key),
            headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{SOAP_NS}#RegisterVehicle"'}),
    ),
]


def write_config(workdir: Path, db_url: str, target: str) -> Path:
    path = workdir / "hub.toml"
    path.write_text(f"""rules_dir = "{workdir / 'rules'}"
[database]
url = "{db_url}"
auto_upgrade = false
[worker]
poll_interval_seconds = 0.02
[targets.standin]
{target}
[[routes]]
name = "all"
targets = ["standin"]
not_checked = "pass"
""", encoding="utf-8")
    return path


def accept(db_url: str, bodies: list[bytes]) -> list[uuid.UUID]:
    engine = make_engine(db_url)
    ids = []
    for body in bodies:
        message, _ = store.accept(engine, store.NewMessage("bench", "rest", "bench", [
            store.Part("payload", "application/json", body)]), actor="sender:bench")
        ids.append(message.id)
    engine.dispose()
    return ids


def drain(config: Path, workers: int) -> None:
    procs = [subprocess.Popen(xhub(config, "worker", "--exit-when-idle")) for _ in range(workers)]
    for p in procs:
        if p.wait(timeout=3600) != 0:
            raise RuntimeError("a worker failed")


def throughput(db_url: str, expected: int) -> float:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        done = conn.execute(select(func.count()).select_from(Message).where(Message.status == "acknowledged")).scalar()
        first = conn.execute(select(func.min(Event.at)).where(Event.actor.like("worker:%"))).scalar()
        last = conn.execute(select(func.max(Event.at)).where(Event.to_status == "acknowledged")).scalar()
    engine.dispose()
    if done != expected:
        raise RuntimeError(f"only {done} of {expected} messages were acknowledged")
    return expected / (last - first).total_seconds()


def hub_latencies(db_url: str, ids: list[uuid.UUID]) -> list[float]:
    """Per message: first worker event → acknowledged, in milliseconds."""
    engine = make_engine(db_url)
    out = []
    with engine.connect() as conn:
        for mid in ids:
            first = conn.execute(select(func.min(Event.at)).where(Event.message_id == mid,
                                                                  Event.actor.like("worker:%"))).scalar()
            acked = conn.execute(select(Event.at).where(Event.message_id == mid,
                                                        Event.to_status == "acknowledged")).scalar()
            out.append((acked - first).total_seconds() * 1000)
    engine.dispose()
    return out


def run(stand_in: StandIn, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    port = free_port()
    server = subprocess.Popen(xhub(None, "sandbox", stand_in.command, "--port", str(port)),
                              stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/_received")
        for workers in args.workers:
            db_url = postgres_url("xhub_bench_delivery")
            if db_url is None:
                return rows
            migrate.upgrade(make_engine(db_url))
            with tempfile.TemporaryDirectory(prefix="xhub-bench-delivery-") as tmp:
                config = write_config(Path(tmp), db_url, stand_in.target(url))
                accept(db_url, [stand_in.body() for _ in range(args.messages)])
                drain(config, workers)
                rows.append({"stand_in": stand_in.name, "workers": workers, "messages": args.messages,
                             "delivered_per_s": round(throughput(db_url, args.messages), 1)})
        db_url = postgres_url("xhub_bench_delivery")
        assert db_url is not None
        migrate.upgrade(make_engine(db_url))
        ids: list[uuid.UUID] = []
        with tempfile.TemporaryDirectory(prefix="xhub-bench-latency-") as tmp:
            config = write_config(Path(tmp), db_url, stand_in.target(url))
            worker = subprocess.Popen(xhub(config, "worker"))
            try:
                for _ in range(args.latency_messages):  # one at a time: no queueing in the figure
                    (mid,) = accept(db_url, [stand_in.body()])
                    ids.append(mid)
                    wait_acknowledged(db_url, mid)
            finally:
                worker.terminate()
                worker.wait(timeout=60)
        hub_ms = hub_latencies(db_url, ids)
        direct_ms = []
        with httpx.Client(timeout=30) as client:
            for _ in range(args.latency_messages):
                start = time.perf_counter()
                r = stand_in.direct(client, url, stand_in.body(), f"direct-{uuid.uuid4()}")
                direct_ms.append((time.perf_counter() - start) * 1000)
                r.raise_for_status()
        for p in (50, 99):
            hub, direct = percentile(hub_ms, p), percentile(direct_ms, p)
            rows.append({"stand_in": stand_in.name, "workers": 1, "messages": len(ids), "percentile": f"p{p}",
                         "hub_ms": round(hub, 2), "direct_ms": round(direct, 2), "added_ms": round(hub - direct, 2)})
    finally:
        server.terminate()
        server.wait(timeout=30)
    return rows


def wait_acknowledged(db_url: str, message_id: uuid.UUID, timeout: float = 60) -> None:
    engine = make_engine(db_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            m = store.get(engine, message_id)
            if m is not None and m.status == "acknowledged":
                return
            if m is not None and m.status in {"dead", "rejected", "retry_wait"}:
                raise RuntimeError(f"message {message_id} went to {m.status}: {m.last_error}")
            time.sleep(0.002)
        raise RuntimeError(f"message {message_id} not acknowledged within {timeout}s")
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--latency-messages", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "bench" / "results" / "delivery.json")
    args = parser.parse_args()
    rows = [row for s in STAND_INS for row in run(s, args)]
    columns = [("stand_in", "stand-in"), ("workers", "workers"), ("messages", "messages"),
               ("delivered_per_s", "delivered/s"), ("percentile", "pct"), ("hub_ms", "hub ms"),
               ("direct_ms", "direct ms"), ("added_ms", "added ms")]
    report("delivery", columns, rows, args.out, {"database": "postgresql"})


if __name__ == "__main__":
    main()
