"""An operator's reject of a FIT-Connect message sends the sender a reject-submission (through the emulator);
an operator's resubmit keeps the submission's answer facts, so the corrected version is what gets accepted."""

from __future__ import annotations

from hub import actions, store
from hub.access import Caller
from hub.statemachine import Status, Transition, transition
from hub.users import Role
from tests.hostile.fitconnect_world import World, world_fixtures
from xhub import registry

sqlite_world, _pg_world, _both = world_fixtures()
OPERATOR = Caller("anna", Role.OPERATOR, frozenset({"memmingen"}), "user", "127.0.0.1")


def _stopped(w: World) -> store.Message:
    """A good submission, fetched and then stopped (dead) before the pipeline ran."""
    sent = w.sender.good()
    w.poll()
    message = w.message(sent.submission_id)
    assert message is not None
    with w.engine.begin() as conn:
        transition(conn, message.id, Status.DEAD, Transition(reason="test: stopped", resume_status=Status.RECEIVED),
                   actor="test", from_statuses={Status.RECEIVED})
    found = store.get(w.engine, message.id)
    assert found is not None
    return found


def test_reject_sends_the_reject_submission(sqlite_world: World) -> None:
    message = _stopped(sqlite_world)
    channels = registry.channels(sqlite_world.config)
    try:
        told = actions.reject(sqlite_world.engine, OPERATOR, message, "Antrag unvollständig", channels)
    finally:
        channels.close()
    assert "reject-submission sent" in told
    [(decision, problems)] = sqlite_world.sender.decisions(message.case_id or "")
    assert decision == "reject-submission" and problems
    assert store.get(sqlite_world.engine, message.id).status == "rejected"  # type: ignore[union-attr]
    trail = store.events(sqlite_world.engine, message.id)
    assert trail[-1].reason == told and trail[-2].actor == "user:anna"


def test_a_corrected_version_answers_the_same_submission(sqlite_world: World) -> None:
    message = _stopped(sqlite_world)
    body = store.payload(sqlite_world.engine, message.id)[0].body or b""
    channels = registry.channels(sqlite_world.config)
    try:
        new_id = actions.resubmit(sqlite_world.engine, OPERATOR, message, body, message.content_type, channels,
                                  None, "same data, tried again")
    finally:
        channels.close()
    sqlite_world.drain()
    new = store.get(sqlite_world.engine, new_id)
    assert new is not None and new.status == "acknowledged" and new.case_id == message.case_id
    assert len(store.payload(sqlite_world.engine, new_id)) == len(store.payload(sqlite_world.engine, message.id))
    [(decision, _)] = sqlite_world.sender.decisions(message.case_id or "")
    assert decision == "accept-submission"
