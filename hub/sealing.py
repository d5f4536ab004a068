"""Encryption at rest: every stored payload, attachment and blob sealed with AES-256-GCM (envelope encryption).

Three layers of keys::

    master key      (32 bytes; a 0600 file named by [storage] master_key_file, or XHUB_MASTER_KEY; never stored
       │             by the hub, only its fingerprint)
       ▼ wraps
    data keys       (32 bytes each, table data_keys: wrapped by the master key, AES-GCM, with the key's id as
       │             associated data; one is current, older ones are retired by `xhub keys rotate-data-key`)
       ▼ seals
    records         (message_parts.body, blob files): AES-256-GCM, a fresh random 96-bit nonce per record (per
                     1 MiB segment for blobs); the data key's id is stored next to the data (message_parts.key_id,
                     and in the blob file's header); the associated data binds the ciphertext to its record
                     (message id, part number, key id), so a row or a file copied onto another record does
                     not open.

Why a rotating data key rather than one data key per record: one unwrap per process and key instead of one per
record (the hot path pays one AES-GCM call per part, nothing else), and rotation is one new row plus a
background re-seal of the records (:func:`rewrap_batch`), which also takes old plain rows into encryption. A
data key seals far fewer than the 2^32 messages random 96-bit nonces allow per key; rotate yearly or when a key
may have leaked.

Failures are never silent: a missing master key, a master key other than the one the data keys were wrapped
with, or a record that does not authenticate raise :class:`SealingError` with one line for an operator, never
the bytes. Plain rows (``key_id`` NULL: written before encryption was switched on) are read as they are until
the re-seal job has encrypted them.

The engine knows its keyring: :func:`install` (called by the composition root when it opens the engine) and
:func:`keyring_of`. An engine without one stores plain bytes (tests of other parts, and a hub configured with
``[storage] encryption = "off"``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import os
import stat
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, Engine, func, insert, select, update

from hub.configfile import FileProblem, read_text
from hub.errors import Permanent
from hub.models import DataKey, Message, MessagePart, utcnow

__all__ = [
    "BLOB_MAGIC",
    "MASTER_KEY_ENV",
    "RECORD_MAGIC",
    "KeyUnavailable",
    "Keyring",
    "MasterKey",
    "RewrapReport",
    "SealingError",
    "Tampered",
    "install",
    "keyring_of",
    "load_master_key",
    "open_part",
    "rewrap_batch",
    "seal_blob",
]

log = logging.getLogger(__name__)

MASTER_KEY_ENV = "XHUB_MASTER_KEY"
RECORD_MAGIC = b"XHS1"  # a sealed message_parts.body: magic, 12-byte nonce, ciphertext and tag
BLOB_MAGIC = b"XHB1"  # a sealed blob file: magic, key id (4 bytes), nonce prefix (8 bytes), then the segments
SEGMENT = 1024 * 1024  # plaintext bytes per blob segment
_TAG = 16
_HEADER = len(BLOB_MAGIC) + 4 + 8
_CACHE_SECONDS = 5.0  # how long a process writes with the data key it knows before it looks for a newer one


class SealingError(Exception):
    """Sealed data cannot be opened or sealed; one line for an operator, never the data."""


class KeyUnavailable(SealingError):
    """No master key, or not the one the data keys were wrapped with."""


class Tampered(SealingError, Permanent):
    """A record does not authenticate: damaged, or copied from another record. A human must look."""


# --------------------------------------------------------------------------------------------------
# The master key


@dataclass(frozen=True)
class MasterKey:
    key: bytes = field(repr=False)
    source: str  # where it came from, for messages: "file /etc/xhub/master.key" or "environment XHUB_MASTER_KEY"

    @property
    def fingerprint(self) -> str:
        """16 hex digits that name the key without revealing it (stored with each data key it wraps)."""
        return hmac.new(self.key, b"xoev-hub master key fingerprint", hashlib.sha256).hexdigest()[:16]

    @classmethod
    def from_text(cls, text: str, source: str) -> MasterKey:
        value = text.strip()
        try:
            key = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_" if "-" in value or "_" in value
                                   else None, validate=True)
        except (binascii.Error, ValueError):
            raise KeyUnavailable(f"master key from {source} is not base64 (make one: xhub keys new-master-key)") \
                from None
        if len(key) != 32:
            raise KeyUnavailable(f"master key from {source} is {len(key)} bytes; it must be 32 (AES-256)")
        return cls(key, source)

    @classmethod
    def from_file(cls, path: Path) -> MasterKey:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & 0o077:
                raise KeyUnavailable(f"master key file {path} has mode {mode:04o}; it must be readable by its owner "
                                     f"only: chmod 600 {path}")
            text = read_text(path, 1024, "master key file")
        except FileProblem as exc:
            raise KeyUnavailable(str(exc)) from None
        except OSError as exc:
            raise KeyUnavailable(f"master key file {path}: cannot read it: {exc.strerror}") from None
        return cls.from_text(text, f"file {path}")

    @staticmethod
    def generate() -> str:
        """A new master key as base64 text (what the file or the variable holds)."""
        return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode("ascii")

    @staticmethod
    def write_new(path: Path) -> MasterKey:
        """Create ``path`` (mode 0600 from the first byte; never overwritten) holding a new master key."""
        text = MasterKey.generate()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return MasterKey.from_text(text, f"file {path}")


def load_master_key(master_key_file: Path | None, env: Mapping[str, str]) -> MasterKey | None:
    """The configured master key: the file when one is named, else ``XHUB_MASTER_KEY``, else ``None``."""
    if master_key_file is not None:
        return MasterKey.from_file(master_key_file)
    if env.get(MASTER_KEY_ENV):
        return MasterKey.from_text(env[MASTER_KEY_ENV], f"environment {MASTER_KEY_ENV}")
    return None


# --------------------------------------------------------------------------------------------------
# The data keys


def _wrap_aad(key_id: int) -> bytes:
    return f"xoev-hub data key {key_id}".encode()


def part_aad(message_id: uuid.UUID, part_no: int, key_id: int) -> bytes:
    """What a sealed part is bound to: its message, its number and its key (a swapped row does not open)."""
    return f"xoev-hub part {message_id} {part_no} key {key_id}".encode()


class Keyring:
    """The data keys of one database, unwrapped with the master key as they are needed; thread-safe."""

    def __init__(self, engine: Engine, master: MasterKey) -> None:
        self.engine = engine
        self.master = master
        self._keys: dict[int, AESGCM] = {}
        self._current: tuple[int, float] | None = None  # (key id, monotonic time it was looked up)
        self._lock = threading.Lock()

    # -- keys
    def _reading(self, conn: Connection | None) -> contextlib.AbstractContextManager[Connection]:
        """The caller's connection when it is in a transaction (sealing while a message is stored): a second
        connection would wait, on SQLite, for the write lock that transaction holds."""
        return contextlib.nullcontext(conn) if conn is not None else self.engine.connect()

    def current_id(self, conn: Connection | None = None) -> int:
        """The id of the key new records are sealed with: the newest data key, made when there is none (the
        hub makes the first one when it starts, outside any transaction: :func:`xhub.runtime.install_keyring`)."""
        with self._lock:
            if self._current is not None and time.monotonic() - self._current[1] < _CACHE_SECONDS:
                return self._current[0]
        with self._reading(conn) as reader:
            newest = reader.execute(select(func.max(DataKey.id))).scalar()
        key_id = int(newest) if newest is not None else self._create()
        with self._lock:
            self._current = (key_id, time.monotonic())
        return key_id

    def key(self, key_id: int, conn: Connection | None = None) -> AESGCM:
        with self._lock:
            cached = self._keys.get(key_id)
        if cached is not None:
            return cached
        with self._reading(conn) as reader:
            row = reader.execute(select(DataKey.wrapped, DataKey.master).where(DataKey.id == key_id)).first()
        if row is None:
            raise KeyUnavailable(f"data key {key_id} is not in the database (data_keys); the record cannot be opened")
        wrapped, master = bytes(row[0]), str(row[1])
        if master != self.master.fingerprint:
            raise KeyUnavailable(
                f"data key {key_id} was wrapped by master key {master}, but the master key from {self.master.source} "
                f"is {self.master.fingerprint}: configure the right master key")
        try:
            raw = AESGCM(self.master.key).decrypt(wrapped[:12], wrapped[12:], _wrap_aad(key_id))
        except InvalidTag:
            raise KeyUnavailable(f"data key {key_id} does not open with the master key from {self.master.source} "
                                 "(wrong key, or the data_keys row is damaged)") from None
        aes = AESGCM(raw)
        with self._lock:
            self._keys[key_id] = aes
        return aes

    def check(self) -> None:
        """Unwrap every data key now: a wrong master key stops the process at start, not at the first message."""
        with self.engine.connect() as conn:
            ids = list(conn.execute(select(DataKey.id).order_by(DataKey.id)).scalars())
        for key_id in ids:
            self.key(key_id)

    def rotate(self) -> int:
        """A new current data key; the older ones are marked retired (their records are re-sealed by
        :func:`rewrap_batch`). Every process seals with the new key within a few seconds."""
        key_id = self._create()
        with self.engine.begin() as conn:
            conn.execute(update(DataKey).where(DataKey.id < key_id, DataKey.retired_at.is_(None))
                         .values(retired_at=utcnow()))
        with self._lock:
            self._current = (key_id, time.monotonic())
        return key_id

    def change_master(self, new: MasterKey) -> int:
        """Wrap every data key with ``new`` instead (one transaction); returns how many. Processes running now
        keep their unwrapped keys; every process started afterwards needs ``new``."""
        with self.engine.connect() as conn:
            ids = list(conn.execute(select(DataKey.id).order_by(DataKey.id)).scalars())
        raws = {key_id: self._raw(key_id) for key_id in ids}
        with self.engine.begin() as conn:
            for key_id, raw in raws.items():
                nonce = os.urandom(12)
                conn.execute(update(DataKey).where(DataKey.id == key_id, DataKey.master == self.master.fingerprint)
                             .values(wrapped=nonce + AESGCM(new.key).encrypt(nonce, raw, _wrap_aad(key_id)),
                                     master=new.fingerprint))
        self.master = new
        return len(raws)

    def _raw(self, key_id: int) -> bytes:
        with self.engine.connect() as conn:
            wrapped = conn.execute(select(DataKey.wrapped).where(DataKey.id == key_id)).scalar_one()
        self.key(key_id)  # the checks and their messages
        return AESGCM(self.master.key).decrypt(bytes(wrapped)[:12], bytes(wrapped)[12:], _wrap_aad(key_id))

    def _create(self) -> int:
        raw = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(12)
        with self.engine.begin() as conn:
            # The id is part of the wrapping's associated data: insert, then wrap with the id known.
            key_id = int(conn.execute(insert(DataKey).values(wrapped=b"", master=self.master.fingerprint,
                                                             created_at=utcnow()).returning(DataKey.id)).scalar_one())
            wrapped = nonce + AESGCM(self.master.key).encrypt(nonce, raw, _wrap_aad(key_id))
            conn.execute(update(DataKey).where(DataKey.id == key_id).values(wrapped=wrapped))
        log.info("data key %d created (master key %s)", key_id, self.master.fingerprint)
        return key_id

    # -- records
    def seal(self, data: bytes | bytearray, message_id: uuid.UUID, part_no: int,
             conn: Connection | None = None) -> tuple[bytes, int]:
        """``(sealed bytes, key id)`` for one part's body."""
        key_id = self.current_id(conn)
        nonce = os.urandom(12)
        return RECORD_MAGIC + nonce + self.key(key_id, conn).encrypt(nonce, bytes(data), part_aad(message_id, part_no,
                                                                                            key_id)), key_id

    def open(self, sealed: bytes, message_id: uuid.UUID, part_no: int, key_id: int,
             conn: Connection | None = None) -> bytes:
        if not sealed.startswith(RECORD_MAGIC) or len(sealed) < len(RECORD_MAGIC) + 12 + _TAG:
            raise Tampered(f"part {part_no} of message {message_id} is not a sealed record", detail={"part": part_no})
        nonce, body = sealed[4:16], sealed[16:]
        try:
            return self.key(key_id, conn).decrypt(nonce, body, part_aad(message_id, part_no, key_id))
        except InvalidTag:
            raise Tampered(f"part {part_no} of message {message_id} does not authenticate (damaged, or not this "
                           "message's)", detail={"part": part_no}) from None


    def seal_text(self, text: str, message_id: uuid.UUID, column: str, conn: Connection | None = None) -> str:
        key_id = self.current_id(conn)
        nonce = os.urandom(12)
        sealed = nonce + self.key(key_id, conn).encrypt(nonce, text.encode(), _text_aad(message_id, column, key_id))
        return f"{TEXT_PREFIX}{key_id}:{base64.urlsafe_b64encode(sealed).decode('ascii')}"

    def open_text(self, value: str, message_id: uuid.UUID, column: str, conn: Connection | None = None) -> str:
        try:
            key_text, data = value[len(TEXT_PREFIX):].split(":", 1)
            key_id, raw = int(key_text), base64.urlsafe_b64decode(data)
            return self.key(key_id, conn).decrypt(raw[:12], raw[12:], _text_aad(message_id, column, key_id)).decode()
        except (ValueError, binascii.Error, InvalidTag):
            raise Tampered(f"{column} of message {message_id} does not authenticate (damaged, or not this "
                           "message's)") from None


