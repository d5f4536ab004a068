"""Worker processes against a real database: exactly once, crash recovery, graceful shutdown.

These start real ``xhub worker`` processes and deliver over real HTTP to the recording sink, which
records every request it sees, so a double delivery cannot hide.
"""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from hub import store
from hub.db import make_engine
from sandbox.recorder import create_recorder
from tests.support import accept_many, running, wait_for, write_config, xhub

pytestmark = pytest.mark.slow


@pytest.fixture
def sink() -> Iterator[str]:
    with running(create_recorder()) as url:
        yield url


def _accept(engine: Engine, n: int) -> list[uuid.UUID]:
    return accept_many(engine, n, lambda i: f"<antrag xmlns='urn:test'><nr>{i}</nr></antrag>".encode())


def _received(sink: str) -> dict[str, object]:
    data: dict[str, object] = httpx.get(f"{sink}/_received").json()
    return data


@pytest.mark.postgres
def test_four_worker_processes_deliver_each_message_exactly_once(pg_url: str, sink: str, tmp_path: Path) -> None:
    engine = make_engine(pg_url)
    total = 120
    ids = _accept(engine, total)
    config = write_config(tmp_path / "hub.toml", pg_url, f"{sink}/inbox/cases")
    procs = [subprocess.Popen(xhub(config, "worker", "--exit-when-idle")) for _ in range(4)]
    for p in procs:
        assert p.wait(timeout=240) == 0
    statuses = Counter(m.status for m in store.list_messages(engine, limit=1000))
    assert statuses == {"acknowledged": total}
    received = _received(sink)
    keys = Counter(item["idempotency_key"] for item in received["items"])  # type: ignore[index, union-attr]
    assert len(keys) == total and set(keys.values()) == {1}, "a message was delivered twice"
    assert keys.keys() == {f"xhub-{i}-registry" for i in ids}
    workers = set()
    for mid in ids:
        transitions = [e for e in store.events(engine, mid) if e.kind == "transition"]  # type: ignore[arg-type]
        assert [(e.from_status, e.to_status) for e in transitions].count(("routed", "delivered")) == 1
        workers.add(transitions[-1].actor)
    assert len(workers) >= 2, "the test must actually run workers side by side"
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_killed_worker_message_completes_after_lease_expiry(backend: str, request: pytest.FixtureRequest,
                                                            sink: str, tmp_path: Path) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    engine = make_engine(url)
    (mid,) = _accept(engine, 1)
    httpx.post(f"{sink}/_behaviour", json={"delay_seconds": 120})
    config = write_config(tmp_path / "hub.toml", url, f"{sink}/inbox/cases", lease_seconds=2)
    first = subprocess.Popen(xhub(config, "worker"))
    wait_for(lambda: _received(sink)["in_flight"] == 1, timeout=60)
    victim = store.get(engine, mid)  # type: ignore[arg-type]
    # A batch's results are written when it is done: in the database the message is still as claimed.
    assert victim is not None and victim.status == "received" and victim.lease_owner
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    httpx.post(f"{sink}/_behaviour", json={"delay_seconds": 0})
    second = subprocess.Popen(xhub(config, "worker", "--max-messages", "1"))
    assert second.wait(timeout=120) == 0
    done = store.get(engine, mid)  # type: ignore[arg-type]
    assert done is not None and done.status == "acknowledged" and done.lease_owner is None
    reasons = [e.reason for e in store.events(engine, mid)]  # type: ignore[arg-type]
    assert any(f"lease of {victim.lease_owner} expired" in r for r in reasons)
    items = _received(sink)["items"]
    # The killed worker's request reached the target; the retry carried the same key and was recognised.
    assert [(i["idempotency_key"], i["duplicate"]) for i in items] == [  # type: ignore[index, union-attr]
        (f"xhub-{mid}-registry", False), (f"xhub-{mid}-registry", True)]
    engine.dispose()


def test_sigterm_finishes_the_current_message_then_exits(sqlite_url: str, sink: str, tmp_path: Path) -> None:
    engine = make_engine(sqlite_url)
    first_id, second_id = _accept(engine, 2)
    httpx.post(f"{sink}/_behaviour", json={"delay_seconds": 2})
    config = write_config(tmp_path / "hub.toml", sqlite_url, f"{sink}/inbox/cases")
    worker = subprocess.Popen(xhub(config, "worker"))
    wait_for(lambda: _received(sink)["in_flight"] == 1, timeout=60)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    first, second = store.get(engine, first_id), store.get(engine, second_id)  # type: ignore[arg-type]
    assert first is not None and first.status == "acknowledged"
    assert second is not None and second.status == "received" and second.lease_owner is None


def test_sighup_reloads_rules_and_a_broken_reload_keeps_the_old_ones(sqlite_url: str, sink: str,
                                                                      tmp_path: Path) -> None:
    config = write_config(tmp_path / "hub.toml", sqlite_url, f"{sink}/inbox/cases")
    config.write_text(config.read_text().replace('[[routes]]\nname = "all"\ntargets = ["registry"]\n', ""))
    routes = tmp_path / "rules" / "routes.toml"  # write_config points rules_dir here
    routes.parent.mkdir()
    routes.write_text('[[routes]]\nname = "first"\ntargets = ["registry"]\n')
    log = tmp_path / "worker.log"
    with log.open("w") as err:
        worker = subprocess.Popen(xhub(config, "worker", log_level="info"), stderr=err)
    try:
        wait_for(lambda: "started" in log.read_text(), timeout=30)
        routes.write_text('[[routes]]\nname = "second"\ntargets = ["registry"]\n')
        worker.send_signal(signal.SIGHUP)
        wait_for(lambda: "rules reloaded: 1 routes" in log.read_text(), timeout=30)
        routes.write_text('[[routes]]\nname = "broken"\ntargets = ["nowhere"]\n')
        worker.send_signal(signal.SIGHUP)
        wait_for(lambda: "rules not reloaded, the previous ones stay in force" in log.read_text(), timeout=30)
        assert "unknown target 'nowhere'" in log.read_text()
        assert worker.poll() is None  # still running, on the rules it had
    finally:
        worker.terminate()
        assert worker.wait(timeout=60) == 0
