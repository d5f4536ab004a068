"""Benchmark: the operators' search on a million messages (PostgreSQL), keyset paging against OFFSET paging.

``--messages`` messages (two towns, a year of creation times, every id filled, one delivery each) are made
with ``generate_series`` in a fresh database. Each query of the console's search runs ``--repeat`` times
through :func:`hub.search.search` (what the API and the console call); reported: p50 and p95 in ms. The
baseline in the same run is OFFSET paging to the same depth (what a list without a cursor costs): the
deeper the page, the more rows it reads and throws away; the keyset page costs what the first one does.

    .venv/bin/python scripts/bench/console_search.py [--messages 1000000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common import ROOT, percentile, postgres_url, report

from hub import migrate
from hub.access import Caller
from hub.db import make_engine
from hub.models import Message
from hub.search import Filter, encode_cursor, search, statement
from hub.users import Role
from tests.console.search_seed import seed_messages

ADMIN = Caller("admin", Role.ADMIN, None)
KEMPTEN = Caller("ke", Role.OPERATOR, frozenset({"kempten"}))
MEMMINGEN = Caller("mm", Role.VIEWER, frozenset({"memmingen"}))


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - started) * 1000)
    return round(percentile(runs, 50), 2), round(percentile(runs, 95), 2)


def offset_page(engine: Engine, caller: Caller, f: Filter, offset: int) -> list[Message]:
    stmt = statement(caller, f).order_by(Message.created_at.desc(), Message.id.desc()).offset(offset).limit(50)
    with Session(bind=engine) as session:
        return list(session.scalars(stmt))


def cursor_at(engine: Engine, caller: Caller, f: Filter, depth: int) -> str:
    [row] = offset_page(engine, caller, f, depth - 1)[:1]
    return encode_cursor(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    url = postgres_url("xhub_bench_console_search")
    if url is None:
        sys.exit("this benchmark needs PostgreSQL (HUB_BENCH_POSTGRES_URL)")
    engine = make_engine(url)
    migrate.upgrade(engine)
    started = time.perf_counter()
    seed_messages(engine, args.messages)
    print(f"{args.messages} messages made in {time.perf_counter() - started:.0f} s")
    with engine.connect() as conn:
        ref = conn.execute(text("SELECT sender_reference FROM messages ORDER BY created_at LIMIT 1 OFFSET "
                                f"{args.messages // 2}")).scalar_one()
    deep = min(args.messages // 2, 500_000)
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("any id (sender reference)", lambda: search(engine, MEMMINGEN, Filter(q=ref))),
        ("newest page, all towns", lambda: search(engine, ADMIN, Filter())),
        ("newest page, kempten", lambda: search(engine, KEMPTEN, Filter())),
        ("status dead, newest", lambda: search(engine, ADMIN, Filter(status="dead"))),
        ("target kfz-register, memmingen", lambda: search(engine, MEMMINGEN, Filter(target="kfz-register"))),
        ("one day", lambda: search(engine, ADMIN, Filter(since=datetime(2026, 3, 1, tzinfo=UTC),
                                                         until=datetime(2026, 3, 2, tzinfo=UTC)))),
    ]
    for depth in (10_000, deep):
        cursor = cursor_at(engine, ADMIN, Filter(), depth)
        cases.append((f"page at depth {depth}: keyset", lambda c=cursor: search(engine, ADMIN, Filter(), cursor=c)))
        cases.append((f"page at depth {depth}: OFFSET (baseline)",
                      lambda d=depth: offset_page(engine, ADMIN, Filter(), d)))
    rows = []
    for name, fn in cases:
        fn()  # warm the cache: the figures are of a running hub, not of a cold start
        p50, p95 = timed(fn, args.repeat)
        rows.append({"query": name, "p50_ms": p50, "p95_ms": p95})
    report("console_search", [("query", "query"), ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms")], rows,
           ROOT / "scripts/bench/results/console_search.json", {"messages": args.messages, "repeat": args.repeat})
    engine.dispose()


if __name__ == "__main__":
    main()