def text_key_id(value: str | None) -> int | None:
    if value is None or not value.startswith(TEXT_PREFIX):
        return None
    head = value[len(TEXT_PREFIX):].split(":", 1)[0]
    return int(head) if head.isdigit() else None


# --------------------------------------------------------------------------------------------------
# The engine's keyring

_KEYRINGS: weakref.WeakKeyDictionary[Engine, Keyring] = weakref.WeakKeyDictionary()


def install(engine: Engine, keyring: Keyring | None) -> None:
    """From now on the store seals what it writes through ``engine`` (``None``: plain again)."""
    if keyring is None:
        _KEYRINGS.pop(engine, None)
    else:
        _KEYRINGS[engine] = keyring


def keyring_of(bind: Engine | Connection) -> Keyring | None:
    return _KEYRINGS.get(bind.engine if isinstance(bind, Connection) else bind)


def encrypted_data_exists(engine: Engine) -> bool:
    with engine.connect() as conn:
        return conn.execute(select(DataKey.id).limit(1)).first() is not None


def _conn(bind: Engine | Connection) -> Connection | None:
    return bind if isinstance(bind, Connection) else None


def seal_body(bind: Engine | Connection, data: bytes | bytearray, message_id: uuid.UUID,
              part_no: int) -> tuple[bytes | bytearray, int | None]:
    """What the store writes for a part's body: sealed with the engine's keyring, or plain without one."""
    keyring = keyring_of(bind)
    if keyring is None:
        return data, None
    return keyring.seal(data, message_id, part_no, _conn(bind))


