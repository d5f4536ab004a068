"""File sink: writes each delivery to ``<directory>/<idempotency key><suffix>``, atomically.

Useful as a drop folder for a DMS import, and as the zero-set-up target of the demo. A second delivery
with the same key and the same bytes is a success (the target already has it); the same key with other
bytes is a :class:`~hub.errors.Permanent` error, because overwriting would lose the first case.

The bytes go to a hidden temporary file in the same directory (``.<name>.<random>.tmp``), are fsynced,
renamed onto the final name and the directory is fsynced: a reader of the folder sees the whole file or
nothing. The temporary file is removed on every failure, so a full disk does not fill up with halves.

File-system errors are classified by ``errno`` (the table is :data:`RETRIABLE_ERRNOS`; the rest is
permanent):

* **retriable** (the file system can heal without anyone touching the hub's configuration): disk full
  (``ENOSPC``), quota (``EDQUOT``), mounted read-only (``EROFS``, e.g. after an error remount or while a
  backup runs), I/O errors (``EIO``), busy or locked (``EAGAIN``, ``EBUSY``, ``ETXTBSY``, ``ENOLCK``,
  ``EDEADLK``), out of descriptors or memory (``EMFILE``, ``ENFILE``, ``ENOMEM``), and network file systems
  that went away (``ESTALE``, ``ETIMEDOUT``, ``ENOTCONN``, ``EHOSTDOWN``, ``EHOSTUNREACH``, ``ENETDOWN``,
  ``ENETUNREACH``, ``ECONNRESET``, ``ECONNREFUSED``, ``ECONNABORTED``). These count for the target's
  circuit breaker, so a full disk stops deliveries for the cool-down instead of burning every message's
  retry budget.
* **permanent** (someone must change something): permissions (``EACCES``, ``EPERM``, also an immutable
  directory), a name or file too long or too big for this file system (``ENAMETOOLONG``, ``EFBIG``,
  ``EINVAL``), a directory that is a file (``ENOTDIR``, ``EISDIR``, ``EEXIST``), symlink loops (``ELOOP``)
  and every errno not listed above. Permissions are permanent because they do not change by themselves:
  the message goes to ``dead`` at once and an operator requeues it after fixing the directory, instead
  of the hub retrying for hours against a setting.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from hub.errors import Permanent, Retriable
from hub.ports import AdapterConfig, DeliveryRequest, DeliveryResult

__all__ = ["RETRIABLE_ERRNOS", "FileAdapter", "FileConfig"]

log = logging.getLogger(__name__)

RETRIABLE_ERRNOS = frozenset({
    errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EAGAIN, errno.EBUSY, errno.ETXTBSY, errno.ENOLCK,
    errno.EDEADLK, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ESTALE, errno.ETIMEDOUT, errno.ENOTCONN,
    errno.EHOSTDOWN, errno.EHOSTUNREACH, errno.ENETDOWN, errno.ENETUNREACH, errno.ECONNRESET, errno.ECONNREFUSED,
    errno.ECONNABORTED,
})
_CHUNK = 1024 * 1024


class FileConfig(AdapterConfig):
    directory: Path = Field(description="the drop folder; created when missing")
    suffix: str = Field(".xml", pattern=r"^[A-Za-z0-9._-]{0,32}$",
                        description="appended to the idempotency key to make the file name")


class FileAdapter:
    name: ClassVar[str] = "file"
    Config: ClassVar[type[AdapterConfig]] = FileConfig

    def __init__(self, config: FileConfig) -> None:
        self.config = config

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        name = f"{request.idempotency_key}{self.config.suffix}"
        if "/" in name or "\0" in name or name.startswith("."):  # keys come from the hub; never leave the folder
            raise Permanent(f"{name!r} is not a file name", detail={"directory": str(self.config.directory)})
        target = self.config.directory / name
        try:
            return self._deliver(target, request.body)
        except OSError as exc:
            kind = Retriable if exc.errno in RETRIABLE_ERRNOS else Permanent
            code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            raise kind(f"cannot write {target}: {exc.strerror or type(exc).__name__} ({code})",
                       detail={"path": str(target), "errno": code}) from None

    def _deliver(self, target: Path, body: bytes) -> DeliveryResult:
        digest = hashlib.sha256(body).hexdigest()
        if _same_file_exists(target, digest):
            return DeliveryResult(reference=target.name, excerpt="already delivered", detail={"path": str(target)})
        self.config.directory.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        # O_EXCL: never write through a file (or symlink) someone else put under this name.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view[:_CHUNK]):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except BaseException:
            _discard(tmp)
            raise
        _fsync_directory(self.config.directory)
        return DeliveryResult(reference=target.name, excerpt=f"written {len(body)} bytes", detail={"path": str(target)})


def _same_file_exists(target: Path, digest: str) -> bool:
    """True when ``target`` already holds these bytes; :class:`Permanent` when it holds others."""
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(info.st_mode):
        raise Permanent(f"{target} exists and is not a regular file; refusing to write", detail={"path": str(target)})
    sha = hashlib.sha256()
    with open(target, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            sha.update(chunk)
    if sha.hexdigest() != digest:
        raise Permanent(f"{target} exists with different content; refusing to overwrite", detail={"path": str(target)})
    return True


def _discard(tmp: Path) -> None:
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:  # e.g. the file system went read-only meanwhile: say where the half file is
        log.warning("could not remove the temporary file %s: %s", tmp, exc.strerror)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable. The file is complete already, so a failure here is reported (the caller
    retries; the next attempt finds the same bytes and succeeds)."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
