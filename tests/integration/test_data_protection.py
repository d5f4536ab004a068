"""Encryption at rest (hub.sealing) and retention (hub.retention) on both backends, with a real worker delivering
to a real file target meanwhile."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from hub import retention, sealing, store
from hub.blobs import BlobStore
from hub.housekeeping import housekeeping_loops
from hub.models import Event, Message, MessagePart, utcnow
from hub.redact import redact
from hub.statemachine import Status
from tests.personal_data import find_personal_data, personal_strings
from tests.support import XBAU_VALID, hub_config, wait_for
from xhub.config import HubConfig
from xhub.runtime import install_keyring, make_worker

SECRET = "Erika Musterfrau, Maximilianstraße 12a"


def _payload(i: int = 0) -> bytes:
    """The XBau sample with a personal name in a comment, so that the plain text is easy to look for."""
    return XBAU_VALID.read_bytes().replace(b"?>", f"?><!-- {SECRET} #{i} -->".encode(), 1)


def _config(db_url: str, tmp_path: Path, key: Path | None, *, encryption: str = "auto",
            **overrides: Any) -> HubConfig:
    storage: dict[str, Any] = {"blob_dir": str(tmp_path / "blobs"), "encryption": encryption}
    if key is not None:
        storage["master_key_file"] = str(key)
    return hub_config(db_url, tmp_path, storage=storage, **overrides)


@pytest.fixture
def key(tmp_path: Path) -> Path:
    sealing.MasterKey.write_new(tmp_path / "master.key")
    return tmp_path / "master.key"


@pytest.fixture
def sealed(engine: Engine, db_url: str, tmp_path: Path, key: Path) -> Iterator[HubConfig]:
    config = _config(db_url, tmp_path, key)
    assert install_keyring(config, engine, env={}) is not None
    yield config
    sealing.install(engine, None)


def _accept(engine: Engine, body: bytes, *, attachment: Path | None = None, tenant: str = "memmingen",
            blobs: BlobStore | None = None) -> uuid.UUID:
    parts = [store.Part("payload", "application/xml", body)]
    if attachment is not None:
        parts.append(store.Part("attachment", "application/pdf", file=attachment, name="antrag.pdf"))
    message, _ = store.accept(engine, store.NewMessage(tenant, "rest", "portal", parts), actor="sender:portal",
                              blobs=blobs)
    return message.id


def _raw_parts(engine: Engine, message_id: uuid.UUID) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(MessagePart.part_no, MessagePart.body, MessagePart.key_id,
                                        MessagePart.blob_path).where(MessagePart.message_id == message_id)
                                 .order_by(MessagePart.part_no)))


def _pdf(tmp_path: Path, size: int = 3 * 1024 * 1024 + 17) -> tuple[Path, bytes]:
    data = (f"%PDF-1.7 {SECRET} ".encode() * (size // 40 + 1))[:size]
    path = tmp_path / f"upload-{uuid.uuid4().hex}.pdf"
    path.write_bytes(data)
    return path, data


# --------------------------------------------------------------------------------------------------
# Sealing


def test_payload_and_blob_are_sealed_at_rest_and_read_back(engine: Engine, sealed: HubConfig,
                                                           tmp_path: Path) -> None:
    blobs = BlobStore(sealed.storage.blob_dir)
    upload, pdf = _pdf(tmp_path)
    mid = _accept(engine, _payload(), attachment=upload, blobs=blobs)
    assert not upload.exists()  # the plain upload is gone; only the sealed file remains
    (_, body, key_id, _), (_, no_body, blob_key, blob_path) = _raw_parts(engine, mid)
    assert key_id is not None and blob_key == key_id and no_body is None
    assert bytes(body).startswith(sealing.RECORD_MAGIC) and SECRET.encode() not in bytes(body)
    stored = (sealed.storage.blob_dir / blob_path).read_bytes()
    assert stored.startswith(sealing.BLOB_MAGIC) and b"Musterfrau" not in stored and len(stored) > len(pdf)

    parts = store.payload(engine, mid)
    assert parts[0].body == _payload()
    assert b"".join(store.part_bytes(engine, parts[1], blobs)) == pdf

    worker = make_worker(sealed, engine)
    worker.run(exit_when_idle=True)
    done = store.get(engine, mid)
    assert done is not None and done.status == "acknowledged"
    assert (tmp_path / "outbox" / f"xhub-{mid}-outbox.xml").read_bytes() == _payload()


def test_the_senders_reference_is_sealed_too(engine: Engine, sealed: HubConfig, tmp_path: Path) -> None:
    reference = "Az. 4711/2026 Musterfrau, Erika"
    message, _ = store.accept(engine, store.NewMessage("memmingen", "rest", "portal", [
        store.Part("payload", "application/xml", _payload())], sender_reference=reference, idempotency_key="k1"),
        actor="sender:portal")
    assert message.sender_reference == reference
    with engine.connect() as conn:
        raw = conn.execute(select(Message.sender_reference).where(Message.id == message.id)).scalar_one()
    assert raw.startswith(sealing.TEXT_PREFIX) and "Musterfrau" not in raw
    got = store.get(engine, message.id)
    assert got is not None and got.sender_reference == reference
    assert store.list_messages(engine)[0].sender_reference == reference
    again, created = store.accept(engine, store.NewMessage("memmingen", "rest", "portal", [
        store.Part("payload", "application/xml", _payload())], sender_reference=reference, idempotency_key="k1"),
        actor="sender:portal")
    assert not created and again.sender_reference == reference  # the replay answers with the plain reference
    other = _accept(engine, _payload(9))
    with engine.begin() as conn:  # copied onto another message: refused, not shown
        conn.execute(update(Message).where(Message.id == other).values(sender_reference=raw))
    copied = store.get(engine, other)
    assert copied is not None and copied.sender_reference == sealing.DAMAGED_TEXT
    sealing.install(engine, None)
    shown = store.get(engine, message.id)
    assert shown is not None and shown.sender_reference == sealing.NO_KEY_TEXT


def test_a_sealed_row_or_blob_copied_to_another_message_does_not_open(engine: Engine, sealed: HubConfig,
                                                                      tmp_path: Path) -> None:
    blobs = BlobStore(sealed.storage.blob_dir)
    first, second = _accept(engine, _payload(1)), _accept(engine, _payload(2))
    with engine.begin() as conn:
        stolen = conn.execute(select(MessagePart.body).where(MessagePart.message_id == first)).scalar_one()
        conn.execute(update(MessagePart).where(MessagePart.message_id == second).values(body=stolen))
    with pytest.raises(sealing.Tampered, match=f"message {second} does not authenticate"):
        store.payload(engine, second)
    assert store.payload(engine, first)[0].body == _payload(1)
    make_worker(sealed, engine).run(exit_when_idle=True)
    swapped, kept = store.get(engine, second), store.get(engine, first)
    assert swapped is not None and swapped.status == "dead"  # for a human to look at, never delivered
    assert f"part 0 of message {second} does not authenticate" in (swapped.last_error or "")
    assert kept is not None and kept.status == "acknowledged"
    assert not (tmp_path / "outbox" / f"xhub-{second}-outbox.xml").exists()

    upload, _ = _pdf(tmp_path, 2 * sealing.SEGMENT)  # an exact multiple: the last segment is empty
    with_blob = _accept(engine, _payload(3), attachment=upload, blobs=blobs)
    part = store.payload(engine, with_blob)[1]
    path = sealed.storage.blob_dir / str(part.blob_path)
    whole = path.read_bytes()
    path.write_bytes(whole[: -(sealing.SEGMENT + 16 + 16)] + whole[-16:])  # a segment cut out
    with pytest.raises(sealing.Tampered):
        b"".join(store.part_bytes(engine, part, blobs))
    path.write_bytes(whole[:-1] + bytes([whole[-1] ^ 1]))  # one bit flipped
    with pytest.raises(sealing.Tampered, match="does not authenticate"):
        b"".join(store.part_bytes(engine, part, blobs))


def test_wrong_or_missing_master_key_is_a_clear_error(engine: Engine, db_url: str, sealed: HubConfig,
                                                      tmp_path: Path) -> None:
    mid = _accept(engine, _payload())
    other = tmp_path / "other.key"
    sealing.MasterKey.write_new(other)
    with pytest.raises(sealing.KeyUnavailable, match="was wrapped by master key [0-9a-f]{16}, but the master key "
                                                     f"from file {other} is [0-9a-f]{{16}}"):
        install_keyring(_config(db_url, tmp_path, other), engine, env={})
    with pytest.raises(sealing.KeyUnavailable, match="holds encrypted data, but no master key is configured"):
        install_keyring(_config(db_url, tmp_path, None), engine, env={})
    with pytest.raises(sealing.KeyUnavailable, match="no master key is configured"):
        install_keyring(_config(db_url, tmp_path, None, encryption="required"), engine, env={})
    assert sealing.keyring_of(engine) is not None  # the failed attempts changed nothing
    sealing.install(engine, None)
    with pytest.raises(sealing.KeyUnavailable, match="is encrypted, but no master key is configured"):
        store.payload(engine, mid)

    # The same key from the environment opens it.
    text = (tmp_path / "master.key").read_text()
    assert install_keyring(_config(db_url, tmp_path, None), engine, env={sealing.MASTER_KEY_ENV: text})
    assert store.payload(engine, mid)[0].body == _payload()


def test_master_key_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "loose.key"
    path.write_text(sealing.MasterKey.generate())
    path.chmod(0o644)
    with pytest.raises(sealing.KeyUnavailable, match=f"has mode 0644; .*chmod 600 {path}"):
        sealing.MasterKey.from_file(path)
    path.chmod(0o600)
    assert len(sealing.MasterKey.from_file(path).fingerprint) == 16
    path.write_text("not a key")
    with pytest.raises(sealing.KeyUnavailable, match="not base64"):
        sealing.MasterKey.from_file(path)
    path.write_text("c2hvcnQ=")
    with pytest.raises(sealing.KeyUnavailable, match="is 5 bytes; it must be 32"):
        sealing.MasterKey.from_file(path)
    with pytest.raises(FileExistsError):
        sealing.MasterKey.write_new(path)  # never overwritten


def test_rotation_reseals_while_messages_flow(engine: Engine, db_url: str, tmp_path: Path, key: Path) -> None:
    # Rows from before encryption was switched on: plain, and readable.
    plain_config = _config(db_url, tmp_path, None)
    install_keyring(plain_config, engine, env={})
    blobs = BlobStore(plain_config.storage.blob_dir)
    upload, pdf = _pdf(tmp_path)
    legacy = [_accept(engine, _payload(i)) for i in range(3)] + [_accept(engine, _payload(3), attachment=upload,
                                                                         blobs=blobs)]
    config = _config(db_url, tmp_path, key)
    keyring = install_keyring(config, engine, env={})
    assert keyring is not None
    try:
        first = [_accept(engine, _payload(10 + i)) for i in range(10)]
        with engine.begin() as conn:  # a plain reference from before, and a sealed one
            conn.execute(update(Message).where(Message.id == legacy[0]).values(sender_reference="Az. Pick"))
        referenced, _ = store.accept(engine, store.NewMessage("memmingen", "rest", "portal", [
            store.Part("payload", "application/xml", _payload(99))], sender_reference="Az. Tibor"),
            actor="sender:portal")
        old_key = keyring.current_id()
        stop = threading.Event()
        worker = make_worker(config, engine, stop=stop)
        flowing = threading.Thread(target=worker.run)
        flowing.start()
        more: list[uuid.UUID] = []
        try:
            for i in range(20):
                if i == 5:
                    new_key = keyring.rotate()
                if i == 10:
                    sealing.rewrap_batch(engine, config.storage.blob_dir, limit=7)  # a first batch meanwhile
                more.append(_accept(engine, _payload(100 + i)))
            ids = legacy + first + more
            wait_for(lambda: all(m is not None and m.status == "acknowledged"
                                 for m in (store.get(engine, i) for i in ids)), timeout=60)
        finally:
            stop.set()
            worker.wake.set()
            flowing.join(timeout=30)
            worker.channels.close()
        assert new_key > old_key
        (loop,) = [job for job in housekeeping_loops(config, engine) if job.supervisor.name == "reseal"]
        assert loop.run_once() > 0  # the loop of every worker process: batches until nothing is left
        with engine.connect() as conn:
            keys = set(conn.execute(select(MessagePart.key_id)).scalars())
        assert keys == {new_key}  # every part, the plain ones included, now sealed with the new key
        with engine.connect() as conn:
            refs = dict(conn.execute(select(Message.id, Message.sender_reference)
                                     .where(Message.sender_reference.is_not(None))).all())
        assert {sealing.text_key_id(v) for v in refs.values()} == {new_key}
        assert store.get(engine, legacy[0]).sender_reference == "Az. Pick"  # type: ignore[union-attr]
        assert store.get(engine, referenced.id).sender_reference == "Az. Tibor"  # type: ignore[union-attr]
        for n, mid in enumerate(ids):
            body = store.payload(engine, mid)[0].body
            assert body is not None and SECRET.encode() in body
            assert (tmp_path / "outbox" / f"xhub-{mid}-outbox.xml").read_bytes() == body, n
        blob_part = store.payload(engine, legacy[-1])[1]
        assert b"".join(store.part_bytes(engine, blob_part, blobs)) == pdf
        assert (config.storage.blob_dir / str(blob_part.blob_path)).read_bytes().startswith(sealing.BLOB_MAGIC)
        assert sealing.rewrap_batch(engine, config.storage.blob_dir).resealed == 0  # nothing left to do
    finally:
        sealing.install(engine, None)


def test_a_rejected_message_leaves_no_document_value_in_clear(engine: Engine, sealed: HubConfig) -> None:
    """Validation messages quote the offending value; what the hub stores in clear (the event, last_error) does not."""
    mid = _accept(engine, _payload().replace(b'standard="XBau-Kernmodul"', b'standard="Tibor Pick"', 1))
    make_worker(sealed, engine).run(exit_when_idle=True)
    message = store.get(engine, mid)
    assert message is not None and message.status == "rejected"
    assert message.last_error is not None and "The value '…' does not match the fixed value" in message.last_error
    with engine.connect() as conn:
        clear = [str(v) for v in conn.execute(select(Message)).one()] + [
            str(tuple(r)) for r in conn.execute(select(Event))]
    assert not any("Tibor" in text or "Musterfrau" in text for text in clear)
    assert "attribute 'standard'" in message.last_error  # where the problem is stays


def test_redact_keeps_the_schema_and_hides_the_value() -> None:
    assert redact("Element 'geburtsdatum': '12.10.1965' is not a valid value of the atomic type 'xs:date'.") == \
        "Element 'geburtsdatum': '…' is not a valid value of the atomic type 'xs:date'."
    assert redact("Element 'n': [facet 'pattern'] The value 'O'Brien' is not accepted by the pattern '[A-Z]+'.") \
        == "Element 'n': [facet 'pattern'] The value '…' is not accepted by the pattern '[A-Z]+'."
    assert redact("No match found for key-sequence ['4711'] of keyref 'k'.") == \
        "No match found for key-sequence […] of keyref 'k'."
    assert redact("code '002' is not in code list urn:x") == "code '002' is not in code list urn:x"


def test_fitconnect_metadata_problems_do_not_quote_values() -> None:
    """Metadata schema problems are stored with a refused submission and sent back: no values in them."""
    import jsonschema

    from channels.fitconnect.metadata import _short

    schema = {"type": "object", "required": ["b"],
              "properties": {"a": {"type": "integer"}, "mail": {"pattern": "^[^@]+@example\\.org$"}}}
    found = [_short(e) for e in jsonschema.Draft202012Validator(schema).iter_errors(
        {"a": "Erika", "mail": "musterfrau@example.com"})]
    assert sorted(found) == ['pattern: erwartet "^[^@]+@example\\\\.org$"', "required: 'b' is a required property",
                             'type: erwartet "integer"']


# --------------------------------------------------------------------------------------------------
# Retention


def _end(engine: Engine, mid: uuid.UUID, status: Status, age: timedelta) -> None:
    """Put a message into an end state that was reached ``age`` ago (the test's shortcut past the pipeline)."""
    with engine.begin() as conn:
        conn.execute(update(Message).where(Message.id == mid).values(status=status.value,
                                                                     updated_at=utcnow() - age))


def test_purge_removes_payloads_keeps_the_trail_and_delivery_goes_on(engine: Engine, db_url: str,
                                                                     sealed: HubConfig, tmp_path: Path) -> None:
    config = _config(db_url, tmp_path, tmp_path / "master.key", retention={
        "delivered": "30d", "dead": "90d", "rejected": "never",
        "tenants": {"aschaffenburg": {"delivered": "365d"}},
        "routes": {"all": {"dead": "7d"}}, "batch_size": 2})
    blobs = BlobStore(config.storage.blob_dir)
    upload, _ = _pdf(tmp_path)
    done_old = _accept(engine, _payload(1), attachment=upload, blobs=blobs)
    done_new, dead_old, rejected_old = (_accept(engine, _payload(i)) for i in (2, 3, 4))
    dead_routed, other_tenant = _accept(engine, _payload(5)), _accept(engine, _payload(6), tenant="aschaffenburg")
    _end(engine, done_old, Status.ACKNOWLEDGED, timedelta(days=31))
    _end(engine, done_new, Status.ACKNOWLEDGED, timedelta(days=29))
    _end(engine, dead_old, Status.DEAD, timedelta(days=91))
    _end(engine, rejected_old, Status.REJECTED, timedelta(days=1000))
    _end(engine, dead_routed, Status.DEAD, timedelta(days=8))
    _end(engine, other_tenant, Status.ACKNOWLEDGED, timedelta(days=100))
    with engine.begin() as conn:
        conn.execute(update(Message).where(Message.id == dead_routed).values(route="all"))
    blob_dir = config.storage.blob_dir / str(done_old)
    assert blob_dir.is_dir()

    policy = retention.Policy(config.retention)
    dry = retention.purge(engine, policy, blobs, dry_run=True)
    assert set(dry.ids) == {done_old, dead_old, dead_routed} and dry.blobs == 1
    assert all(store.get(engine, m).status != "purged" for m in dry.ids)  # type: ignore[union-attr]

    waiting = [_accept(engine, _payload(50 + i)) for i in range(6)]  # delivered while the purge runs
    stop = threading.Event()
    worker = make_worker(config, engine, stop=stop)
    flowing = threading.Thread(target=worker.run)
    flowing.start()
    try:
        (loop,) = [job for job in housekeeping_loops(config, engine) if job.supervisor.name == "retention"]
        assert loop.run_once() == 3  # in batches of two
        wait_for(lambda: all(store.get(engine, m).status == "acknowledged" for m in waiting))  # type: ignore[union-attr]
    finally:
        stop.set()
        worker.wake.set()
        flowing.join(timeout=30)
        worker.channels.close()

    for mid in (done_old, dead_old, dead_routed):
        message = store.get(engine, mid)
        assert message is not None and message.status == "purged"
        assert store.payload(engine, mid) == []
        trail = store.events(engine, mid)
        assert trail[0].to_status == "received" and trail[-1].to_status == "purged"
        assert trail[-1].actor == "retention" and trail[-1].detail is not None
        assert trail[-1].detail["outcome"] == trail[-1].from_status and trail[-1].detail["parts"] >= 1
    assert store.events(engine, done_old)[-1].detail["blob_files"] == 1  # type: ignore[index]
    assert not blob_dir.exists()
    for mid in (done_new, rejected_old, other_tenant, *waiting):
        assert store.payload(engine, mid)[0].body is not None and store.get(engine, mid).status != "purged"  # type: ignore[union-attr]
    assert retention.purge(engine, policy, blobs).total == 0  # nothing is purged twice


def test_policy_overrides() -> None:
    config = HubConfig.model_validate({"retention": {
        "delivered": "30d", "dead": "12h",
        "tenants": {"t": {"delivered": "2w", "dead": "never"}},
        "routes": {"r": {"delivered": "45s"}}}}).retention
    policy = retention.Policy(config)
    assert policy.period(Status.ACKNOWLEDGED, "x", None) == timedelta(days=30)
    assert policy.period(Status.ACKNOWLEDGED, "t", None) == timedelta(days=14)
    assert policy.period(Status.ACKNOWLEDGED, "t", "r") == timedelta(seconds=45)  # the route's wins
    assert policy.period(Status.DEAD, "t", "r") is None  # the tenant keeps its dead messages
    assert policy.period(Status.REJECTED, "x", None) is None  # unset: kept
    assert policy.shortest(Status.ACKNOWLEDGED) == timedelta(seconds=45) and policy.active
    assert not retention.Policy(HubConfig().retention).active
    with pytest.raises(ValueError, match='a period like "30d"'):
        HubConfig.model_validate({"retention": {"dead": "90 days"}})


# --------------------------------------------------------------------------------------------------
# The command line


def _xhub(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xhub", "--log-level", "warning", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_cli_keys_and_purge(tmp_path: Path, sqlite_url: str) -> None:
    key = tmp_path / "master.key"
    made = subprocess.run([sys.executable, "-m", "xhub", "keys", "new-master-key", str(key)], capture_output=True,
                          text=True, timeout=60)
    assert made.returncode == 0 and key.stat().st_mode & 0o777 == 0o600, made.stderr
    cfg = tmp_path / "hub.toml"
    cfg.write_text(f'[database]\nurl = "{sqlite_url}"\n[storage]\nmaster_key_file = "{key}"\n'
                   f'blob_dir = "{tmp_path / "blobs"}"\n[retention]\ndead = "1d"\n')
    config = HubConfig.model_validate({"database": {"url": sqlite_url},
                                       "storage": {"master_key_file": str(key), "blob_dir": str(tmp_path / "b")}})
    from hub.db import make_engine

    engine = make_engine(sqlite_url)
    try:
        install_keyring(config, engine, env={})
        mid = _accept(engine, _payload())
        _end(engine, mid, Status.DEAD, timedelta(days=2))
    finally:
        sealing.install(engine, None)
        engine.dispose()

    rotated = _xhub(cfg, "keys", "rotate-data-key", "--reseal")
    assert rotated.returncode == 0 and "data key 2 is now current" in rotated.stdout, rotated.stderr
    assert "1 row(s) and 0 blob(s) re-sealed" in rotated.stdout
    status = _xhub(cfg, "keys", "status")
    assert "key 2" in status.stdout and "1 part(s)" in status.stdout and "plain (not sealed): 0" in status.stdout

    dry = _xhub(cfg, "messages", "purge", "--dry-run")
    assert dry.returncode == 0 and str(mid) in dry.stdout and "1 message(s) due for purge (1 dead)" in dry.stdout
    purged = _xhub(cfg, "messages", "purge")
    assert purged.returncode == 0 and "1 message(s) purged (1 dead)" in purged.stdout, purged.stderr
    shown = _xhub(cfg, "messages", "show", str(mid))
    assert "purged" in shown.stdout and "cli:" in shown.stdout

    new_key = tmp_path / "new.key"
    sealing.MasterKey.write_new(new_key)
    changed = _xhub(cfg, "keys", "rotate-master-key", str(new_key))
    assert changed.returncode == 0 and "2 data key(s) now wrapped by master key" in changed.stdout, changed.stderr
    stale = _xhub(cfg, "keys", "reseal")  # still configured with the old key: refused, with both fingerprints
    assert stale.returncode == 2 and "was wrapped by master key" in stale.stderr and "Traceback" not in stale.stderr
    cfg.write_text(cfg.read_text().replace(str(key), str(new_key)))
    key = new_key
    assert _xhub(cfg, "keys", "reseal").returncode == 0

    loose = tmp_path / "loose.key"
    loose.write_text(key.read_text())
    loose.chmod(0o640)
    cfg.write_text(cfg.read_text().replace(str(key), str(loose)))
    refused = _xhub(cfg, "keys", "reseal")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "chmod 600" in refused.stderr
    assert "Traceback" not in refused.stderr


# --------------------------------------------------------------------------------------------------
# The demo


def test_the_scan_finds_plain_and_compressed_personal_data(tmp_path: Path) -> None:
    values = personal_strings()
    assert {"Musterfrau", "Maximilianstraße", "Pick", "1234567890000", "wvwzzz1jz xw000001"} <= set(values)
    (tmp_path / "plain.txt").write_text("… Tibor Pick e.K. …")
    (tmp_path / "packed.bin").write_bytes(b"\x00header" + zlib.compress(b"Spremberger Str. 90") + b"\x00")
    (tmp_path / "escaped.json").write_text('{"s": "Maximilianstra\\u00dfe"}')
    (tmp_path / "noise.db").write_text("CREATE INDEX submissions_pickup")  # a word that only contains a value
    found = {(h.path.name, h.value) for h in find_personal_data(tmp_path, values)}
    assert found == {("plain.txt", "Pick"), ("plain.txt", "Tibor Pick e.K."), ("plain.txt", "Tibor"),
                     ("packed.bin", "Spremberger Str."), ("escaped.json", "Maximilianstraße")}


@pytest.mark.slow
def test_demo_leaves_no_personal_data_outside_the_file_targets_folder(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "xhub", "--log-level", "warning", "demo", "--once", "--port", "0",
         "--workdir", str(workdir)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (workdir / "master.key").stat().st_mode & 0o777 == 0o600
    hits = find_personal_data(workdir, personal_strings(), exclude=[workdir / "outbox" / "bauamt-dms"])
    assert not hits, [f"{h.path.relative_to(workdir)}: {h.value!r} ({h.where})" for h in hits]
    stored = [p for p in (workdir / "blobs").rglob("*") if p.is_file()]  # the FIT-Connect attachment, sealed
    assert stored and all(p.read_bytes().startswith(sealing.BLOB_MAGIC) for p in stored)