def open_part(bind: Engine | Connection, part: MessagePart) -> MessagePart:
    """``part`` with its body opened (in place; the entities the store returns are detached snapshots) and marked
    plain (``key_id`` None), so that opening it again changes nothing."""
    if part.key_id is None or part.body is None:
        return part
    keyring = keyring_of(bind)
    if keyring is None:
        raise KeyUnavailable(f"part {part.part_no} of message {part.message_id} is encrypted, but no master key is "
                             "configured ([storage] master_key_file or XHUB_MASTER_KEY)")
    part.body = keyring.open(bytes(part.body), part.message_id, part.part_no, part.key_id, _conn(bind))
    part.key_id = None
    return part


# --------------------------------------------------------------------------------------------------
# Short texts in message columns (the sender's reference): "xs1:<key id>:<base64url(nonce, ciphertext, tag)>"

TEXT_PREFIX = "xs1:"
NO_KEY_TEXT = "(encrypted; no master key configured)"
DAMAGED_TEXT = "(encrypted; does not authenticate: damaged, or not this message's)"


def _text_aad(message_id: uuid.UUID, column: str, key_id: int) -> bytes:
    return f"xoev-hub message {message_id} {column} key {key_id}".encode()


def seal_text(bind: Engine | Connection, text: str | None, message_id: uuid.UUID, column: str) -> str | None:
    keyring = keyring_of(bind)
    if text is None or keyring is None:
        return text
    return keyring.seal_text(text, message_id, column, _conn(bind))


