"""Delivery guarantees over real loopback HTTP: circuit breaker, concurrency limit, outage and recovery."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, update

from hub import store
from hub.db import make_engine
from hub.models import Message, TargetState, utcnow
from hub.targets import target_overview
from sandbox.recorder import create_recorder
from tests.support import accept_many, hub_config, running, write_config, xhub
from xhub.runtime import make_worker


@pytest.fixture
def sink() -> Iterator[str]:
    with running(create_recorder()) as url:
        yield url


def test_circuit_opens_defers_without_spending_budget_and_closes(engine: Engine, db_url: str, tmp_path: Path,
                                                                  sink: str) -> None:
    config = hub_config(db_url, tmp_path,
                        targets={"registry": {"adapter": "rest", "url": f"{sink}/inbox/cases",
                                              "circuit": {"failure_threshold": 2, "cooldown_seconds": 600}}},
                        routes=[{"name": "all", "targets": ["registry"]}],
                        retry={"max_attempts": 3, "base_delay_seconds": 0, "jitter": 0})
    httpx.post(f"{sink}/_behaviour", json={"fail_status": 503, "fail_count": 1000})
    first, second, third = accept_many(engine, 3)
    make_worker(config, engine).run(max_messages=3)

    (state,) = target_overview(engine, config.targets)
    assert state["circuit"] == "open" and state["consecutive_failures"] == 2 and "503" in state["last_error"]
    attempts = {mid: store.get(engine, mid).attempts for mid in (first, second, third)}  # type: ignore[union-attr, arg-type]
    assert attempts == {first: 1, second: 1, third: 0}  # the third was never sent, and that costs nothing
    deferred = store.events(engine, third)[-1]  # type: ignore[arg-type]
    assert deferred.to_status == "retry_wait" and "circuit for registry is open" in deferred.reason

    # The target comes back; the cool-down ends. One trial call closes the circuit, then everything flows.
    httpx.post(f"{sink}/_behaviour", json={})
    with engine.begin() as conn:
        conn.execute(update(TargetState).values(open_until=utcnow()))
        conn.execute(update(Message).values(next_attempt_at=utcnow()))
    make_worker(config, engine).run(exit_when_idle=True)
    assert {store.get(engine, m).status for m in (first, second, third)} == {"acknowledged"}  # type: ignore[union-attr, arg-type]
    assert target_overview(engine, config.targets)[0]["circuit"] == "closed"
    items = httpx.get(f"{sink}/_received").json()["items"]
    assert sorted(i["idempotency_key"] for i in items) == sorted(f"xhub-{m}-registry" for m in (first, second, third))


def test_permanent_answers_do_not_open_the_circuit(engine: Engine, db_url: str, tmp_path: Path, sink: str) -> None:
    config = hub_config(db_url, tmp_path,
                        targets={"registry": {"adapter": "rest", "url": f"{sink}/inbox/cases",
                                              "circuit": {"failure_threshold": 1}}},
                        routes=[{"name": "all", "targets": ["registry"]}])
    httpx.post(f"{sink}/_behaviour", json={"fail_status": 422, "fail_count": 1})
    bad, good = accept_many(engine, 2)
    make_worker(config, engine).run(exit_when_idle=True)
    assert store.get(engine, bad).status == "dead"  # type: ignore[union-attr, arg-type]
    assert store.get(engine, good).status == "acknowledged"  # type: ignore[union-attr, arg-type]
    assert target_overview(engine, config.targets)[0]["circuit"] == "closed"


def _concurrency_probe() -> tuple[FastAPI, dict[str, int]]:
    """A target that holds each request briefly and remembers the most it ever had in flight."""
    app = FastAPI()
    seen = {"now": 0, "max": 0, "total": 0}
    lock = threading.Lock()

    @app.post("/cases")
    async def cases(request: Request) -> JSONResponse:
        await request.body()
        with lock:
            seen["now"] += 1
            seen["total"] += 1
            seen["max"] = max(seen["max"], seen["now"])
        await asyncio.sleep(0.15)
        with lock:
            seen["now"] -= 1
        return JSONResponse({"ok": True}, status_code=201)

    @app.get("/seen")
    async def get_seen() -> dict[str, int]:
        return dict(seen)

    return app, seen


@pytest.mark.slow
@pytest.mark.postgres
def test_concurrency_limit_holds_across_worker_processes(pg_url: str, tmp_path: Path) -> None:
    engine = make_engine(pg_url)
    ids = accept_many(engine, 24)
    app, seen = _concurrency_probe()
    with running(app) as url:
        # batches of 1: the 24 messages are spread over the 4 workers, which then compete for the 2 slots
        config = write_config(tmp_path / "hub.toml", pg_url, f"{url}/cases", target_extra="max_concurrency = 2",
                              batch_size=1)
        procs = [subprocess.Popen(xhub(config, "worker", "--exit-when-idle")) for _ in range(4)]
        for p in procs:
            assert p.wait(timeout=240) == 0
        # A worker that found no due message exits, leaving deferred ones due shortly: finish them here.
        same = hub_config(pg_url, tmp_path, routes=[{"name": "all", "targets": ["registry"]}],
                          targets={"registry": {"adapter": "rest", "url": f"{url}/cases", "max_concurrency": 2}})
        for _ in range(50):
            if all(store.get(engine, m).status == "acknowledged" for m in ids):  # type: ignore[union-attr, arg-type]
                break
            with engine.begin() as conn:
                conn.execute(update(Message).where(Message.status == "retry_wait").values(next_attempt_at=utcnow()))
            make_worker(same, engine).run(exit_when_idle=True)
    assert seen["total"] == 24
    assert seen["max"] == 2, f"the limit was {seen['max']}, not 2"
    deferrals = sum(1 for m in ids for e in store.events(engine, m)  # type: ignore[arg-type]
                    if "concurrency limit" in e.reason)
    assert deferrals > 0, "with 4 workers and 2 slots some deliveries must have waited"
    assert all(store.get(engine, m).attempts == 0 for m in ids)  # type: ignore[union-attr, arg-type]
    engine.dispose()
