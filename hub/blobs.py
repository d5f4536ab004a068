"""The blob store: large message parts (FIT-Connect attachments up to 500 MB) as files, not database rows.

A part's file is written, flushed to disk (file and directory fsync) and hashed **before** the message row
that points to it is committed, so a committed message never refers to a missing or partial file. A crash
in between leaves at worst an unreferenced file, never a lost part.

With a keyring (:mod:`hub.sealing`) the file is sealed on its way in (streamed, segment by segment) and the
plain source is removed; :meth:`BlobStore.read` gives the plain bytes back, checked.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from hub.sealing import Keyring

__all__ = ["BlobStore", "StoredBlob"]

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredBlob:
    path: str  # relative to the store's root
    size: int  # of the plain bytes
    sha256: str  # of the plain bytes
    key_id: int | None = None  # the data key that sealed the file; None: stored plain


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, message_id: uuid.UUID, part_no: int, source: Path, keyring: Keyring | None = None) -> StoredBlob:
        """Take ``source`` into the store (moved when on the same file system; sealed and the source removed with
        a ``keyring``) and make it durable."""
        relative = Path(str(message_id)) / str(part_no)
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if keyring is not None:
            return self._put_sealed(message_id, part_no, source, keyring, relative)
        try:
            os.replace(source, target)
        except OSError:  # another file system: copy, the original stays with its owner
            shutil.copyfile(source, target)
        digest = hashlib.sha256()
        size = 0
        with open(target, "rb+") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
            os.fsync(fh.fileno())
        self._sync_folders(target)
        return StoredBlob(str(relative), size, digest.hexdigest())

    def _put_sealed(self, message_id: uuid.UUID, part_no: int, source: Path, keyring: Keyring,
                    relative: Path) -> StoredBlob:
        from hub.sealing import seal_blob

        target = self.root / relative
        with open(source, "rb") as plain, open(target, "wb") as out:
            reader = _Hashing(plain)
            key_id = seal_blob(keyring, reader, out, message_id, part_no)
            out.flush()
            os.fsync(out.fileno())
        self._sync_folders(target)
        source.unlink(missing_ok=True)
        return StoredBlob(str(relative), reader.size, reader.digest.hexdigest(), key_id)

    def _sync_folders(self, target: Path) -> None:
        for folder in (target.parent, self.root):
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def open(self, path: str) -> BinaryIO:
        """The stored file as it is (sealed, when it was stored with a keyring)."""
        return open(self.root / path, "rb")

    def read(self, path: str, message_id: uuid.UUID, part_no: int, keyring: Keyring | None) -> Iterator[bytes]:
        """The plain bytes of a stored part, chunk by chunk (opened with ``keyring`` when the file is sealed)."""
        from hub.sealing import open_blob

        with self.open(path) as fh:
            yield from open_blob(keyring, fh, message_id, part_no)

    def remove(self, message_id: uuid.UUID) -> int:
        """Delete every file of a message (retention); returns how many there were."""
        folder = self.root / str(message_id)
        if not folder.is_dir():
            return 0
        count = sum(1 for p in folder.iterdir() if p.is_file())
        shutil.rmtree(folder)
        return count


class _Hashing:
    """Reads a file and hashes (and counts) what was read."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.digest, self.size = fh, hashlib.sha256(), 0

    def read(self, n: int, /) -> bytes:
        chunk = self.fh.read(n)
        self.digest.update(chunk)
        self.size += len(chunk)
        return chunk
