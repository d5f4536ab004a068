"""The blob store: large message parts (FIT-Connect attachments up to 500 MB) as files, not database rows.

A part's file is written, flushed to disk (file and directory fsync) and hashed **before** the message row
that points to it is committed, so a committed message never refers to a missing or partial file. A crash
in between leaves at worst an unreferenced file, never a lost part.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = ["BlobStore", "StoredBlob"]

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredBlob:
    path: str  # relative to the store's root
    size: int
    sha256: str


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, message_id: uuid.UUID, part_no: int, source: Path) -> StoredBlob:
        """Take ``source`` into the store (moved when on the same file system) and make it durable."""
        relative = Path(str(message_id)) / str(part_no)
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
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
        for folder in (target.parent, self.root):
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return StoredBlob(str(relative), size, digest.hexdigest())

    def open(self, path: str) -> BinaryIO:
        return open(self.root / path, "rb")
