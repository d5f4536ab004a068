"""Accepting messages: durable parts, first event, idempotency; delivery rows; on both backends."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine

from hub import store
from hub.blobs import BlobStore
from hub.models import DeliveryStatus


def _new(body: bytes, key: str | None = None, sender: str = "portal") -> store.NewMessage:
    return store.NewMessage(
        "t1", "rest", sender,
        [store.Part("payload", "application/xml", body), store.Part("attachment", "application/pdf", b"%PDF", "a.pdf")],
        idempotency_key=key,
    )


def test_accept_stores_parts_and_first_event(engine: Engine) -> None:
    message, created = store.accept(engine, _new(b"<a/>"), actor="sender:portal")
    assert created and message.status == "received"
    assert message.payload_sha256 == hashlib.sha256(b"<a/>").hexdigest()
    parts = store.payload(engine, message.id)
    assert [(p.role, p.body, p.name) for p in parts] == [("payload", b"<a/>", None), ("attachment", b"%PDF", "a.pdf")]
    (event,) = store.events(engine, message.id)
    assert (event.to_status, event.actor, event.kind) == ("received", "sender:portal", "transition")


def test_idempotency_key_returns_the_first_message(engine: Engine) -> None:
    first, created = store.accept(engine, _new(b"<a/>", "k1"), actor="s")
    again, created_again = store.accept(engine, _new(b"<a/>", "k1"), actor="s")
    assert created and not created_again and again.id == first.id
    other, created_other = store.accept(engine, _new(b"<a/>", "k1", sender="someone-else"), actor="s")
    assert created_other and other.id != first.id  # keys are per sender
    with pytest.raises(store.IdempotencyConflict) as info:
        store.accept(engine, _new(b"<b/>", "k1"), actor="s")
    assert info.value.existing_id == first.id


def test_concurrent_repeats_create_one_message(engine: Engine) -> None:
    results: list[object] = []

    def send() -> None:
        results.append(store.accept(engine, _new(b"<a/>", "race"), actor="s")[0].id)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and len(set(results)) == 1
    assert len(store.list_messages(engine)) == 1


def test_large_parts_go_to_the_blob_store_before_the_commit(engine: Engine, tmp_path: Path) -> None:
    big = tmp_path / "incoming.bin"
    big.write_bytes(b"\x00PDF" * 300_000)
    blobs = BlobStore(tmp_path / "blobs")
    message, _ = store.accept(engine, store.NewMessage("t1", "fitconnect", "fc", [
        store.Part("payload", "application/json", b"{}"),
        store.Part("attachment", "application/pdf", file=big, name="plan.pdf")]), actor="fc", blobs=blobs)
    payload, attachment = store.payload(engine, message.id)
    assert payload.body == b"{}" and attachment.body is None and attachment.size == 1_200_000
    with blobs.open(attachment.blob_path or "") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == attachment.sha256
    assert not big.exists()  # moved, not copied, on the same file system
    with pytest.raises(ValueError, match="need a blob store"):
        store.accept(engine, store.NewMessage("t1", "fitconnect", "fc", [
            store.Part("payload", "application/json", b"{}"), store.Part("attachment", "x/y", file=big)]), actor="x")


def test_deliveries_are_created_pending_once_per_target(engine: Engine) -> None:
    message, _ = store.accept(engine, _new(b"<a/>"), actor="sender:portal")
    with engine.begin() as conn:
        store.create_deliveries(conn, message.id, [("dms", "xbau-to-xdomea"), ("registry", None)])
    rows = store.deliveries(engine, message.id)
    assert [(d.target, d.mapping, d.status, d.attempts, d.idempotency_key) for d in rows] == [
        ("dms", "xbau-to-xdomea", DeliveryStatus.PENDING, 0, f"xhub-{message.id}-dms"),
        ("registry", None, DeliveryStatus.PENDING, 0, f"xhub-{message.id}-registry")]
    assert all(isinstance(d.status, DeliveryStatus) for d in rows)
    with engine.begin() as conn:  # a repeated route adds nothing, and changes nothing
        store.create_deliveries(conn, message.id, [("dms", None), ("registry", None)])
    again = store.deliveries(engine, message.id)
    assert [(d.id, d.mapping, d.status) for d in again] == [(d.id, d.mapping, d.status) for d in rows]
