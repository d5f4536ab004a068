"""File sink: writes each delivery to ``<directory>/<idempotency key><suffix>``, atomically.

Useful as a drop folder for a DMS import, and as the zero-set-up target of the demo. A second delivery
with the same key and the same bytes is a success (the target already has it); the same key with other
bytes is a :class:`~hub.errors.Permanent` error, because overwriting would lose the first case.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from typing import ClassVar

from adapters.base import AdapterConfig, DeliveryRequest, DeliveryResult
from hub.errors import Permanent, Retriable

_TRANSIENT = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.EBUSY, errno.ESTALE}


class FileConfig(AdapterConfig):
    directory: Path
    suffix: str = ".xml"


class FileAdapter:
    name: ClassVar[str] = "file"
    Config: ClassVar[type[AdapterConfig]] = FileConfig

    def __init__(self, config: FileConfig) -> None:
        self.config = config

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        target = self.config.directory / f"{request.idempotency_key}{self.config.suffix}"
        try:
            return self._write(target, request.body)
        except OSError as exc:
            kind = Retriable if exc.errno in _TRANSIENT else Permanent
            raise kind(
                f"cannot write {target}: {exc.strerror}", detail={"path": str(target), "errno": exc.errno}
            ) from None

    def _write(self, target: Path, body: bytes) -> DeliveryResult:
        digest = hashlib.sha256(body).hexdigest()
        if target.exists():
            if hashlib.sha256(target.read_bytes()).hexdigest() == digest:
                return DeliveryResult(reference=target.name, excerpt="already delivered", detail={"path": str(target)})
            raise Permanent(
                f"{target} exists with different content; refusing to overwrite",
                detail={"path": str(target)},
            )
        self.config.directory.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        dir_fd = os.open(self.config.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return DeliveryResult(reference=target.name, excerpt=f"written {len(body)} bytes", detail={"path": str(target)})
