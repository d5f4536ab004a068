"""The state machine on both backends: legal moves write one event, illegal ones change nothing, and a
transition's fields cannot reach a column the guard owns."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from sqlalchemy import Engine

from hub import store
from hub.models import Message
from hub.statemachine import (
    ACTIVE,
    FIELDS,
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    Status,
    Transition,
    transition,
)


def _new(engine: Engine) -> uuid.UUID:
    message, created = store.accept(
        engine,
        store.NewMessage("t1", "rest", "portal", [store.Part("payload", "application/xml", b"<a/>")]),
        actor="sender:portal",
    )
    assert created
    return message.id


def test_table_is_consistent() -> None:
    # Every status is reachable, and every terminal status except dead (requeue) leads nowhere but to purged
    # (retention), which is a dead end.
    reachable = set(TRANSITIONS) | {Status.RECEIVED}
    assert reachable == set(Status)
    for status in TERMINAL - {Status.DEAD}:
        assert {to for to, sources in TRANSITIONS.items() if status in sources} <= {Status.PURGED}
    assert not any(Status.PURGED in sources for sources in TRANSITIONS.values())
    assert Status.RETRY_WAIT in ACTIVE and not (ACTIVE & TERMINAL)


def test_transition_writes_event_in_same_transaction(engine: Engine) -> None:
    mid = _new(engine)
    with engine.begin() as conn:
        old = transition(conn, mid, Status.VALIDATED, Transition(reason="looks fine", detail={"verdict": "valid"}),
                         actor="worker:w1")
    assert old is Status.RECEIVED
    assert store.get(engine, mid).status == "validated"  # type: ignore[union-attr]
    events = store.events(engine, mid)
    assert [(e.from_status, e.to_status, e.actor) for e in events] == [
        (None, "received", "sender:portal"),
        ("received", "validated", "worker:w1"),
    ]
    assert events[-1].reason == "looks fine" and events[-1].detail == {"verdict": "valid"}


def test_illegal_transition_raises_and_leaves_no_trace(engine: Engine) -> None:
    mid = _new(engine)
    with pytest.raises(IllegalTransition, match="cannot move to delivered"), engine.begin() as conn:
        transition(conn, mid, Status.DELIVERED, Transition(reason="skip ahead"), actor="worker:w1")
    assert store.get(engine, mid).status == "received"  # type: ignore[union-attr]
    assert len(store.events(engine, mid)) == 1


def test_unknown_message_raises(engine: Engine) -> None:
    with pytest.raises(IllegalTransition), engine.begin() as conn:
        transition(conn, uuid.uuid4(), Status.VALIDATED, Transition(reason="x"), actor="worker:w1")


def test_fenced_transition_needs_the_lease(engine: Engine) -> None:
    mid = _new(engine)
    with pytest.raises(IllegalTransition, match="lease held by w2"), engine.begin() as conn:
        transition(conn, mid, Status.VALIDATED, Transition(reason="x"), actor="worker:w2", lease_owner="w2")
    assert store.get(engine, mid).status == "received"  # type: ignore[union-attr]


def test_narrowing_outside_the_table_is_a_programming_error(engine: Engine) -> None:
    mid = _new(engine)
    with pytest.raises(ValueError, match="not a transition"), engine.begin() as conn:
        transition(conn, mid, Status.VALIDATED, Transition(reason="x"), actor="a", from_statuses={Status.ROUTED})


def test_terminal_status_releases_the_lease(engine: Engine) -> None:
    mid = _new(engine)
    with engine.begin() as conn:
        from sqlalchemy import update

        from hub.models import Message, utcnow

        conn.execute(update(Message).where(Message.id == mid).values(lease_owner="w1", lease_expires_at=utcnow()))
        transition(conn, mid, Status.REJECTED, Transition(reason="bad", last_error="bad"), actor="worker:w1",
                   lease_owner="w1")
    message = store.get(engine, mid)
    assert message is not None
    assert (message.status, message.lease_owner, message.last_error) == ("rejected", None, "bad")


# -- Transition.fields: a whitelist, so that nothing reaches a guarded column around the guard

GUARDED = ["status", "lease_owner", "lease_expires_at", "id", "attempts", "next_attempt_at", "resume_status",
           "payload_sha256", "tenant", "sender", "created_at", "no_such_column"]


@pytest.mark.parametrize("column", GUARDED)
def test_fields_outside_the_whitelist_raise_before_any_sql(column: str) -> None:
    with pytest.raises(ValueError, match=f"cannot set {column} through fields"):
        Transition(reason="sneaky", fields={"route": "all", column: "x"})


def test_widening_fields_later_raises_too() -> None:
    change = Transition(reason="x", fields={"route": "all"})
    with pytest.raises(ValueError, match="cannot set status"):
        replace(change, fields={**(change.fields or {}), "status": "acknowledged"})  # as the runner merges facts
    with pytest.raises(TypeError):
        change.fields["status"] = "acknowledged"  # type: ignore[index]


def test_whitelisted_fields_are_columns_the_guard_does_not_own() -> None:
    columns = set(Message.__table__.columns.keys())
    assert columns >= FIELDS
    assert not FIELDS & {"id", "status", "resume_status", "attempts", "next_attempt_at", "lease_owner",
                         "lease_expires_at", "last_error", "updated_at"}


def test_whitelisted_fields_are_written_with_the_transition(engine: Engine) -> None:
    mid = _new(engine)
    learnt = {"standard": "xbau", "standard_version": "2.6", "message_type": "baugenehmigung.antrag.0200",
              "verdict": "valid", "xoev_message_uuid": "u-1", "attributes": {"region": "09184119"}}
    assert set(learnt) | {"route"} == FIELDS  # every field the stages set; route follows below
    with engine.begin() as conn:
        transition(conn, mid, Status.VALIDATED, Transition(reason="checked", fields=learnt), actor="worker:w1")
        transition(conn, mid, Status.ROUTED, Transition(reason="routed", fields={"route": "all"}), actor="worker:w1")
    message = store.get(engine, mid)
    assert message is not None and message.status == "routed" and message.route == "all"
    assert {k: getattr(message, k) for k in learnt} == learnt