def open_text(bind: Engine | Connection, value: str | None, message_id: uuid.UUID, column: str) -> str | None:
    """The plain text of a sealed column value; a plain (old) value as it is; without a keyring, or when it does
    not authenticate, a marker that says so (such a column is only shown: a look at a message never fails for
    it, and the message's processing does not either; its payload is what cannot be read without the key)."""
    if value is None or not value.startswith(TEXT_PREFIX):
        return value
    keyring = keyring_of(bind)
    if keyring is None:
        return NO_KEY_TEXT
    try:
        return keyring.open_text(value, message_id, column, _conn(bind))
    except Tampered as exc:  # a reference is shown, not processed: say so, and let the message go on
        log.error("%s", exc)
        return DAMAGED_TEXT


# --------------------------------------------------------------------------------------------------
# Blobs: segmented AES-GCM, streamed (a 500 MB attachment never sits in memory)


class Readable(Protocol):
    def read(self, n: int, /) -> bytes: ...


def _segment_nonce(prefix: bytes, index: int) -> bytes:
    return prefix + index.to_bytes(4, "big")


def _segment_aad(aad: bytes, index: int, last: bool) -> bytes:
    return aad + f" segment {index}{' last' if last else ''}".encode()


def seal_blob(keyring: Keyring, source: Readable, target: BinaryIO, message_id: uuid.UUID, part_no: int) -> int:
    """Seal the plaintext stream ``source`` into ``target``; returns the key id. Every segment but the last holds
    :data:`SEGMENT` bytes; the last (possibly empty) is marked as last, so a truncated file does not open."""
    key_id = keyring.current_id()
    aes, aad = keyring.key(key_id), part_aad(message_id, part_no, key_id)
    prefix = os.urandom(8)
    target.write(BLOB_MAGIC + key_id.to_bytes(4, "big") + prefix)
    index = 0
    chunk = source.read(SEGMENT)
    while True:
        following = source.read(SEGMENT) if len(chunk) == SEGMENT else b""
        last = len(chunk) < SEGMENT
        target.write(aes.encrypt(_segment_nonce(prefix, index), chunk, _segment_aad(aad, index, last)))
        if last:
            return key_id
        chunk, index = following, index + 1


