"""Deliveries recorded by a real worker over real loopback HTTP, on both backends: one guarded ``delivery``
event per attempt, and a worker whose message was taken over cannot record over the new owner."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, update

from hub import store
from hub.models import DeliveryStatus, Message, utcnow
from sandbox.recorder import create_recorder
from tests.support import accept_many, hub_config, running
from xhub.runtime import make_worker


@pytest.fixture
def sink() -> Iterator[str]:
    with running(create_recorder()) as url:
        yield url


def _deliveries(engine: Engine, message_id: uuid.UUID) -> list[tuple[str, str | None, str | None, str]]:
    return [(str((e.detail or {})["target"]), e.from_status, e.to_status, e.actor)
            for e in store.events(engine, message_id) if e.kind == "delivery"]


def test_one_delivery_event_per_attempt(engine: Engine, db_url: str, tmp_path: Path, sink: str) -> None:
    config = hub_config(db_url, tmp_path,
                        targets={"dms": {"adapter": "file", "directory": str(tmp_path / "dms")},
                                 "registry": {"adapter": "rest", "url": f"{sink}/inbox/cases"}},
                        routes=[{"name": "both", "targets": ["dms", "registry"]}])
    httpx.post(f"{sink}/_behaviour", json={"fail_status": 503, "fail_count": 1})
    (mid,) = accept_many(engine, 1)
    first = make_worker(config, engine)
    first.run(exit_when_idle=True)
    with engine.begin() as conn:
        conn.execute(update(Message).where(Message.id == mid).values(next_attempt_at=utcnow()))
    second = make_worker(config, engine)
    second.run(exit_when_idle=True)
    assert store.get(engine, mid).status == "acknowledged"  # type: ignore[union-attr]
    one, two = f"worker:{first.owner}", f"worker:{second.owner}"
    assert _deliveries(engine, mid) == [("dms", "pending", "delivered", one), ("registry", "pending", "failed", one),
                                        ("registry", "failed", "delivered", two)]
    events = store.events(engine, mid)
    assert not [e for e in events if e.kind == "attempt"], "an attempt is recorded once, as its delivery event"
    failed = next(e for e in events if e.kind == "delivery" and e.to_status == "failed")
    assert failed.detail is not None and failed.detail["status_code"] == 503 and failed.detail["attempt"] == 1
    assert "503" in failed.reason
    assert {d.target: (d.status, d.attempts) for d in store.deliveries(engine, mid)} == {
        "dms": (DeliveryStatus.DELIVERED, 1), "registry": (DeliveryStatus.DELIVERED, 2)}


def test_a_worker_that_lost_the_message_cannot_record_its_delivery(engine: Engine, db_url: str,
                                                                    tmp_path: Path) -> None:
    """While the first worker is talking to the target, its lease is taken over by another worker; the first
    worker's results (routed, the delivery, acknowledged) are refused by the lease guard when its batch is
    written, and nothing of them is left: the new owner starts over and delivers with the same idempotency key."""
    (mid,) = accept_many(engine, 1)
    app = FastAPI()
    keys = []

    @app.post("/cases")
    def cases(request: Request) -> JSONResponse:  # runs in a thread pool: a synchronous database write is fine
        keys.append(request.headers["idempotency-key"])
        with engine.begin() as conn:
            conn.execute(update(Message).where(Message.id == mid)
                         .values(lease_owner="worker-b", lease_expires_at=utcnow() + timedelta(hours=1)))
        return JSONResponse({"ok": True}, status_code=201)

    with running(app) as url:
        config = hub_config(db_url, tmp_path, targets={"registry": {"adapter": "rest", "url": f"{url}/cases"}},
                            routes=[{"name": "all", "targets": ["registry"]}])
        stale = make_worker(config, engine)
        stale.run(max_messages=1)
    message = store.get(engine, mid)
    assert message is not None and (message.status, message.lease_owner) == ("received", "worker-b")
    assert keys == [f"xhub-{mid}-registry"]  # the key the new owner will send again
    assert store.deliveries(engine, mid) == []
    assert [e.actor for e in store.events(engine, mid)] == ["sender:portal"]  # nothing from the stale worker
