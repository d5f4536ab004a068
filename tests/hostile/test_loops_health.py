"""Hostile conditions for the background loops and the health door (``/health/live``, ``/health/ready``).

Attack classes: a submission or a message on which the code raises what nobody expected (``RecursionError``,
``MemoryError``, ``UnicodeError``, ``LookupError``, jwcrypto errors, …: injected where the real ones came
from, since the inputs that caused them are now refused earlier), on every item or on one, again after a
restart; a loop body that dies outright; transient trouble that must never be held against the sender; a
rules file that makes the reloader fail in an unforeseen way; and infrastructure going away under a running
hub: the database (PostgreSQL refusing connections, SQLite's write lock held elsewhere), the delivery
service stalling, the blob store not writable or full, no worker running.

Each case asserts the precise outcome (the reject-submission with its problem type at the emulator, the
message's status and recorded cause, the component and reason in the 503 problem), that nothing accepted
was lost, and that the hub works afterwards (a normal submission or message reaches its end state,
``/health/ready`` is back to 200).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, insert, select, text

from channels.fitconnect.intake import Intake, Poller, PollReport
from hub import store
from hub.db import make_engine
from hub.errors import Retriable
from hub.models import IntakeFailure, LoopHeartbeat, utcnow
from hub.ports import Channels
from hub.readiness import STALE_AFTER_SECONDS
from hub.routing import RuleHolder
from hub.supervisor import Backoff, Supervisor
from hub.worker import Worker
from tests.hostile.faults import UNEXPECTED, FaultyAnswer, Stall, faulty_channel
from tests.hostile.fitconnect_world import GOOD_DATA, World, world, world_fixtures
from tests.support import SENDER_TOKEN, XBAU_VALID, accept_many, hub_config, wait_for, write_config, xhub
from xhub import registry
from xhub.runtime import Reloader, build_app, make_worker, serve_in_thread

pytestmark = pytest.mark.slow


# -- the poller: one submission at a time, counted, refused after max_intake_failures

fc, fc_pg, fc_both = world_fixtures("fc", "fc_pg", "fc_both")


def failures(w: World, submission_id: str) -> tuple[int, int, str] | None:
    with w.engine.connect() as conn:
        row = conn.execute(select(IntakeFailure.attempts, IntakeFailure.unexpected, IntakeFailure.last_error)
                           .where(IntakeFailure.external_id == submission_id)).first()
    return None if row is None else (row[0], row[1], row[2])


@pytest.mark.parametrize("fault", UNEXPECTED.values(), ids=UNEXPECTED.keys())
def test_an_unexpected_error_on_one_submission_never_stops_the_poll(fc_both: World,
                                                                    fault: Callable[[], BaseException]) -> None:
    w = fc_both
    channel, client = faulty_channel(w, fault)
    try:
        poison, good = w.sender.good(), w.sender.good()
        client.poison.add(poison.submission_id)
        limit = w.config.fitconnect.max_intake_failures  # type: ignore[union-attr]
        for attempt in range(1, limit):
            report = channel.poll_once()
            assert report.failed == 1 and report.refused == 0, report
            counted = failures(w, poison.submission_id)
            assert counted is not None and counted[:2] == (attempt, attempt)
            # type and place only
            assert counted[2].startswith(type(fault()).__name__ + " at channels/fitconnect/intake.py:")
        report = channel.poll_once()  # the last allowed failure: stored as refused at once
        assert report.refused == 1 and report.failed == 0, report
        w.drain()
        assert w.outcome(poison) == ("reject-submission", [("technical-error", "submission")])
        w.assert_accepted(good)  # taken in by the first poll, next to the failing one
        assert failures(w, poison.submission_id) is None
        assert w.pending_at_emulator() == []
    finally:
        channel.close()


def test_a_poll_where_every_submission_raises_still_advances(fc: World) -> None:
    channel, client = faulty_channel(fc, UNEXPECTED["RecursionError"])
    try:
        sent = [fc.sender.good() for _ in range(3)]
        client.poison.update(s.submission_id for s in sent)
        report = channel.poll_once()
        assert (report.failed, report.stored, report.refused) == (3, 0, 0)
        assert [(failures(fc, s.submission_id) or ())[:2] for s in sent] == [(1, 1)] * 3
        client.poison.clear()  # the bug is fixed: the next poll takes them all in
        assert channel.poll_once().stored == 3
        fc.drain()
        for s in sent:
            fc.assert_accepted(s)
            assert failures(fc, s.submission_id) is None
    finally:
        channel.close()


def test_a_restarted_hub_counts_on_and_does_not_die_on_the_same_submission(fc: World) -> None:
    poison = fc.sender.good()
    for _ in range(2):  # two "processes", one after the other, each failing once on it
        channel, client = faulty_channel(fc, UNEXPECTED["MemoryError"])
        client.poison.add(poison.submission_id)
        assert channel.poll_once().failed == 1
        channel.close()
    channel, client = faulty_channel(fc, UNEXPECTED["MemoryError"])
    client.poison.add(poison.submission_id)
    poller = Poller(channel, 0.05)  # the real loop, as `xhub serve` runs it
    poller.start()
    try:
        wait_for(lambda: fc.message(poison.submission_id), timeout=20)
        good = fc.sender.good()
        poller.wake.set()
        wait_for(lambda: fc.message(good.submission_id), timeout=20)
        state = poller.supervisor.state()
        assert state.running and state.restarts == 0 and state.item_failures == 1
    finally:
        poller.shutdown()
    fc.drain()
    assert fc.outcome(poison) == ("reject-submission", [("technical-error", "submission")])
    fc.assert_accepted(good)


def test_transient_failures_are_counted_but_never_held_against_the_sender(fc: World) -> None:
    channel, client = faulty_channel(fc, lambda: Retriable("GET /v1/submissions/x: delivery service answered 503"))
    try:
        waiting = fc.sender.good()
        client.poison.add(waiting.submission_id)
        limit = fc.config.fitconnect.max_intake_failures  # type: ignore[union-attr]
        for _ in range(limit + 2):
            assert channel.poll_once().failed == 1
        counted = failures(fc, waiting.submission_id)
        assert counted is not None and counted[:2] == (limit + 2, 0) and counted[2].startswith("Retriable")
        assert fc.message(waiting.submission_id) is None and waiting.submission_id in fc.pending_at_emulator()
        client.poison.clear()
        assert channel.poll_once().stored == 1
        fc.drain()
        fc.assert_accepted(waiting)
    finally:
        channel.close()


def test_a_listing_that_raises_is_one_failed_poll(fc: World) -> None:
    channel, client = faulty_channel(fc, UNEXPECTED["RecursionError"])
    try:
        client.listing = True
        waiting = fc.sender.good()
        report = channel.poll_once()
        assert (report.failed, report.listed, report.stored) == (1, False, 0)
        assert waiting.submission_id in fc.pending_at_emulator()
        assert channel.poll_once().stored == 1  # the next poll lists again
        fc.drain()
        fc.assert_accepted(waiting)
    finally:
        channel.close()


def test_a_poll_that_dies_outright_is_restarted_and_counted(fc: World) -> None:
    class Exploding(Intake):
        exploded = False

        def poll_once(self, loop: Supervisor | None = None) -> PollReport:
            if not self.exploded:  # outside any one destination or submission: the loop itself dies
                self.exploded = True
                raise RuntimeError("the poll itself")
            return super().poll_once(loop)

    assert fc.config.fitconnect is not None
    channel = Exploding(fc.config.fitconnect, fc.config, fc.engine)
    poller = Poller(channel, 0.05)
    poller.supervisor.backoff = Backoff(initial=0.05)
    poller.start()
    try:
        wait_for(lambda: poller.supervisor.state().restarts == 1 and poller.supervisor.state().running)
        good = fc.sender.good()
        poller.wake.set()
        wait_for(lambda: fc.message(good.submission_id), timeout=20)
        state = poller.supervisor.state()
        assert state.last_error is not None and state.last_error.startswith("RuntimeError at ")
        assert state.last_error_at is not None and state.last_success_at is not None
        assert state.last_success_at > state.last_error_at
    finally:
        poller.shutdown()
    fc.drain()
    fc.assert_accepted(good)


# -- the supervisor itself (a unit: one class)

@pytest.mark.parametrize("fault", UNEXPECTED.values(), ids=UNEXPECTED.keys())
def test_the_supervisor_restarts_a_dying_body_with_growing_backoff(fault: Callable[[], BaseException]) -> None:
    runs: list[float] = []
    sup = Supervisor("test-loop", backoff=Backoff(initial=0.02, maximum=1.0))

    def body() -> None:
        runs.append(time.monotonic())
        if len(runs) <= 3:
            raise fault()
        sup.beat(success=True, items=1)
        sup.stop.wait()

    sup.start(body)
    wait_for(lambda: len(runs) == 4)
    state = sup.state()
    assert state.running and state.restarts == 3 and state.items == 1
    assert state.last_error is not None and state.last_error.startswith(type(fault()).__name__)
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert gaps[0] >= 0.02 and gaps[1] >= 0.04 and gaps[2] >= 0.08  # doubling
    sup.stop.set()
    sup.join(5)
    assert not sup.state().running


# -- the worker: one message at a time

def poison_message(engine: Engine) -> Any:
    """A FIT-Connect message that verify rejects, so that the reject answer is due (and raises)."""
    message, _ = store.accept(engine, store.NewMessage("memmingen", "fitconnect", "fitconnect", [
        store.Part("payload", "application/xml", b"<not-closed>")]), actor="test")
    return message.id


@pytest.mark.parametrize("fault", UNEXPECTED.values(), ids=UNEXPECTED.keys())
def test_the_worker_records_an_unexpected_error_on_the_message_and_goes_on(
        db_url: str, engine: Engine, tmp_path: Path, fault: Callable[[], BaseException]) -> None:
    config = hub_config(db_url, tmp_path)
    poison = poison_message(engine)
    good = accept_many(engine, 2)
    worker = make_worker(config, engine, channels=Channels([FaultyAnswer(fault)]))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: store.get(engine, poison).status == "dead")  # type: ignore[union-attr]
        wait_for(lambda: all(store.get(engine, g).status == "acknowledged" for g in good))  # type: ignore[union-attr]
        assert thread.is_alive() and worker.supervisor.state().restarts == 0
        message = store.get(engine, poison)
        assert message is not None and message.attempts == config.retry.max_attempts
        name = type(fault()).__name__
        assert message.last_error is not None and message.last_error.startswith(f"internal error: {name} at ")
        trail = store.events(engine, poison)
        # Each failed attempt is on the trail: the first moves it to retry_wait; a later one fails while it
        # resumes (the resume was not written: the batch's results of that message were dropped) and is
        # counted there as an attempt.
        failed = [e for e in trail if e.to_status == "retry_wait" and e.kind in {"transition", "attempt"}]
        assert len(failed) == config.retry.max_attempts - 1
        assert trail[-1].to_status == "dead" and trail[-1].detail is not None and trail[-1].detail["error"] == name
        late = accept_many(engine, 1)[0]  # still working afterwards
        worker.wake.set()
        wait_for(lambda: store.get(engine, late).status == "acknowledged")  # type: ignore[union-attr]
    finally:
        worker.shutdown()
        thread.join(10)


def test_a_worker_loop_that_dies_outright_is_restarted(db_url: str, engine: Engine, tmp_path: Path) -> None:
    config = hub_config(db_url, tmp_path)

    class Dying(Worker):  # wired as make_worker does
        died = False

        def run_once(self) -> bool:
            if not self.died:
                self.died = True
                raise RuntimeError("the loop itself")
            return super().run_once()

    worker = Dying(config, engine, build_adapter=registry.build_adapter, channels=registry.channels(config))
    worker.supervisor.backoff = Backoff(initial=0.05)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        (mid,) = accept_many(engine, 1)
        wait_for(lambda: store.get(engine, mid).status == "acknowledged")  # type: ignore[union-attr]
        state = worker.supervisor.state()
        assert state.restarts == 1 and state.running and (state.last_error or "").startswith("RuntimeError")
    finally:
        worker.shutdown()
        thread.join(10)


# -- the rules reloader

@pytest.mark.parametrize("fault", UNEXPECTED.values(), ids=UNEXPECTED.keys())
def test_the_rules_reloader_survives_an_unexpected_error(sqlite_url: str, tmp_path: Path,
                                                         fault: Callable[[], BaseException]) -> None:
    config = hub_config(sqlite_url, tmp_path, routes=[])  # the reloader never touches the database
    rules_dir = config.rules_dir
    rules_dir.mkdir(parents=True)
    (rules_dir / "routes.toml").write_text('[[routes]]\nname = "first"\ntargets = ["outbox"]\n')

    class Unlucky(RuleHolder):
        """The first reload fails in a way no rules file should make it fail."""

        failed = False

        def reload(self) -> Any:
            if not self.failed:
                self.failed = True
                raise fault()
            return super().reload()

    holder = Unlucky(config)
    reloader = Reloader(holder)
    reloader.start()
    try:
        (rules_dir / "routes.toml").write_text('[[routes]]\nname = "second"\ntargets = ["outbox"]\n')
        reloader.request()
        wait_for(lambda: reloader.supervisor.state().item_failures == 1)
        assert [r.name for r in holder.current.routes] == ["first"]  # the old rules stay in force
        reloader.request()
        wait_for(lambda: [r.name for r in holder.current.routes] == ["second"])
        state = reloader.supervisor.state()
        assert state.running and state.restarts == 0
        assert (state.last_error or "").startswith(type(fault()).__name__)
    finally:
        reloader.stop()


# -- health

def ready(url: str) -> httpx.Response:
    return httpx.get(f"{url}/health/ready", timeout=15)


def degraded(r: httpx.Response, component: str, reason: str) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == "urn:xoev-hub:problem:not-ready"
    assert body["components"][component]["status"] == "degraded"
    assert reason in body["components"][component]["reason"] and f"{component}: " in body["detail"], body


def submit_and_finish(url: str, engine: Engine) -> None:
    r = httpx.post(f"{url}/api/v1/messages", content=XBAU_VALID.read_bytes(),
                   headers={"Authorization": f"Bearer {SENDER_TOKEN}", "Content-Type": "application/xml"})
    assert r.status_code == 202, r.text
    message_id = uuid.UUID(r.json()["id"])
    wait_for(lambda: store.get(engine, message_id).status == "acknowledged")  # type: ignore[union-attr]


@pytest.fixture
def hub(db_url: str, engine: Engine, tmp_path: Path) -> Iterator[tuple[str, Engine, Any]]:
    config = hub_config(db_url, tmp_path,
                        storage={"blob_dir": str(tmp_path / "blobs")}, limits={"blob_min_free_bytes": 0})
    with serve_in_thread(build_app(config, engine, embedded_worker=True)) as url:
        yield url, engine, config


def test_live_and_ready_when_all_is_well(hub: tuple[str, Engine, Any]) -> None:
    url, engine, _ = hub
    assert httpx.get(f"{url}/health/live").json() == {"status": "ok", "live": True}
    wait_for(lambda: ready(url).status_code == 200)
    body = ready(url).json()
    assert body["status"] == "ok" and set(body["components"]) == {"database", "workers", "blob_store"}
    assert body["components"]["workers"]["running"] == 1 and body["components"]["workers"]["embedded"][0]["running"]
    text_ = ready(url).text
    for secret in ("postgres@", str(engine.url.database), "blobs", os.uname().nodename):
        assert secret not in text_, secret
    submit_and_finish(url, engine)


@pytest.mark.postgres
def test_ready_is_503_while_postgres_refuses_connections_and_200_after(pg_url: str, pg_template: Engine,
                                                                       tmp_path: Path) -> None:
    engine = make_engine(pg_url)
    name = engine.url.database
    config = hub_config(pg_url, tmp_path, storage={"blob_dir": str(tmp_path / "blobs")},
                        limits={"blob_min_free_bytes": 0})
    try:
        with serve_in_thread(build_app(config, engine, embedded_worker=True)) as url:
            wait_for(lambda: ready(url).status_code == 200)
            (accepted,) = accept_many(engine, 1)
            with pg_template.connect() as admin:
                admin.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
                admin.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                              {"n": name})
            try:
                degraded(ready(url), "database", "refused the connection")
                assert httpx.get(f"{url}/health/live").status_code == 200  # no database needed
                assert ready(url).json()["components"]["workers"]["running"] is None  # unknown, not "none"
            finally:
                with pg_template.connect() as admin:
                    admin.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            wait_for(lambda: ready(url).status_code == 200, timeout=30)
            wait_for(lambda: store.get(engine, accepted).status == "acknowledged")  # type: ignore[union-attr]
            submit_and_finish(url, engine)
    finally:
        engine.dispose()


def test_ready_is_503_while_the_sqlite_write_lock_is_held_elsewhere(sqlite_url: str, tmp_path: Path) -> None:
    engine = make_engine(sqlite_url)
    config = hub_config(sqlite_url, tmp_path, storage={"blob_dir": str(tmp_path / "blobs")},
                        limits={"blob_min_free_bytes": 0})
    try:
        with serve_in_thread(build_app(config, engine, embedded_worker=True)) as url:
            wait_for(lambda: ready(url).status_code == 200)
            holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")  # a runaway process holding the write lock
            try:
                degraded(ready(url), "database", "did not answer in time")
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            assert ready(url).status_code == 200
            submit_and_finish(url, engine)
    finally:
        engine.dispose()


def test_ready_is_503_while_the_blob_store_is_not_writable(hub: tuple[str, Engine, Any]) -> None:
    url, engine, config = hub
    blobs: Path = config.storage.blob_dir
    wait_for(lambda: ready(url).status_code == 200)
    away = blobs.with_name("blobs.away")
    blobs.rename(away)
    blobs.write_text("not a directory")
    try:
        degraded(ready(url), "blob_store", "not writable (FileExistsError)")
    finally:
        blobs.unlink()
        away.rename(blobs)
    assert ready(url).status_code == 200
    submit_and_finish(url, engine)


def test_ready_is_503_when_the_blob_store_runs_out_of_space(db_url: str, engine: Engine, tmp_path: Path) -> None:
    config = hub_config(db_url, tmp_path,
                        storage={"blob_dir": str(tmp_path / "blobs")}, limits={"blob_min_free_bytes": 2**62})
    with serve_in_thread(build_app(config, engine, embedded_worker=True)) as url:
        r = ready(url)
        degraded(r, "blob_store", f"less than {2**62}")
        assert r.json()["components"]["blob_store"]["free_bytes"] < 2**62
        submit_and_finish(url, engine)  # accepting and processing go on: the report says what to do


@pytest.mark.postgres
def test_worker_processes_are_seen_through_the_database(pg_url: str, tmp_path: Path) -> None:
    """An API process without a worker is not ready until an `xhub worker` process runs (on another machine,
    as far as it knows: PostgreSQL, the scale-out set-up); a worker that stops cleanly removes its heartbeat,
    one that died leaves a stale one."""
    db_url = pg_url
    engine = make_engine(db_url)
    config = hub_config(db_url, tmp_path, storage={"blob_dir": str(tmp_path / "blobs")},
                        limits={"blob_min_free_bytes": 0})
    toml = write_config(tmp_path / "hub.toml", db_url, "http://127.0.0.1:9/unused")
    try:
        with serve_in_thread(build_app(config, engine, embedded_worker=False)) as url:
            degraded(ready(url), "workers", "no worker is running")
            with engine.begin() as conn:  # what a killed worker leaves behind
                old = utcnow() - timedelta(seconds=STALE_AFTER_SECONDS + 5)
                conn.execute(insert(LoopHeartbeat).values(
                    loop_id="worker@gone:1:abc", kind="worker", started_at=old, beat_at=old, items=0, restarts=0))
            degraded(ready(url), "workers", "no worker is running")
            process = subprocess.Popen(xhub(toml, "worker"))
            try:
                wait_for(lambda: ready(url).status_code == 200, timeout=60)
                workers = ready(url).json()["components"]["workers"]
                assert (workers["running"], workers["stale"]) == (1, 1)
            finally:
                process.send_signal(signal.SIGTERM)
                assert process.wait(30) == 0
            degraded(ready(url), "workers", "no worker is running")
    finally:
        engine.dispose()


# -- health of the FIT-Connect poller

def test_ready_is_503_while_the_delivery_service_hangs_and_200_after(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> None:
    stalls: list[Stall] = []

    def wrap(app: Any) -> Stall:
        stalls.append(Stall(app))
        return stalls[0]

    with world(request, tmp_path_factory, "sqlite", wrap=wrap, poll_interval_seconds=0.2) as w, \
            serve_in_thread(build_app(w.config, w.engine, embedded_worker=True)) as url:
        wait_for(lambda: ready(url).status_code == 200)
        waiting = w.sender.good()
        stalls[0].closed.set()
        try:
            wait_for(lambda: ready(url).status_code == 503, timeout=10)
            degraded(ready(url), "fitconnect_poller", "no successful poll for")
        finally:
            stalls[0].closed.clear()
        wait_for(lambda: ready(url).status_code == 200, timeout=20)
        wait_for(lambda: w.sender.decisions(waiting.case_id), timeout=20)
        w.assert_accepted(waiting)
        poller = ready(url).json()["components"]["fitconnect_poller"]
        assert poller["restarts"] == 0 and poller["submissions_failing"] == 0


def test_a_submission_arriving_while_the_blob_store_is_broken_waits_and_is_taken_in_after(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> None:
    with world(request, tmp_path_factory, "sqlite", poll_interval_seconds=0.1) as w, \
            serve_in_thread(build_app(w.config, w.engine, embedded_worker=True)) as url:
        wait_for(lambda: ready(url).status_code == 200)
        blobs = w.config.storage.blob_dir
        shutil.rmtree(blobs)
        blobs.write_text("not a directory")
        try:
            sent = w.sender.good()
            wait_for(lambda: (failures(w, sent.submission_id) or (0,))[0] >= 2)
            r = ready(url)
            degraded(r, "blob_store", "not writable")
            assert r.json()["components"]["fitconnect_poller"]["submissions_failing"] == 1
            assert failures(w, sent.submission_id)[1] == 0  # type: ignore[index]  # transient: never refused
        finally:
            blobs.unlink()
        wait_for(lambda: w.sender.decisions(sent.case_id), timeout=20)
        w.assert_accepted(sent)
        assert ready(url).status_code == 200 and failures(w, sent.submission_id) is None
        assert GOOD_DATA in (store.payload(w.engine, w.message(sent.submission_id).id)[0].body or b"")  # type: ignore[union-attr]