def blob_key_id(fh: BinaryIO) -> int | None:
    """The key id in a sealed blob's header (``None``: a plain file written before encryption)."""
    fh.seek(0)
    header = fh.read(_HEADER)
    fh.seek(0)
    if len(header) < _HEADER or not header.startswith(BLOB_MAGIC):
        return None
    return int.from_bytes(header[4:8], "big")


def open_blob(keyring: Keyring | None, fh: BinaryIO, message_id: uuid.UUID, part_no: int) -> Iterator[bytes]:
    """The plaintext of the blob ``fh``, segment by segment; a plain (old) file as it is."""
    key_id = blob_key_id(fh)
    if key_id is None:
        while chunk := fh.read(SEGMENT):
            yield chunk
        return
    where = f"part {part_no} of message {message_id}"
    if keyring is None:
        raise KeyUnavailable(f"{where} is encrypted, but no master key is configured")
    aes, aad = keyring.key(key_id), part_aad(message_id, part_no, key_id)
    fh.seek(0)
    prefix = fh.read(_HEADER)[8:]
    size = os.fstat(fh.fileno()).st_size - _HEADER
    full, rest = divmod(size, SEGMENT + _TAG)
    if rest < _TAG:
        raise Tampered(f"{where}: the blob file is truncated or damaged", detail={"part": part_no})
    for index in range(full + 1):
        last = index == full
        block = fh.read(rest if last else SEGMENT + _TAG)
        try:
            yield aes.decrypt(_segment_nonce(prefix, index), block, _segment_aad(aad, index, last))
        except InvalidTag:
            raise Tampered(f"{where}: blob segment {index} does not authenticate (damaged, truncated, or not this "
                           "message's)", detail={"part": part_no}) from None


# --------------------------------------------------------------------------------------------------
# Re-sealing: records of older keys (and plain ones) under the current key, in small batches


@dataclass
class RewrapReport:
    resealed: int = 0  # database rows
    blobs: int = 0  # blob files
    skipped: int = 0  # changed or gone meanwhile (purged, or re-sealed by another process)
    remaining: bool = False  # a full batch was found: call again

    def __str__(self) -> str:
        return f"{self.resealed} row(s) and {self.blobs} blob(s) re-sealed, {self.skipped} skipped"


