"""``make reliability``: messages under faults; counts lost, duplicated and stuck messages.

A hub on PostgreSQL (``xhub serve --no-worker`` + 2 ``xhub worker`` processes) takes ``--messages`` real
XGewerbesteuer messages from the load generator (its own process, 16 senders, each message with its own
Idempotency-Key, re-sent with the same key when the API does not answer) and delivers them to the target
stand-in (nginx answering 201, see ``harness.py``), while:

* **kills**: every 0.5-3 s (at random) a worker or the API gets SIGKILL, ``--kills`` times; a supervisor
  starts whatever process is gone again, as systemd would;
* **target outage**: once a quarter of the messages is in, the target answers 503 for ``--outage-seconds``;
* **database**: once 60 % is in, ``--pg`` ``restart`` restarts the PostgreSQL server
  (``pg_ctlcluster --skip-systemctl-redirect <cluster> restart``, ``RELIABILITY_PG_CLUSTER="15 main"``);
  ``terminate`` ends every connection of the hub's database instead (what the hub sees of a restart, without
  disturbing other databases on a shared server); ``none`` leaves it alone.

Then it waits until every accepted message is delivered (``--drain-seconds``) and counts, from the load
generator's answers, the database and the target's log:

* **lost**: accepted by the hub (202/200 with an id) but never answered 201 by the target;
* **duplicated**: target cases beyond one per message: a message delivered under more than one
  Idempotency-Key, or a submission stored twice by the hub. Re-sends with the *same* key (a worker killed
  between the target's answer and its commit) are counted apart (``resent_same_key``): a target that honours
  the key makes one case of them, which is the hub's contract;
* **stuck**: messages not in a final status at the end (``dead`` ones are counted apart);
* **events per waiting message** during the outage.

Prints a table and writes JSON (``--out``, default ``docs/benchmarks/reliability.json``). Exit code 1 when
anything was lost, duplicated or stuck.

    .venv/bin/python scripts/bench/reliability.py [--messages 10000] [--kills 40] [--pg restart]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from harness import (
    Backends,
    Hub,
    db_engine,
    drop_database,
    fresh_database,
    load,
    make_messages,
    target_stand_in,
    trail,
    wait_done,
)
from sqlalchemy import func, select, text

from hub.models import Message

ROOT = Path(__file__).resolve().parents[2]
FINAL = ("delivered", "acknowledged")


class Supervisor(threading.Thread):
    """Starts again whichever hub process is gone (killed, or ended by a database outage), like systemd."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(daemon=True)
        self.hub = hub
        self.stopping = threading.Event()
        self.restarts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stopping.wait(0.3):
            with self.lock:
                for i, proc in enumerate(self.hub.worker_procs):
                    if proc.poll() is not None:
                        self.restarts["worker"] += 1
                        self.hub.worker_procs[i] = self._start(self.hub.xhub("worker"), "workers.log")
                if self.hub.api is not None and self.hub.api.poll() is not None:
                    self.restarts["api"] += 1
                    self.hub.api = self._start(self.hub.xhub("serve", "--no-worker"), "api.log")

    def _start(self, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        out = (self.hub.workdir / log).open("ab")
        return subprocess.Popen(argv, stdout=out, stderr=out)

    def kill_one(self, rng: random.Random) -> str:
        with self.lock:
            victims = [("worker", p) for p in self.hub.worker_procs] + [("api", self.hub.api)]
            name, proc = rng.choice(victims + victims[:2])  # workers twice as often as the API
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            return name


def count_messages(url: str) -> int:
    engine = db_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(Message)).scalar() or 0)
    except Exception:  # restarting
        return -1
    finally:
        engine.dispose()


def database_fault(mode: str, backends: Backends) -> str:
    if mode == "restart":
        cluster = os.environ.get("RELIABILITY_PG_CLUSTER", "15 main").split()
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "restart"], check=True,
                       timeout=120)
        for _ in range(300):
            if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"], check=False).returncode == 0:
                break
            time.sleep(0.2)
        return "server restarted"
    if mode == "terminate":
        with backends.engine.connect() as conn:
            ended = conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                      "WHERE datname = :d AND pid <> pg_backend_pid()"),
                                 {"d": backends.database}).scalar()
        return f"{ended} connections of the hub's database terminated"
    return "none"


