"""Delivery status on both backends: an enum with its own guarded transitions, one ``delivery`` event per
attempt in the same transaction, and a CHECK constraint that refuses any other value."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.exc import IntegrityError, StatementError

from hub import store
from hub.models import Delivery
from hub.statemachine import (
    DELIVERY_TRANSITIONS,
    DeliveryChange,
    DeliveryStatus,
    IllegalDeliveryTransition,
    move_delivery,
)

D = DeliveryStatus


def _routed(engine: Engine, targets: tuple[str, ...] = ("registry",)) -> tuple[uuid.UUID, list[Delivery]]:
    message, _ = store.accept(engine, store.NewMessage("t1", "rest", "portal", [
        store.Part("payload", "application/xml", b"<a/>")]), actor="sender:portal")
    with engine.begin() as conn:
        store.create_deliveries(conn, message.id, [(t, None) for t in targets])
    return message.id, store.deliveries(engine, message.id)


def _delivery_events(engine: Engine, mid: uuid.UUID) -> list[tuple[str | None, str | None, str, dict[str, object]]]:
    return [(e.from_status, e.to_status, e.reason, e.detail or {}) for e in store.events(engine, mid)
            if e.kind == "delivery"]


def test_table_is_consistent() -> None:
    # Pending is only ever the start (created by route); delivered is the end; nothing goes back to pending.
    assert set(DELIVERY_TRANSITIONS) == {D.DELIVERED, D.FAILED}
    assert not any(D.DELIVERED in sources for sources in DELIVERY_TRANSITIONS.values())
    assert D.PENDING not in DELIVERY_TRANSITIONS


def test_attempts_move_the_row_and_write_one_event_each(engine: Engine) -> None:
    mid, (row,) = _routed(engine)
    with engine.begin() as conn:
        old = move_delivery(conn, row.id, D.FAILED, DeliveryChange(
            reason="delivery to registry failed: 503", response={"status_code": 503}, error="503",
            detail={"error": "Retriable", "status_code": 503}), actor="worker:w1")
    assert old is D.PENDING
    with engine.begin() as conn:  # a retry that fails again: failed → failed, guard read under the row lock
        assert move_delivery(conn, row.id, D.FAILED, DeliveryChange(reason="again", error="503",
                                                                    detail={"target": "elsewhere"}),
                             actor="worker:w2") is D.FAILED
    with engine.begin() as conn:
        move_delivery(conn, row.id, D.DELIVERED, DeliveryChange(
            reason="delivered to registry", response={"status_code": 201}, detail={"status_code": 201}),
            actor="worker:w2", from_statuses={D.FAILED})
    (done,) = store.deliveries(engine, mid)
    assert (done.status, done.attempts, done.last_error, done.response) == (D.DELIVERED, 3, None,
                                                                           {"status_code": 201})
    assert done.delivered_at is not None
    assert _delivery_events(engine, mid) == [
        ("pending", "failed", "delivery to registry failed: 503",
         {"error": "Retriable", "status_code": 503, "target": "registry", "attempt": 1}),
        ("failed", "failed", "again", {"target": "registry", "attempt": 2}),  # the row's target, whatever detail says
        ("failed", "delivered", "delivered to registry", {"status_code": 201, "target": "registry", "attempt": 3}),
    ]
    assert [e.actor for e in store.events(engine, mid) if e.kind == "delivery"] == ["worker:w1", "worker:w2",
                                                                                   "worker:w2"]


@pytest.mark.parametrize(("start", "to", "narrowed"), [
    (D.DELIVERED, D.FAILED, None),  # a stale worker cannot undo a delivery
    (D.DELIVERED, D.DELIVERED, None),  # nor record it twice
    (D.FAILED, D.DELIVERED, {D.PENDING}),  # the caller's view of the row is out of date
])
def test_illegal_move_raises_and_leaves_no_trace(engine: Engine, start: DeliveryStatus, to: DeliveryStatus,
                                                 narrowed: set[DeliveryStatus] | None) -> None:
    mid, (row,) = _routed(engine)
    with engine.begin() as conn:
        move_delivery(conn, row.id, start, DeliveryChange(reason="first"), actor="worker:w1")
    (before,) = store.deliveries(engine, mid)
    trail = store.events(engine, mid)
    with pytest.raises(IllegalDeliveryTransition, match=f"cannot move to {to}"), engine.begin() as conn:
        move_delivery(conn, row.id, to, DeliveryChange(reason="stale", error="x"), actor="worker:w0",
                      from_statuses=narrowed)
    (after,) = store.deliveries(engine, mid)
    assert (after.status, after.attempts, after.updated_at) == (before.status, before.attempts, before.updated_at)
    assert len(store.events(engine, mid)) == len(trail)


def test_unknown_delivery_raises(engine: Engine) -> None:
    with pytest.raises(IllegalDeliveryTransition), engine.begin() as conn:
        move_delivery(conn, 987654, D.DELIVERED, DeliveryChange(reason="x"), actor="worker:w1")


def test_narrowing_outside_the_table_is_a_programming_error(engine: Engine) -> None:
    _, (row,) = _routed(engine)
    with pytest.raises(ValueError, match="not a transition of a delivery"), engine.begin() as conn:
        move_delivery(conn, row.id, D.FAILED, DeliveryChange(reason="x"), actor="a", from_statuses={D.DELIVERED})


def test_the_database_refuses_any_other_status(engine: Engine) -> None:
    _, (row,) = _routed(engine)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        # A raw write, as a careless script would do it: the CHECK constraint stops it on both backends.
        conn.exec_driver_sql(f"UPDATE deliveries SET status = 'sent' WHERE id = {row.id}")
    with pytest.raises(StatementError, match="'sent' is not among the defined enum values"), engine.begin() as conn:
        # and the model refuses it before the database
        conn.execute(update(Delivery).where(Delivery.id == row.id).values(status="sent"))