def rewrap_batch(engine: Engine, blob_root: Path | None, limit: int = 200) -> RewrapReport:
    """Re-seal up to ``limit`` parts not sealed with the current data key (older keys, or plain rows).

    Each row is read and updated in a short transaction of its own, guarded by its old key id, so intake,
    workers and other re-seal jobs go on meanwhile; PostgreSQL skips rows another transaction has locked."""
    keyring = keyring_of(engine)
    report = RewrapReport()
    if keyring is None:
        return report
    current = keyring.current_id()
    stale = (MessagePart.key_id.is_(None) | (MessagePart.key_id != current))
    with engine.connect() as conn:
        rows = conn.execute(select(MessagePart.message_id, MessagePart.part_no, MessagePart.key_id,
                                   MessagePart.blob_path)
                            .where(stale, MessagePart.body.is_not(None) | MessagePart.blob_path.is_not(None))
                            .order_by(MessagePart.message_id, MessagePart.part_no).limit(limit)).all()
    report.remaining = len(rows) == limit
    report.resealed += _reseal_texts(engine, keyring, current, limit)
    for message_id, part_no, key_id, blob_path in rows:
        try:
            if blob_path is not None:
                done = blob_root is not None and _reseal_blob(engine, keyring, blob_root, message_id, part_no, key_id,
                                                              blob_path)
                report.blobs += done
            else:
                done = _reseal_row(engine, keyring, message_id, part_no, key_id, current)
                report.resealed += done
        except Tampered as exc:  # this record only: it stays as it is (its message goes dead when it is read)
            log.error("re-seal: %s", exc)
            done = False
        report.skipped += not done
    return report


def _reseal_texts(engine: Engine, keyring: Keyring, current: int, limit: int) -> int:
    """Sender references not sealed with the current key (plain ones included), re-sealed; guarded by the old
    value, so a concurrent change wins."""
    done = 0
    with engine.connect() as conn:
        rows = conn.execute(select(Message.id, Message.sender_reference).where(
            Message.sender_reference.is_not(None),
            Message.sender_reference.not_like(f"{TEXT_PREFIX}{current}:%")).limit(limit)).all()
    for message_id, old in rows:
        if old is None:
            continue
        try:
            plain = keyring.open_text(old, message_id, "sender_reference") if old.startswith(TEXT_PREFIX) else old
        except Tampered as exc:  # left as it is (shown as damaged); the others go on
            log.error("re-seal: %s", exc)
            continue
        with engine.begin() as conn:
            done += conn.execute(update(Message).where(Message.id == message_id, Message.sender_reference == old)
                                 .values(sender_reference=keyring.seal_text(plain, message_id, "sender_reference"))
                                 ).rowcount
    return done


def _reseal_row(engine: Engine, keyring: Keyring, message_id: uuid.UUID, part_no: int, key_id: int | None,
                current: int) -> bool:
    guard = (MessagePart.message_id == message_id, MessagePart.part_no == part_no,
             MessagePart.key_id.is_not_distinct_from(key_id))
    with engine.begin() as conn:
        stmt = select(MessagePart.body).where(*guard)
        if engine.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        body = conn.execute(stmt).scalar()
        if body is None:
            return False
        plain = bytes(body) if key_id is None else keyring.open(bytes(body), message_id, part_no, key_id)
        sealed, new_id = keyring.seal(plain, message_id, part_no)
        done = conn.execute(update(MessagePart).where(*guard).values(body=sealed, key_id=new_id)).rowcount
    return bool(done)


def _reseal_blob(engine: Engine, keyring: Keyring, root: Path, message_id: uuid.UUID, part_no: int,
                 key_id: int | None, blob_path: str) -> bool:
    path = root / blob_path
    current = keyring.current_id()
    tmp = path.with_name(f".{path.name}.reseal-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(path, "rb") as fh:
            in_file = blob_key_id(fh)
            if in_file != current:  # (a crash after the file was replaced leaves only the column to set)
                with open(tmp, "wb") as out:
                    new_id = seal_blob(keyring, _Chunks(open_blob(keyring, fh, message_id, part_no)), out,
                                       message_id, part_no)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, path)
                _fsync_dir(path.parent)
                current = new_id
    except FileNotFoundError:  # purged meanwhile
        tmp.unlink(missing_ok=True)
        return False
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with engine.begin() as conn:
        done = conn.execute(update(MessagePart).where(
            MessagePart.message_id == message_id, MessagePart.part_no == part_no,
            MessagePart.key_id.is_not_distinct_from(key_id)).values(key_id=current)).rowcount
    return bool(done)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Chunks:
    """A minimal ``read(n)`` over an iterator of byte chunks (to re-seal one blob stream into another)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()

    def read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out
