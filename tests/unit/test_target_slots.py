"""Target concurrency slots on both backends: held while a call is in flight, renewed by the holder's
heartbeat, freed when the call ends, and freed by expiry when the holder died."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select, update
from sqlalchemy.exc import OperationalError

from hub.errors import Deferred
from hub.models import Message, TargetSlot, utcnow
from hub.settings import TargetConfig
from hub.targets import TargetGate

LEASE = timedelta(seconds=30)


def _config(tmp_path: Path) -> TargetConfig:
    return TargetConfig.model_validate({"adapter": "file", "directory": str(tmp_path), "max_concurrency": 1})


def _slot(engine: Engine) -> tuple[str | None, Any]:
    with engine.connect() as conn:
        row = conn.execute(select(TargetSlot.holder, TargetSlot.expires_at).where(TargetSlot.target == "dms")).one()
    return row.holder, row.expires_at


def _age(engine: Engine, seconds: float) -> None:
    """Move the slot's expiry as if ``seconds`` had passed without a renewal."""
    _, expires_at = _slot(engine)
    with engine.begin() as conn:
        conn.execute(update(TargetSlot).where(TargetSlot.target == "dms")
                     .values(expires_at=expires_at - timedelta(seconds=seconds)))


def test_renewal_extends_the_slot_of_the_call_in_flight(engine: Engine, tmp_path: Path) -> None:
    gate = TargetGate(engine, "w1", LEASE)
    permit = gate.admit("dms", _config(tmp_path))
    _age(engine, 25)
    _, aged = _slot(engine)
    with engine.begin() as conn:
        assert gate.renew(conn) == []
    holder, renewed = _slot(engine)
    assert holder == "w1" and renewed > aged + timedelta(seconds=20)
    with pytest.raises(Deferred, match="concurrency limit"):
        TargetGate(engine, "w2", LEASE).admit("dms", _config(tmp_path))
    gate.record(permit, None)
    assert _slot(engine) == (None, None)
    with engine.begin() as conn:  # nothing in flight: nothing to renew, and the free slot stays free
        assert gate.renew(conn) == []
    assert _slot(engine) == (None, None)


def test_a_dead_holders_slot_frees_itself_and_is_not_renewed_by_it_again(engine: Engine, tmp_path: Path) -> None:
    crashed = TargetGate(engine, "w1", LEASE)
    crashed.admit("dms", _config(tmp_path))  # and then the process died: no renewal, no record
    _age(engine, 31)
    other = TargetGate(engine, "w2", LEASE)
    permit = other.admit("dms", _config(tmp_path))
    assert permit.slot == 0 and _slot(engine)[0] == "w2"
    # Had the first holder only been cut off from the database, its next renewal learns that the slot is gone
    # and lets it be.
    with engine.begin() as conn:
        assert crashed.renew(conn) == ["dms"]
        assert crashed.renew(conn) == []
    assert _slot(engine)[0] == "w2"


def test_a_slot_that_could_not_be_given_back_is_no_longer_renewed(engine: Engine, tmp_path: Path) -> None:
    gate = TargetGate(engine, "w1", LEASE)
    permit = gate.admit("dms", _config(tmp_path))
    gate.engine = create_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'hub.db'}")  # the database is away
    with pytest.raises(OperationalError):
        gate.record(permit, None)
    gate.engine.dispose()
    gate.engine = engine
    _, held_until = _slot(engine)
    with engine.begin() as conn:  # the heartbeat of the worker's next message must not keep it alive
        assert gate.renew(conn) == []
    assert _slot(engine) == ("w1", held_until)
    _age(engine, 31)
    assert TargetGate(engine, "w2", LEASE).admit("dms", _config(tmp_path)).slot == 0


def test_the_lease_heartbeat_renews_message_lease_and_slot_in_one_go(engine: Engine, tmp_path: Path) -> None:
    from hub import queue, store
    from hub.worker import _Heartbeat

    message, _ = store.accept(engine, store.NewMessage("t1", "rest", "portal", [
        store.Part("payload", "application/xml", b"<a/>")]), actor="sender:portal")
    assert queue.claim_next(engine, "w1", LEASE) is not None
    gate = TargetGate(engine, "w1", LEASE)
    gate.admit("dms", _config(tmp_path))
    _age(engine, 25)
    leases: dict[object, object] = {}
    heartbeat = _Heartbeat(engine, [message.id], "w1", LEASE, lambda: None, gate, leases)  # type: ignore[arg-type]
    heartbeat._renew()
    assert message.id in leases and heartbeat.message_ids == [message.id]
    held = store.get(engine, message.id)
    assert held is not None and held.lease_expires_at is not None and _slot(engine)[1] > utcnow() + LEASE * 0.9
    assert held.lease_expires_at > utcnow() + LEASE * 0.9
    # Taken over (the lease expired while this worker was frozen): the lease is not renewed again, but the
    # call in flight still occupies the target, so its slot is.
    with engine.begin() as conn:
        conn.execute(update(Message).where(Message.id == message.id).values(lease_owner="w2"))
    _age(engine, 25)
    heartbeat._renew()
    assert heartbeat.message_ids == []  # lost: never renewed again
    heartbeat._renew()
    assert _slot(engine)[0] == "w1" and _slot(engine)[1] > utcnow() + LEASE * 0.9
