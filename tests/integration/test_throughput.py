"""The batched hot path keeps every guarantee: batch claims under concurrency, the lease guard of a batch's
writes, the intake's group commit answering each request truthfully, waking on NOTIFY, and a target outage
that costs a bounded number of events per waiting message however long it lasts."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import OperationalError

from hub import queue, store
from hub.db import make_engine
from hub.journal import Journal
from hub.models import Delivery, Event, Message, utcnow
from hub.pipeline.runner import LeaseLost
from hub.statemachine import Status, Transition
from tests.support import XBAU_VALID, accept_many, hub_config, running, wait_for
from xhub.runtime import make_worker

LEASE = timedelta(seconds=30)


class Target:
    """A REST target on loopback that counts each idempotency key and can be taken down (503)."""

    def __init__(self) -> None:
        self.app = FastAPI()
        self.keys: Counter[str] = Counter()
        self.down = False
        self.calls_while_down = 0
        lock = threading.Lock()

        @self.app.post("/cases")
        async def cases(request: Request) -> JSONResponse:
            await request.body()
            with lock:
                if self.down:
                    self.calls_while_down += 1
                    return JSONResponse({"error": "maintenance"}, status_code=503)
                self.keys[request.headers["idempotency-key"]] += 1
            return JSONResponse({"ok": True}, status_code=201)


@pytest.fixture
def target() -> Iterator[tuple[Target, str]]:
    t = Target()
    with running(t.app) as url:
        yield t, f"{url}/cases"


def _config(db_url: str, tmp_path: Path, url: str, **worker: Any) -> Any:
    return hub_config(db_url, tmp_path, worker={"lease_seconds": 30, "poll_interval_seconds": 0.05, **worker},
                      targets={"registry": {"adapter": "rest", "url": url,
                                            "circuit": {"failure_threshold": 2, "cooldown_seconds": 0.4}}},
                      routes=[{"name": "all", "targets": ["registry"]}])


def _new(engine: Engine, n: int) -> list[uuid.UUID]:
    return accept_many(engine, n, body=lambda i: f"<a n='{i}'/>".encode())


@pytest.mark.postgres
def test_concurrent_batch_claims_are_disjoint(pg_url: str) -> None:
    engine = make_engine(pg_url, pool_size=8)
    ids = set(_new(engine, 120))
    got: list[list[uuid.UUID]] = []

    def claim(k: int) -> list[uuid.UUID]:
        mine: list[uuid.UUID] = []
        while True:
            with engine.begin() as conn:
                batch = queue.claim_batch(conn, f"w{k}", LEASE, 7)
            if not batch:
                return mine
            mine += [c.message.id for c in batch]

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(claim, range(4)))
    claimed = [m for mine in got for m in mine]
    assert len(claimed) == len(set(claimed)) == len(ids) and set(claimed) == ids
    assert sum(1 for mine in got if mine) >= 2  # they really competed
    engine.dispose()


@pytest.mark.postgres
def test_two_workers_process_each_message_once(pg_url: str, tmp_path: Path,
                                               target: tuple[Target, str]) -> None:
    t, url = target
    engine = make_engine(pg_url)
    ids = _new(engine, 150)
    config = _config(pg_url, tmp_path, url, batch_size=10)
    workers = [make_worker(config, engine) for _ in range(2)]
    threads = [threading.Thread(target=w.run, kwargs={"exit_when_idle": True}) for w in workers]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert all(w.processed > 0 for w in workers), [w.processed for w in workers]
    assert t.keys == Counter({f"xhub-{m}-registry": 1 for m in ids})  # each delivered once
    with engine.connect() as conn:
        done = conn.execute(select(func.count()).where(Message.status == "acknowledged")).scalar()
        per_message = Counter(conn.execute(select(Event.message_id).where(Event.to_status == "delivered",
                                                                         Event.kind == "transition")).scalars())
    assert done == len(ids) and set(per_message.values()) == {1}
    for w in workers:
        w.channels.close()
    engine.dispose()


def test_a_lost_lease_drops_only_that_message_from_the_batch(engine: Engine) -> None:
    """The batch's one guarded update matches fewer rows than expected: the batch is written message by
    message, and the one whose lease was taken over leaves no trace."""
    ids = _new(engine, 3)
    with engine.begin() as conn:
        batch = queue.claim_batch(conn, "w1", LEASE, 10)
    assert {c.message.id for c in batch} == set(ids)
    journal = Journal("w1")
    for claimed in batch:
        journal.begin(claimed.message)
        journal.note(claimed.message.id, "verify: fine", status=Status.RECEIVED)
        journal.transition(claimed.message.id, Status.VALIDATED, Transition(reason="validate: fine"))
    stolen = ids[1]
    with engine.begin() as conn:  # the lease ran out and another worker took the message over
        conn.execute(update(Message).where(Message.id == stolen).values(lease_owner="w2"))
    from hub.pipeline.runner import Runner
    from hub.routing import RuleHolder
    from xhub import registry

    config = hub_config(str(engine.url.render_as_string(hide_password=False)), Path("/nonexistent"))
    runner = Runner(config, engine, "w1", RuleHolder(config), build_adapter=registry.build_adapter,
                    channels=registry.channels(config))
    out: dict[uuid.UUID, Any] = {}
    runner._write(journal, out)
    assert isinstance(out.get(stolen), LeaseLost) and len(out) == 1
    statuses = {m: store.get(engine, m).status for m in ids}  # type: ignore[union-attr]
    assert statuses == {ids[0]: "validated", stolen: "received", ids[2]: "validated"}
    assert [e.actor for e in store.events(engine, stolen)] == ["sender:portal"]
    assert len(store.events(engine, ids[0])) == 3  # received, the note, validated


def test_the_journal_refuses_an_illegal_step_at_once(engine: Engine) -> None:
    (mid,) = _new(engine, 1)
    with engine.begin() as conn:
        (claimed,) = queue.claim_batch(conn, "w1", LEASE, 1)
    journal = Journal("w1")
    journal.begin(claimed.message)
    from hub.statemachine import IllegalTransition

    with pytest.raises(IllegalTransition):
        journal.transition(mid, Status.DELIVERED, Transition(reason="skipping validation"))
    assert claimed.message.status == "received" and not journal.entries[mid].events


def _group_messages(n: int, **extra: Any) -> list[store.NewMessage]:
    return [store.NewMessage("memmingen", "rest", "portal", [store.Part("payload", "application/xml",
                                                                        f"<a n='{i}'/>".encode())], **extra)
            for i in range(n)]


def test_group_commit_stores_a_group_and_sorts_out_repeats(engine: Engine) -> None:
    group = store.GroupCommit(engine, max_group=50, wait_seconds=0.2)  # one group: all arrive within the wait
    body = XBAU_VALID.read_bytes()
    same = [store.NewMessage("memmingen", "rest", "portal", [store.Part("payload", "application/xml", body)],
                             idempotency_key="k-1") for _ in range(2)]
    other = store.NewMessage("memmingen", "rest", "portal", [store.Part("payload", "application/xml", b"<b/>")],
                             idempotency_key="k-1")
    futures = [group.submit(m, actor="sender:portal") for m in [*_group_messages(5), *same, other]]
    results = [f.exception() or f.result() for f in futures]
    group.close()
    assert group.groups == 1
    created = [r for r in results[:5] if isinstance(r, tuple)]
    assert len(created) == 5 and all(c for _, c in created)
    (first, first_created), (replayed, replayed_created) = results[5], results[6]  # type: ignore[misc]
    assert first_created and not replayed_created and replayed.id == first.id
    assert isinstance(results[7], store.IdempotencyConflict) and results[7].existing_id == first.id
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Message)).scalar() == 6
        assert conn.execute(select(func.count()).select_from(Event)).scalar() == 6
    for message, _ in created:  # answered from what was written, and it is what is stored
        stored = store.get(engine, message.id)
        assert stored is not None and (stored.status, stored.payload_sha256) == ("received", message.payload_sha256)


@pytest.mark.postgres
def test_group_commit_one_refused_message_does_not_sink_the_others(pg_url: str) -> None:
    engine = make_engine(pg_url)
    group = store.GroupCommit(engine, max_group=50, wait_seconds=0.2)
    good = _group_messages(4)
    bad = store.NewMessage("memmingen", "rest", "portal", [store.Part("payload", "application/xml", b"<a/>")],
                           case_id="x" * 300)  # longer than the column: PostgreSQL refuses the row
    futures = [group.submit(m, actor="sender:portal") for m in [*good[:2], bad, *good[2:]]]
    results = [f.exception() or f.result() for f in futures]
    group.close()
    assert [isinstance(r, tuple) for r in results] == [True, True, False, True, True]
    assert "too long" in str(results[2])
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Message)).scalar() == 4
    engine.dispose()


def test_group_commit_with_the_database_away_stores_nothing_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "hub.db").mkdir()  # a directory where the database file should be: it cannot be opened
    engine = make_engine(f"sqlite:///{tmp_path}/hub.db")
    group = store.GroupCommit(engine, wait_seconds=0.1)
    futures = [group.submit(m, actor="sender:portal") for m in _group_messages(3)]
    errors = [f.exception(timeout=30) for f in futures]
    group.close()
    assert group.groups == 0 and all(isinstance(e, OperationalError) for e in errors)  # each told: not stored


@pytest.mark.postgres
def test_notify_wakes_an_idle_worker_long_before_its_poll(pg_url: str, tmp_path: Path,
                                                          target: tuple[Target, str]) -> None:
    t, url = target
    engine = make_engine(pg_url)
    worker = make_worker(_config(pg_url, tmp_path, url, poll_interval_seconds=60), engine)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        time.sleep(1.5)  # idle: it polled once, found nothing, and sleeps for a minute unless woken
        group = store.GroupCommit(engine)  # the intake's path: stored, then NOTIFY in the same commit
        message, _ = group.accept(_group_messages(1)[0], actor="sender:portal")
        group.close()
        started = time.monotonic()
        wait_for(lambda: store.get(engine, message.id).status == "acknowledged", timeout=20)  # type: ignore[union-attr]
        assert time.monotonic() - started < 10  # well before the 60 s poll
        assert t.keys[f"xhub-{message.id}-registry"] == 1
    finally:
        worker.shutdown()
        thread.join(30)
        worker.channels.close()
        engine.dispose()


def test_an_outage_costs_a_bounded_number_of_events_per_waiting_message(engine: Engine, db_url: str,
                                                                       tmp_path: Path,
                                                                       target: tuple[Target, str]) -> None:
    """A target down for many cool-downs: the waiting messages are parked on its circuit, not re-claimed at
    every cool-down; one probe per cool-down; when it answers again all are released together."""
    t, url = target
    t.down = True
    ids = _new(engine, 30)
    worker = make_worker(_config(db_url, tmp_path, url, batch_size=8), engine)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        outage = 4.0  # ten cool-downs of 0.4 s
        time.sleep(outage)
        probes = t.calls_while_down
        with engine.connect() as conn:
            parked = conn.execute(select(func.count()).where(Message.waiting_on == "registry")).scalar()
        until = utcnow()
        t.down = False
        wait_for(lambda: all(store.get(engine, m).status == "acknowledged" for m in ids), timeout=60)  # type: ignore[union-attr]
    finally:
        worker.shutdown()
        thread.join(30)
        worker.channels.close()
    assert parked is not None and parked >= len(ids) - 1
    # two failures open the circuit, then one trial call per cool-down at most
    assert probes <= 2 + outage / 0.4 + 2, probes
    with engine.connect() as conn:
        rows = conn.execute(select(Event.message_id, Event.kind, Event.reason, Event.detail, Event.to_status)
                            .where(Event.at <= until).order_by(Event.id)).all()
        assert conn.execute(select(func.count()).select_from(Delivery)
                            .where(Delivery.status == "delivered")).scalar() == len(ids)
    waiting: Counter[uuid.UUID] = Counter()
    carried: Counter[uuid.UUID] = Counter()
    routed: set[uuid.UUID] = set()
    for row in rows:
        if row.message_id in routed:  # what waiting cost it, after its first routing
            waiting[row.message_id] += 1
            if row.kind == "delivery" and (row.detail or {}).get("probe"):
                carried[row.message_id] += 1
        elif row.to_status == "routed":
            routed.add(row.message_id)
    assert t.keys == Counter({f"xhub-{m}-registry": 1 for m in ids})
    for message_id in ids:
        assert waiting[message_id] <= 3 + 3 * carried[message_id], (waiting[message_id], carried[message_id])
    assert max(carried.values(), default=0) <= 2  # the trial call rotates over the waiting messages
    assert sum(waiting.values()) / len(ids) <= 3
