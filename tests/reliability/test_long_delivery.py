"""A delivery that takes longer than the lease, with real worker threads on both backends: the worker's
heartbeat renews the message lease and the target's concurrency slot together, so nobody takes the message
over and no second worker calls the target beyond its ``max_concurrency`` meanwhile."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, select

from hub import store
from hub.models import Message, TargetSlot, utcnow
from hub.worker import Worker
from tests.support import accept_many, hub_config, running, wait_for
from xhub.runtime import make_worker

pytestmark = pytest.mark.slow

LEASE = 1.0  # seconds; the heartbeat renews every third of it
HOLD = 3 * LEASE  # how long the target takes to answer each call


def _slow_target() -> tuple[FastAPI, dict[str, Any]]:
    """A target that takes ``HOLD`` seconds per call and remembers the most calls it ever had in flight."""
    app = FastAPI()
    seen: dict[str, Any] = {"now": 0, "max": 0, "keys": Counter()}
    lock = threading.Lock()

    @app.post("/cases")
    async def cases(request: Request) -> JSONResponse:
        await request.body()
        with lock:
            seen["now"] += 1
            seen["max"] = max(seen["max"], seen["now"])
            seen["keys"][request.headers["idempotency-key"]] += 1
        await asyncio.sleep(HOLD)
        with lock:
            seen["now"] -= 1
        return JSONResponse({"ok": True}, status_code=201)

    return app, seen


def _start(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run, name=f"test-{worker.owner}", daemon=True)
    thread.start()
    return thread


def test_a_delivery_longer_than_the_lease_keeps_lease_and_slot(engine: Engine, db_url: str, tmp_path: Path) -> None:
    first_id, second_id = accept_many(engine, 2)
    app, seen = _slow_target()
    with running(app) as url:
        config = hub_config(db_url, tmp_path, worker={"lease_seconds": LEASE, "poll_interval_seconds": 0.05,
                                                      "batch_size": 1},  # one message for each worker
                            targets={"slow": {"adapter": "rest", "url": f"{url}/cases", "max_concurrency": 1}},
                            routes=[{"name": "all", "targets": ["slow"]}])
        first, second = make_worker(config, engine), make_worker(config, engine)
        threads = [_start(first)]
        try:
            wait_for(lambda: seen["now"] == 1, timeout=60)
            threads.append(_start(second))  # the other message is due; the target's only slot is taken
            time.sleep(2 * LEASE)  # two leases into the call: both would have expired without renewal
            with engine.connect() as conn:
                slot = conn.execute(select(TargetSlot.holder, TargetSlot.expires_at)).one()
                lease = conn.execute(select(Message.lease_owner, Message.lease_expires_at)
                                     .where(Message.id == first_id)).one()
            now = utcnow()  # both were taken a little before the call, for one lease: renewed since, or gone
            assert seen["now"] == 1
            assert slot.holder == first.owner and slot.expires_at > now
            assert lease.lease_owner == first.owner and lease.lease_expires_at > now
            wait_for(lambda: all(_status(engine, m) == "acknowledged" for m in (first_id, second_id)), timeout=60)
        finally:
            for worker in (first, second):
                worker.shutdown()
            for thread in threads:
                thread.join(timeout=30)
    assert seen["max"] == 1, f"the target had {seen['max']} calls in flight; its limit is 1"
    assert seen["keys"] == {f"xhub-{m}-slow": 1 for m in (first_id, second_id)}  # each sent once
    trail = [e for m in (first_id, second_id) for e in store.events(engine, m)]
    assert not [e.reason for e in trail if "taken over" in e.reason], "a lease expired during the call"
    assert any("concurrency limit" in e.reason for e in store.events(engine, second_id)), \
        "the second worker must have asked for the slot while the first held it"
    assert [d.attempts for m in (first_id, second_id) for d in store.deliveries(engine, m)] == [1, 1]
    assert {store.get(engine, m).attempts for m in (first_id, second_id)} == {0}  # type: ignore[union-attr]


def _status(engine: Engine, message_id: uuid.UUID) -> str | None:
    message = store.get(engine, message_id)
    return message.status if message is not None else None
