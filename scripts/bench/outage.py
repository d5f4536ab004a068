"""Events per waiting message during a target outage, for outages of different lengths.

``--messages`` messages meet a target that answers 503 for ``--cooldowns`` cool-downs of its circuit
(failure threshold 2, cool-down ``--cooldown`` s); then it answers again. Counted per message: the events
after its first routing up to the moment the target came back (what waiting cost it), and how many trial
calls it carried. The bound does not grow with the outage: a parked message is not claimed again.

    .venv/bin/python scripts/bench/outage.py [--messages 40] [--cooldowns 5 20] [--cooldown 0.3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, report
from sqlalchemy import select

from hub import migrate, store
from hub.db import make_engine
from hub.models import Event, utcnow
from tests.integration.test_throughput import Target
from tests.support import accept_many, hub_config, running, wait_for
from xhub.runtime import make_worker


def one(n: int, cooldowns: int, cooldown: float) -> dict[str, Any]:
    target = Target()
    target.down = True
    with tempfile.TemporaryDirectory() as tmp, running(target.app) as base:
        url = f"sqlite:///{tmp}/hub.db"
        engine = make_engine(url)
        migrate.upgrade(engine)
        ids = accept_many(engine, n, body=lambda i: f"<a n='{i}'/>".encode())
        config = hub_config(url, Path(tmp), worker={"poll_interval_seconds": 0.05},
                            targets={"registry": {"adapter": "rest", "url": f"{base}/cases",
                                                  "circuit": {"failure_threshold": 2, "cooldown_seconds": cooldown}}},
                            routes=[{"name": "all", "targets": ["registry"]}])
        worker = make_worker(config, engine)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        time.sleep(cooldowns * cooldown)
        until = utcnow()
        target.down = False
        wait_for(lambda: all(store.get(engine, m).status == "acknowledged" for m in ids), timeout=120)  # type: ignore[union-attr]
        worker.shutdown()
        thread.join(30)
        worker.channels.close()
        with engine.connect() as conn:
            rows = conn.execute(select(Event.message_id, Event.kind, Event.detail, Event.to_status)
                                .where(Event.at <= until).order_by(Event.id)).all()
        engine.dispose()
    waiting: Counter[Any] = Counter()
    carried: Counter[Any] = Counter()
    routed: set[Any] = set()
    for row in rows:
        if row.message_id in routed:
            waiting[row.message_id] += 1
            carried[row.message_id] += int(row.kind == "delivery" and bool((row.detail or {}).get("probe")))
        elif row.to_status == "routed":
            routed.add(row.message_id)
    plain = [waiting[m] for m in ids if not carried[m]]
    return {"cooldowns": cooldowns, "messages": n, "calls_while_down": target.calls_while_down,
            "events_avg": round(statistics.mean(waiting[m] for m in ids), 2),
            "events_max": max(waiting[m] for m in ids), "events_max_not_probe": max(plain, default=0),
            "probe_carriers": sum(1 for m in ids if carried[m]), "duplicates": sum(c - 1 for c in target.keys.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--cooldowns", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--cooldown", type=float, default=0.3)
    parser.add_argument("--out", type=Path, default=ROOT / "scripts/bench/results/outage.json")
    args = parser.parse_args()
    rows = [one(args.messages, k, args.cooldown) for k in args.cooldowns]
    columns = [("cooldowns", "cool-downs"), ("messages", "messages"), ("calls_while_down", "calls while down"),
               ("events_avg", "events/msg avg"), ("events_max", "max"), ("events_max_not_probe", "max (no probe)"),
               ("probe_carriers", "probe carriers"), ("duplicates", "duplicates")]
    report("outage", columns, rows, args.out)


if __name__ == "__main__":
    main()
