"""Profile of the hot path: SQL statements, commits and CPU per message, intake and worker, in one process.

Stores ``--messages`` real XGewerbesteuer messages (~1.9 KB) through the intake's store path from
``--senders`` threads, then drains them with one worker (the whole pipeline: verify, validate against the
XSD, route, deliver over loopback HTTP to ``sink201.py``, acknowledge). Counted with SQLAlchemy event
listeners: statements (an executemany counts once), commits; CPU: this process (``time.process_time``) and
the PostgreSQL backends serving it (``/proc/<pid>/stat`` of each ``pg_backend_pid()``, when the server runs
on this machine). The target stand-in runs in its own process and is not counted.

    .venv/bin/python scripts/bench/hotpath.py [--messages 2000] [--backend postgres|sqlite] [--out FILE]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, free_port, postgres_url, proc_cpu, report, wait_http
from sqlalchemy import Engine, event, func, select

from hub import migrate, store
from hub.db import make_engine
from hub.models import Message
from tests.support import hub_config
from xhub.runtime import make_worker

SAMPLES = sorted((ROOT / "tests/fixtures/xoev/xgewerbesteuer-1.4").glob("*.xml"))


class Counter:
    """Statements, commits and the PostgreSQL backends of one engine."""

    def __init__(self, engine: Engine) -> None:
        self.statements = self.commits = 0
        self.backends: set[int] = set()
        self.lock = threading.Lock()
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._commit)
        if engine.dialect.name == "postgresql":
            event.listen(engine, "connect", self._connect)

    def _statement(self, *_args: Any) -> None:
        with self.lock:
            self.statements += 1

    def _commit(self, *_args: Any) -> None:
        with self.lock:
            self.commits += 1

    def _connect(self, dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute("select pg_backend_pid()")
            self.backends.add(int(cur.fetchone()[0]))

    def snapshot(self) -> tuple[int, int, float]:
        return self.statements, self.commits, proc_cpu(self.backends)


def measure(counter: Counter, work: Callable[[], None]) -> dict[str, float]:
    s0, c0, b0 = counter.snapshot()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    work()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    s1, c1, b1 = counter.snapshot()
    return {"statements": s1 - s0, "commits": c1 - c0, "cpu": cpu, "pg_cpu": b1 - b0, "wall": wall}


def intake(engine: Engine, n: int, senders: int) -> None:
    bodies = [p.read_bytes() for p in SAMPLES]
    group = store.GroupCommit(engine) if hasattr(store, "GroupCommit") else None
    per = n // senders

    def send(k: int) -> None:
        for i in range(per):
            new = store.NewMessage("bench", "rest", "bench", [store.Part("payload", "application/xml",
                                                                         bodies[(k + i) % len(bodies)])])
            if group is not None:
                group.accept(new, actor="sender:bench")
            else:
                store.accept(engine, new, actor="sender:bench")

    threads = [threading.Thread(target=send, args=(k,)) for k in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if group is not None:
        group.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--label", default="")
    parser.add_argument("--out", type=Path, default=ROOT / "scripts/bench/results/hotpath.json")
    args = parser.parse_args()
    n = args.messages - args.messages % args.senders
    port = free_port()
    sink = subprocess.Popen([sys.executable, str(Path(__file__).parent / "sink201.py"), str(port)])
    rows = []
    try:
        wait_http(f"http://127.0.0.1:{port}/stats")
        with tempfile.TemporaryDirectory() as tmp:
            url = (postgres_url("xhub_bench_hotpath") if args.backend == "postgres"
                   else f"sqlite:///{tmp}/hub.db")
            assert url is not None, "no PostgreSQL"
            config = hub_config(url, Path(tmp), targets={"sink": {"adapter": "rest",
                                                                  "url": f"http://127.0.0.1:{port}/in"}},
                                routes=[{"name": "all", "targets": ["sink"], "not_checked": "pass"}])
            engine = make_engine(url)
            migrate.upgrade(engine)
            engine.dispose()  # every connection from here on is made with the counter listening
            counter = Counter(engine)
            got = measure(counter, lambda: intake(engine, n, args.senders))
            rows.append({"phase": "intake", **per_message(got, n)})
            worker = make_worker(config, engine)
            got = measure(counter, lambda: worker.run(exit_when_idle=True))
            with engine.connect() as conn:
                done = conn.execute(select(func.count()).where(Message.status == "acknowledged")).scalar()
            assert done == n, f"only {done} of {n} acknowledged"
            rows.append({"phase": "worker", **per_message(got, n)})
            worker.channels.close()
            engine.dispose()
    finally:
        sink.terminate()
        sink.wait()
    columns = [("phase", "phase"), ("msg_s", "msg/s"), ("stmts", "SQL stmts/msg"), ("commits", "commits/msg"),
               ("cpu_ms", "CPU ms/msg (python)"), ("pg_ms", "CPU ms/msg (PostgreSQL)")]
    report("hotpath", columns, rows, args.out, {"messages": n, "backend": args.backend, "label": args.label})


def per_message(got: dict[str, float], n: int) -> dict[str, Any]:
    return {"msg_s": round(n / got["wall"]), "stmts": round(got["statements"] / n, 2),
            "commits": round(got["commits"] / n, 2), "cpu_ms": round(got["cpu"] * 1000 / n, 2),
            "pg_ms": round(got["pg_cpu"] * 1000 / n, 2)}


if __name__ == "__main__":
    main()