def main(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    target = target_stand_in()
    log: list[str] = []
    started = time.time()

    def note(what: str) -> None:
        log.append(f"{time.time() - started:7.1f}s {what}")
        print(log[-1], flush=True)

    try:
        with tempfile.TemporaryDirectory(prefix="xhub-reliability-") as tmp_name:
            tmp = Path(tmp_name)
            db = fresh_database("xhub_reliability", "postgres", tmp)
            hub = Hub(db, target.url, tmp, workers=2, poll_seconds=0.2, cooldown_seconds=args.cooldown,
                      lease_seconds=args.lease_seconds).prepare().start()
            backends = Backends(db)
            supervisor = Supervisor(hub)
            supervisor.start()
            files = make_messages(tmp / "messages", args.messages)
            result: dict[str, Any] = {}
            sender = threading.Thread(target=lambda: result.update(
                load(hub.url, files, tmp / "load.json", concurrency=args.concurrency)))
            sender.start()
            note(f"sending {args.messages} messages; {args.kills} kills, outage {args.outage_seconds}s, "
                 f"database: {args.pg}")
            outage: dict[str, Any] = {}
            kills: Counter[str] = Counter()
            db_done = args.pg == "none"
            next_kill = time.monotonic() + rng.uniform(0.5, 3)
            while sender.is_alive() or sum(kills.values()) < args.kills or "ended" not in outage or not db_done:
                time.sleep(0.1)
                share = count_messages(db) / args.messages
                if "began" not in outage and share >= 0.25:
                    target.outage(True)
                    outage["began"] = datetime.now(UTC)
                    note("target outage begins (503)")
                if "began" in outage and "ended" not in outage and \
                        (datetime.now(UTC) - outage["began"]).total_seconds() >= args.outage_seconds:
                    target.outage(False)
                    outage["ended"] = datetime.now(UTC)
                    note("target outage ends")
                if not db_done and share >= 0.6:
                    note(f"database: {database_fault(args.pg, backends)}")
                    db_done = True
                if sum(kills.values()) < args.kills and time.monotonic() >= next_kill:
                    victim = supervisor.kill_one(rng)
                    kills[victim] += 1
                    next_kill = time.monotonic() + rng.uniform(0.5, 3)
                if time.time() - started > 2 * args.drain_seconds:
                    break  # the report says what did not happen
            note(f"all sent ({dict(kills)} killed); waiting for delivery")
            accepted = [i for i in result.get("ids", []) if i]
            drained = wait_done(db, accepted, args.drain_seconds)
            note("drained" if drained else f"not drained within {args.drain_seconds}s")
            supervisor.stopping.set()
            supervisor.join()
            hub.stop()
            t = trail(db)
            backends.close()
            drop_database(db)
    finally:
        target.outage(False)
        deliveries = target.deliveries()
        target.stop()

    ok_keys: Counter[str] = Counter(d.key for d in deliveries if d.status == 201)
    keys_per_message: dict[str, set[str]] = defaultdict(set)
    for d in deliveries:
        if d.status == 201:
            keys_per_message[d.message_id].add(d.key)
    accepted_set = set(accepted)
    lost = sorted(i for i in accepted_set if not keys_per_message.get(i))
    stored_twice = len(t.statuses) - len(accepted_set)
    duplicated = sum(len(k) - 1 for k in keys_per_message.values()) + max(0, stored_twice)
    stuck = sorted(i for i, s in t.statuses.items() if s not in (*FINAL, "dead"))
    dead = sorted(i for i, s in t.statuses.items() if s == "dead")
    began, ended = outage.get("began"), outage.get("ended")

    def utc(at: datetime) -> datetime:
        return at if at.tzinfo else at.replace(tzinfo=UTC)

    waiting = [i for i in accepted_set if began and ended and t.received.get(i) and utc(t.received[i]) <= ended
               and (i not in t.delivered or utc(t.delivered[i]) >= began)]
    during = [sum(1 for at in t.times[i] if began <= utc(at) <= ended) for i in waiting] if began and ended else []
    row = {
        "messages": args.messages, "accepted": len(accepted_set), "refused_by_hub": args.messages - len(accepted),
        "kills_worker": kills["worker"], "kills_api": kills["api"], "restarts": dict(supervisor.restarts),
        "database_fault": args.pg, "outage_s": args.outage_seconds,
        "lost": len(lost), "duplicated": duplicated, "stuck": len(stuck), "dead": len(dead),
        "resent_same_key": sum(n - 1 for n in ok_keys.values()),
        "waiting_during_outage": len(waiting),
        "events_per_waiting_msg_during_outage": round(sum(during) / len(during), 2) if during else None,
        "events_per_waiting_msg_during_outage_max": max(during, default=None),
        "seconds": round(time.time() - started, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "reliability", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "target_stand_in": target.kind, "seed": args.seed, "timeline": log, "result": row,
        "examples": {"lost": lost[:10], "stuck": stuck[:10], "dead": dead[:10]},
    }, indent=2) + "\n", encoding="utf-8")
    width = max(map(len, row))
    print()
    for k, v in row.items():
        print(f"{k.rjust(width)}  {v}")
    print(f"\nwritten {out}")
    return 1 if lost or duplicated or stuck or not drained else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=int(os.environ.get("RELIABILITY_MESSAGES", 10_000)))
    parser.add_argument("--kills", type=int, default=int(os.environ.get("RELIABILITY_KILLS", 40)))
    parser.add_argument("--pg", choices=["restart", "terminate", "none"],
                        default=os.environ.get("RELIABILITY_PG", "restart"))
    parser.add_argument("--outage-seconds", type=float, default=float(os.environ.get("RELIABILITY_OUTAGE", 20)))
    parser.add_argument("--cooldown", type=float, default=5.0, help="the target's circuit cool-down (s)")
    parser.add_argument("--lease-seconds", type=float, default=5.0, help="worker lease (s): a killed worker's "
                        "message is taken over after this")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--drain-seconds", type=float, default=900)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "reliability.json"))
    sys.exit(main(parser.parse_args()))
