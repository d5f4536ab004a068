"""Claiming on both backends: due only, one owner, expiry and take-over."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import Engine, update

from hub import queue, store
from hub.models import Message, utcnow

LEASE = timedelta(seconds=30)


def _new(engine: Engine, n: int = 1) -> list[uuid.UUID]:
    ids = []
    for i in range(n):
        message, _ = store.accept(
            engine,
            store.NewMessage("t1", "rest", "portal",
                             [store.Part("payload", "application/xml", f"<a n='{i}'/>".encode())]),
            actor="sender:portal",
        )
        ids.append(message.id)
    return ids


def test_claims_each_message_once(engine: Engine) -> None:
    ids = _new(engine, 3)
    claims = [queue.claim_next(engine, f"w{i}", LEASE) for i in range(4)]
    got = [c.message_id for c in claims if c is not None]
    assert sorted(got) == sorted(ids)  # oldest first, each once
    assert claims[3] is None


def test_not_due_and_terminal_messages_are_not_claimed(engine: Engine) -> None:
    later, rejected = _new(engine, 2)
    with engine.begin() as conn:
        conn.execute(update(Message).where(Message.id == later).values(next_attempt_at=utcnow() + timedelta(hours=1)))
        conn.execute(update(Message).where(Message.id == rejected).values(status="rejected"))
    assert queue.claim_next(engine, "w1", LEASE) is None


def test_expired_lease_is_taken_over_and_noted(engine: Engine) -> None:
    (mid,) = _new(engine)
    first = queue.claim_next(engine, "w1", LEASE)
    assert first is not None and first.previous_owner is None
    assert queue.claim_next(engine, "w2", LEASE) is None  # live lease
    with engine.begin() as conn:
        # the lease ran out: a claim moves next_attempt_at with the lease's expiry, so both are in the past now
        past = utcnow() - timedelta(seconds=1)
        conn.execute(update(Message).where(Message.id == mid).values(lease_expires_at=past, next_attempt_at=past))
    second = queue.claim_next(engine, "w2", LEASE)
    assert second is not None and second.previous_owner == "w1"
    assert store.get(engine, mid).lease_owner == "w2"  # type: ignore[union-attr]
    notes = [e for e in store.events(engine, mid) if e.kind == "note"]
    assert notes and "lease of w1 expired; taken over by w2" in notes[-1].reason
    with engine.begin() as conn:
        assert not queue.renew(conn, mid, "w1", LEASE)  # the old owner cannot extend it
        assert queue.renew(conn, mid, "w2", LEASE)


def test_release_makes_it_claimable_at_once(engine: Engine) -> None:
    (mid,) = _new(engine)
    assert queue.claim_next(engine, "w1", LEASE) is not None
    with engine.begin() as conn:
        assert queue.release(conn, mid, "w1")
        assert not queue.release(conn, mid, "w1")
    claim = queue.claim_next(engine, "w2", LEASE)
    assert claim is not None and claim.previous_owner is None
