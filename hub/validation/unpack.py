"""Bringing a release into a staging folder: a zip is unpacked, a folder is copied, both within limits.

The release comes from outside (downloaded from XRepository, or handed over by someone), so every name
in it is hostile until checked. What lands in the staging folder is only ever regular files and folders
whose names passed :func:`hub.validation.paths.relative_name`:

* zip members: no absolute names, drive letters, ``..``, backslashes, control characters; no symbolic
  links, devices or FIFOs (the Unix mode in the member's external attributes); no member twice; no
  encrypted members; at most ``max_members`` files and ``max_total_bytes`` bytes, counted while writing
  (the sizes a zip declares can lie);
* folder entries: walked without following links; a symbolic link is copied as the file it points to
  only when that file is a regular file inside the release folder, anything else (a link out, a broken
  link, a loop, a link to a folder) is refused, as are FIFOs, sockets and devices (never opened).

Files are created with ``O_EXCL | O_NOFOLLOW`` inside the staging folder, so nothing can be written
through a link. Every refusal is a :class:`~hub.validation.manifest.BundleError` naming the member.
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from hub.validation.manifest import BundleError
from hub.validation.paths import PathProblem, describe_mode, relative_name, show

__all__ = ["ZipLimits", "copy_folder", "unpack_zip"]

_CHUNK = 1024 * 1024
_MAX_DEPTH = 32


@dataclass(frozen=True)
class ZipLimits:
    """Bounds for bringing in a release (a zip bomb or a huge folder must not fill the disk)."""

    max_members: int = 5000
    max_total_bytes: int = 300 * 1024 * 1024


class _Budget:
    """Files and bytes still allowed; every write goes through :meth:`copy`."""

    def __init__(self, what: str, limits: ZipLimits) -> None:
        self.what = what
        self.limits = limits
        self.files = 0
        self.bytes = 0

    def add_file(self) -> None:
        self.files += 1
        if self.files > self.limits.max_members:
            raise BundleError(f"{self.what}: more than {self.limits.max_members} files")

    def copy(self, src: IO[bytes], out: Path) -> None:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "wb") as dst:
            while chunk := src.read(_CHUNK):
                self.bytes += len(chunk)
                if self.bytes > self.limits.max_total_bytes:
                    raise BundleError(f"{self.what}: unpacks to more than {self.limits.max_total_bytes} bytes")
                dst.write(chunk)


def _member_path(archive: str, member: zipfile.ZipInfo) -> PurePosixPath:
    try:
        rel = relative_name(member.filename, what="member")
    except ValueError as exc:
        raise BundleError(f"{archive}: unsafe member {show(member.filename)!r}: {exc}") from None
    mode = member.external_attr >> 16
    if member.create_system == 3 and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise BundleError(
            f"{archive}: unsafe member {member.filename!r}: {describe_mode(mode)}; only files and folders"
        )
    if member.flag_bits & 0x1:
        raise BundleError(f"{archive}: member {member.filename!r} is encrypted")
    return rel


def _mkdir(folder: Path, rel: PurePosixPath, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise BundleError(f"{what}: {str(rel)!r} is both a file and a folder") from None


def _open_regular(path: Path) -> BinaryIO:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise BundleError(f"{show(path)}: cannot read: {exc.strerror}") from None
    src = os.fdopen(fd, "rb")
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        src.close()
        raise BundleError(f"{show(path)}: is {describe_mode(mode)}; give a zip file or a folder")
    return src


def unpack_zip(archive: Path, target: Path, limits: ZipLimits) -> str:
    """Unpack ``archive`` into the empty folder ``target`` (see the module docstring); its SHA-256."""
    what = show(archive.name)
    budget = _Budget(what, limits)
    seen: set[PurePosixPath] = set()
    with _open_regular(archive) as src:
        digest = hashlib.sha256()
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
        src.seek(0)
        _unpack(src, what, target, budget, seen)
    return digest.hexdigest()


def _unpack(archive: BinaryIO, what: str, target: Path, budget: _Budget, seen: set[PurePosixPath]) -> None:
    limits = budget.limits
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            if len(members) > limits.max_members:
                raise BundleError(f"{what}: more than {limits.max_members} files")
            if sum(m.file_size for m in members) > limits.max_total_bytes:
                raise BundleError(f"{what}: unpacks to more than {limits.max_total_bytes} bytes")
            for member in members:
                rel = _member_path(what, member)
                if rel in seen:
                    raise BundleError(f"{what}: member {member.filename!r} occurs twice")
                seen.add(rel)
                out = target.joinpath(*rel.parts)
                if member.is_dir():
                    _mkdir(out, rel, what)
                    continue
                budget.add_file()
                _mkdir(out.parent, rel, what)
                try:
                    with zf.open(member) as src:
                        budget.copy(src, out)
                except (FileExistsError, IsADirectoryError):
                    raise BundleError(f"{what}: {str(rel)!r} is both a file and a folder") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError) as exc:
        raise BundleError(f"{what}: not a usable zip file: {exc}") from None
    except NotImplementedError as exc:  # e.g. a compression method Python does not have
        raise BundleError(f"{what}: {exc}") from None
    except RuntimeError as exc:  # zipfile's "File … is encrypted, password required for extraction"
        raise BundleError(f"{what}: {exc}") from None


def copy_folder(source: Path, target: Path, limits: ZipLimits) -> None:
    """Copy the release folder ``source`` into the new folder ``target`` (see the module docstring)."""
    root = source.resolve()
    budget = _Budget(show(source.name), limits)
    target.mkdir()
    _copy_tree(root, root, target, budget, 0)


def _copy_tree(root: Path, folder: Path, target: Path, budget: _Budget, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise BundleError(f"{show(folder)}: folders nested deeper than {_MAX_DEPTH} levels")
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise BundleError(f"{show(folder)}: cannot list: {exc.strerror}") from None
    for entry in entries:
        path = Path(entry.path)
        try:
            relative_name(entry.name, what="file name")
            mode = entry.stat(follow_symlinks=False).st_mode
        except ValueError as exc:
            raise BundleError(f"{show(path)}: {exc}") from None
        except OSError as exc:
            raise BundleError(f"{show(path)}: {exc.strerror}") from None
        if stat.S_ISDIR(mode):
            (target / entry.name).mkdir()
            _copy_tree(root, path, target / entry.name, budget, depth + 1)
            continue
        real = path
        if stat.S_ISLNK(mode):
            real = _link_target(root, path)
        elif not stat.S_ISREG(mode):
            raise BundleError(f"{show(path)}: is {describe_mode(mode)}; a release holds only files and folders")
        budget.add_file()
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise BundleError(f"{show(path)}: cannot read: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as src:
            if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                raise BundleError(f"{show(path)}: changed into something other than a regular file")
            budget.copy(src, target / entry.name)


def _link_target(root: Path, link: Path) -> Path:
    """The regular file inside ``root`` that ``link`` points to, else :class:`BundleError`."""
    try:
        real = link.resolve(strict=True)
    except FileNotFoundError:
        raise BundleError(f"{PathProblem(link, 'broken link')}") from None
    except (OSError, RuntimeError):
        raise BundleError(f"{PathProblem(link, 'symlink loop')}") from None
    if not real.is_relative_to(root):
        raise BundleError(f"{show(link)}: symbolic link to {show(real)}, outside the release folder")
    if not real.is_file():
        raise BundleError(f"{show(link)}: symbolic link to something other than a regular file")
    return real
