"""Paths that come from outside: what a path is, found without opening it, and names that must stay inside.

Three doors take paths from an operator or from an archive: ``xhub validate PATH…``, ``xhub schemas add
PATH`` and the member names and manifest paths of a schema bundle. All of them go through this module:

* :func:`inspect` tells what a path is with ``os.stat`` (following links, as ``cat`` does) and turns every
  failure into one precise phrase: ``symlink loop``, ``broken link (points to …)``, ``permission denied``;
  a FIFO, socket or device is named as such and never opened (opening a FIFO for reading blocks);
* :func:`read_regular` opens with ``O_NONBLOCK`` and checks the opened file again (the path may have been
  swapped since it was inspected), refuses it beyond ``max_bytes`` before reading a byte, and never reads
  more than ``max_bytes``;
* :func:`documents` lists the files of ``xhub validate PATH…``: folders walked without following links
  out of them, every problem yielded in place of the file so one bad file never stops the others;
* :func:`relative_name` accepts a relative name only when it cannot leave the folder it is joined to;
* :func:`show` prints a path on one line whatever its name contains (control characters, bytes that are
  not UTF-8): output stays one line per problem, and a crafted name cannot write to the terminal.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

__all__ = ["PathProblem", "describe_mode", "documents", "inspect", "read_regular", "relative_name", "show"]

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISREG, "a regular file"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISLNK, "a symbolic link"),
)
# Each component of a relative name: no NUL, no control characters, no backslash (a Windows separator
# that a later tool might honour), and not longer than Linux allows.
_MAX_COMPONENT_BYTES = 255
_MAX_NAME_CHARS = 1024


class PathProblem(ValueError):
    """A path that cannot be used; ``str()`` is one line: ``<path>: <what is wrong>``."""

    def __init__(self, path: Path | str, what: str) -> None:
        super().__init__(f"{show(path)}: {what}")
        self.path = path
        self.what = what


def show(path: Path | str) -> str:
    """``path`` as printable text on one line (control characters and undecodable bytes escaped)."""
    text = str(path)
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable():
            out.append(char)
        elif 0xDC80 <= ord(char) <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{ord(char) - 0xDC00:02x}")
        else:
            out.append(repr(char)[1:-1] if ord(char) < 0x10000 else f"\\U{ord(char):08x}")
    return "".join(out)


def describe_mode(mode: int) -> str:
    """What kind of file a ``st_mode`` describes, e.g. ``a FIFO (named pipe)``."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _stat_failure(path: Path, exc: OSError) -> PathProblem:
    if exc.errno == errno.ELOOP:
        return PathProblem(path, "symlink loop")
    if exc.errno == errno.ENOENT:
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                return PathProblem(path, f"broken link (points to {show(os.readlink(path))}, which does not exist)")
        except OSError:
            pass  # a parent folder is missing: plain "no such file"
        return PathProblem(path, "no such file or folder")
    if exc.errno == errno.EACCES:
        return PathProblem(path, "permission denied")
    if exc.errno == errno.ENOTDIR:
        return PathProblem(path, "no such file or folder (a part of the path is not a folder)")
    if exc.errno == errno.ENAMETOOLONG:
        return PathProblem(path, "name too long")
    return PathProblem(path, exc.strerror or type(exc).__name__)


def inspect(path: Path) -> os.stat_result:
    """``os.stat(path)`` (links followed); any failure as a :class:`PathProblem` with a precise reason."""
    try:
        return os.stat(path)
    except OSError as exc:
        raise _stat_failure(path, exc) from None
    except ValueError:  # an embedded NUL byte
        raise PathProblem(path, "name contains a NUL character") from None


