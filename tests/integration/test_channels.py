"""The pipeline asks a message's channel what only the protocol knows (:class:`hub.ports.Channel`).

A channel the core has never heard of ("xta2", registered here as the composition root would) is asked to
verify its messages, to accept them once delivered and to reject them with the stage that refused them;
its external ids are unique per channel. A channel nobody registered has no answer-back, and FIT-Connect
messages without a configured FIT-Connect channel wait in ``dead`` for an operator.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine

from hub import store
from hub.errors import HubError, Invalid, Retriable
from hub.models import Message
from hub.ports import Channels
from tests.support import XBAU_VALID, hub_config
from xhub import registry
from xhub.runtime import make_worker


class Xta2:
    """A channel whose senders expect a decision; it refuses at intake what carries the reference "refused"."""

    name = "xta2"
    answers = True

    def __init__(self, failing_accepts: int = 0) -> None:
        self.calls: list[tuple[str, uuid.UUID, str | None]] = []
        self.failing_accepts = failing_accepts  # the mailbox is down for this many accepts

    def verify(self, message: Message) -> None:
        if message.sender_reference == "refused":
            raise Invalid("the mailbox said the message is damaged", detail={"xta2": "damaged"})

    def accept(self, message: Message) -> str:
        self.calls.append(("accept", message.id, None))
        if self.failing_accepts:
            self.failing_accepts -= 1
            raise Retriable("the mailbox does not answer")
        return "xta2 receipt sent"

    def reject(self, message: Message, error: HubError, stage: str) -> str:
        self.calls.append(("reject", message.id, stage))
        return f"xta2 rejection sent ({error})"

    def close(self) -> None:
        return None


def accept(engine: Engine, channel: str, body: bytes, external_id: str | None = None,
           reference: str | None = None) -> uuid.UUID:
    message, _ = store.accept(engine, store.NewMessage(
        "memmingen", channel, "mailbox", [store.Part("payload", "application/xml", body)], sender_reference=reference,
        external_id=external_id, case_id="case-1" if external_id else None), actor=f"{channel}:test")
    return message.id


def status(engine: Engine, message_id: uuid.UUID) -> str:
    found = store.get(engine, message_id)
    assert found is not None
    return found.status


def test_the_pipeline_asks_an_unknown_channel(engine: Engine, db_url: str, tmp_path: Path) -> None:
    channel = Xta2()
    good = accept(engine, "xta2", XBAU_VALID.read_bytes(), "x-1")
    refused = accept(engine, "xta2", XBAU_VALID.read_bytes(), "x-2", reference="refused")
    broken = accept(engine, "xta2", b"<not-closed>", "x-3")
    make_worker(hub_config(db_url, tmp_path), engine, channels=Channels([channel])).run(exit_when_idle=True)
    assert (status(engine, good), status(engine, refused), status(engine, broken)) == (
        "acknowledged", "rejected", "rejected")
    assert sorted(channel.calls, key=str) == sorted([("accept", good, None), ("reject", refused, "verify"),
                                                     ("reject", broken, "verify")], key=str)
    trail = store.events(engine, refused)
    assert trail[-1].reason.endswith("xta2 rejection sent (the mailbox said the message is damaged)")
    assert trail[-1].detail is not None and trail[-1].detail["xta2"] == "damaged"
    assert store.events(engine, good)[-1].reason == "acknowledge: xta2 receipt sent"


def test_an_accept_that_failed_is_sent_again(engine: Engine, db_url: str, tmp_path: Path) -> None:
    """The sender has not been told until an accept went through: the retry sends it, it does not skip it."""
    channel = Xta2(failing_accepts=1)
    message_id = accept(engine, "xta2", XBAU_VALID.read_bytes(), "x-4")
    make_worker(hub_config(db_url, tmp_path), engine, channels=Channels([channel])).run(exit_when_idle=True)
    assert status(engine, message_id) == "acknowledged"
    assert channel.calls == [("accept", message_id, None), ("accept", message_id, None)]
    assert store.events(engine, message_id)[-1].reason == "acknowledge: xta2 receipt sent"


def test_external_ids_are_unique_per_channel(engine: Engine) -> None:
    accept(engine, "xta2", b"<a/>", "same-id")
    with pytest.raises(store.ExternalIdKnown):
        accept(engine, "xta2", b"<b/>", "same-id")
    accept(engine, "fitconnect", b"<c/>", "same-id")  # another channel's id space


def test_a_channel_nobody_registered_has_no_answer_back(engine: Engine, db_url: str, tmp_path: Path) -> None:
    message_id = accept(engine, "carrier-pigeon", XBAU_VALID.read_bytes())
    make_worker(hub_config(db_url, tmp_path), engine, channels=Channels()).run(exit_when_idle=True)
    assert status(engine, message_id) == "acknowledged"
    assert "has no answer-back" in store.events(engine, message_id)[-1].reason


def test_fitconnect_messages_need_the_fitconnect_channel(engine: Engine, db_url: str, tmp_path: Path) -> None:
    """Stored while FIT-Connect was configured, processed after its section was removed: nobody can answer
    the sender, so the message waits in dead (requeued once the section is back) instead of going silent."""
    config = hub_config(db_url, tmp_path)
    assert config.fitconnect is None
    message_id = accept(engine, "fitconnect", XBAU_VALID.read_bytes(), str(uuid.uuid4()))
    make_worker(config, engine, channels=registry.channels(config)).run(exit_when_idle=True)
    found = store.get(engine, message_id)
    assert found is not None and found.status == "dead"
    assert found.last_error == "channel fitconnect needs an answer, but it is not configured"