def read_regular(path: Path, max_bytes: int, *, follow: bool = True) -> bytes:
    """The contents of the regular file ``path``, at most ``max_bytes`` long, else :class:`PathProblem`.

    The size is checked on the opened file before reading; a FIFO or device is refused without blocking
    (``O_NONBLOCK``); with ``follow=False`` a symbolic link is refused (``O_NOFOLLOW``).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            raise PathProblem(path, "is a symbolic link; refused") from None
        raise _stat_failure(path, exc) from None
    except ValueError:
        raise PathProblem(path, "name contains a NUL character") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PathProblem(path, f"is {describe_mode(info.st_mode)}, not a regular file")
        if info.st_size > max_bytes:
            raise PathProblem(path, f"too large: {info.st_size} bytes; the limit is {max_bytes} bytes")
        chunks: list[bytes] = []
        remaining = max_bytes + 1  # one byte more tells a file that grew past the limit
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1024 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as exc:
        raise PathProblem(path, f"cannot read: {exc.strerror or type(exc).__name__}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise PathProblem(path, f"too large: grew beyond the limit of {max_bytes} bytes while being read")
    return data


def relative_name(name: str, *, what: str = "path") -> PurePosixPath:
    """``name`` as a relative POSIX path that cannot leave the folder it is joined to, else ``ValueError``.

    Refused: empty names, absolute paths (``/x``, ``C:…``, ``\\\\server``), ``..`` components, backslashes,
    NUL and other control characters, components longer than 255 bytes. ``.`` and empty components
    (``a//b``) are dropped.
    """
    if not name or len(name) > _MAX_NAME_CHARS:
        raise ValueError(f"{what} must have 1 to {_MAX_NAME_CHARS} characters")
    if not name.isprintable():
        raise ValueError(f"{what} {show(name)!r} contains control characters")
    if "\\" in name:
        raise ValueError(f"{what} {name!r} contains a backslash")
    pure = PurePosixPath(name)
    if pure.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise ValueError(f"{what} {name!r} is absolute; it must be relative to the bundle folder and stay in it")
    parts = [p for p in pure.parts if p != "."]
    if ".." in parts:
        raise ValueError(f"{what} {name!r} contains '..'; it must be relative to the bundle folder and stay in it")
    if not parts:
        raise ValueError(f"{what} {name!r} names no file")
    for part in parts:
        try:
            encoded = part.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{what} {show(name)!r} is not valid UTF-8") from None
        if len(encoded) > _MAX_COMPONENT_BYTES:
            raise ValueError(f"{what} {name[:40]!r}…: a component is longer than {_MAX_COMPONENT_BYTES} bytes")
    return PurePosixPath(*parts)


def documents(paths: Iterable[Path], suffix: str = ".xml") -> Iterator[Path | PathProblem]:
    """The regular files among ``paths`` and, for folders, the ``*<suffix>`` files below them.

    Yields a :class:`PathProblem` instead of a path for anything that cannot be read as a document, and
    goes on. Folders are walked depth-first in name order without following links to folders; a link to a
    file is followed only when the file is inside the folder given. Nothing is opened here.
    """
    for path in paths:
        try:
            mode = inspect(path).st_mode
        except PathProblem as problem:
            yield problem
            continue
        if stat.S_ISDIR(mode):
            yield from _walk(path, suffix)
        elif stat.S_ISREG(mode):
            yield path
        else:
            yield PathProblem(path, f"is {describe_mode(mode)}, not a regular file; not opened")


def _walk(top: Path, suffix: str) -> Iterator[Path | PathProblem]:
    root = top.resolve()
    stack = [top]
    while stack:  # iterative: a hostile nesting depth cannot exhaust Python's recursion limit
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            yield PathProblem(folder, f"cannot list the folder: {_stat_failure(folder, exc).what}")
            continue
        folders = []
        for entry in entries:
            path = Path(entry.path)
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError as exc:
                yield _stat_failure(path, exc)
                continue
            if stat.S_ISDIR(mode):
                folders.append(path)
            elif entry.name.endswith(suffix):
                yield _file_in(path, mode, root)
        stack.extend(reversed(folders))


def _file_in(path: Path, mode: int, root: Path) -> Path | PathProblem:
    if stat.S_ISLNK(mode):
        try:
            real = path.resolve(strict=True)
            mode = os.stat(real).st_mode
        except (OSError, RuntimeError) as exc:  # RuntimeError: a loop, before Python 3.13
            return _stat_failure(path, exc if isinstance(exc, OSError) else OSError(errno.ELOOP, "loop"))
        if not real.is_relative_to(root):
            return PathProblem(path, f"symbolic link to {show(real)}, outside {show(root)}; not followed")
    if not stat.S_ISREG(mode):
        return PathProblem(path, f"is {describe_mode(mode)}, not a regular file; not opened")
    return path
