"""Reading the operator's input (``hub.toml``, ``routes.toml``, ``XHUB_*`` variables, secret files) without
trusting it.

A configuration file is input like any other: it may be huge, a FIFO that never ends, ``/dev/zero``, not
UTF-8, or nested so deeply that a recursive parser overflows the stack. Every file is therefore opened
without blocking, checked to be a regular file, read up to a limit, decoded strictly, parsed, and its
nesting bounded, and each problem is one line naming the file (and the line, where TOML says it).

Problems in the values are reported as ``<file>:<line>: <key path>: <message>`` (:func:`explain`), or with
``environment XHUB_…`` / the ``*_file`` key instead of the line when the value came from there; the
messages never contain the values themselves, so a secret in a wrong place is not echoed.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

__all__ = ["ENV_PREFIX", "MAX_CONFIG_BYTES", "MAX_NESTING", "MAX_SECRET_BYTES", "FileProblem", "Loc", "dotted",
           "env_overrides", "explain", "locate", "merge", "read_bytes", "read_secret", "read_secret_files",
           "read_text", "read_toml"]

#: ``hub.toml`` and ``routes.toml`` larger than this are refused unread (a real one is a few KiB).
MAX_CONFIG_BYTES = 1024 * 1024
#: A secret file (``*_file``) larger than this is refused: it holds a token or a password, not a document.
MAX_SECRET_BYTES = 64 * 1024
#: Tables and arrays nested deeper than this are refused (the hub's deepest real key has 5 levels).
MAX_NESTING = 32
#: Environment variables ``XHUB_<SECTION>__<KEY>`` override the file.
ENV_PREFIX = "XHUB_"


class FileProblem(Exception):
    """A file (or an environment variable) cannot be used; one line for an operator, never the content."""


def read_bytes(path: Path, max_bytes: int, what: str) -> bytes:
    """The content of the regular file ``path``, at most ``max_bytes`` long, or :class:`FileProblem`."""
    try:
        # O_NONBLOCK: opening a FIFO must not hang waiting for a writer; it is refused below anyway.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FileProblem(f"{path}: cannot read {what}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileProblem(f"{path}: {what} must be a regular file, not {_kind(info.st_mode)}")
        if info.st_size > max_bytes:
            raise FileProblem(f"{path}: {what} is {info.st_size} bytes; the limit is {max_bytes}")
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise FileProblem(f"{path}: cannot read {what}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # grew while we read it
        raise FileProblem(f"{path}: {what} is more than {max_bytes} bytes")
    return data


def read_text(path: Path, max_bytes: int, what: str) -> str:
    """The UTF-8 text of the regular file ``path``, at most ``max_bytes`` long."""
    data = read_bytes(path, max_bytes, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FileProblem(f"{path}:{line}: {what} is not UTF-8 (byte {exc.start})") from None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def read_toml(path: Path, what: str = "configuration") -> tuple[dict[str, Any], str]:
    """Parse the TOML file ``path``; returns the data and the text (for line numbers)."""
    text = read_text(path, MAX_CONFIG_BYTES, what)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FileProblem(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise FileProblem(f"{path}: not valid TOML: nested more than {MAX_NESTING} levels deep") from None
    check_nesting(data, str(path))
    return data, text


def check_nesting(data: Any, source: str) -> None:
    """Refuse values nested deeper than :data:`MAX_NESTING` (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            raise FileProblem(f"{source}: tables or arrays nested more than {MAX_NESTING} levels deep")
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children)


def read_secret(path: Path) -> str:
    """The stripped content of a secret file; an empty one is refused (it would be an empty password)."""
    value = read_text(path, MAX_SECRET_BYTES, "secret file").strip()
    if not value:
        raise FileProblem(f"{path}: the secret file is empty")
    return value


def dotted(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


_KEY = re.compile(r'^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\'))*)')


def _keys(text: str) -> list[str]:
    """``a."b.c".d`` → ``["a", "b.c", "d"]`` (dotted TOML keys, quoted parts kept whole)."""
    match = _KEY.match(text)
    if match is None:
        return []
    parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([A-Za-z0-9_-]+)', match.group(1))
    return [a or b or c for a, b, c in parts]


def locate(text: str, loc: tuple[str | int, ...]) -> int | None:
    """Best-effort line number (1-based) of ``loc`` in TOML ``text``.

    Every ``key = value`` line gets its full path (``[[routes]]`` counts as ``routes[i]``); the line whose
    path matches the longest prefix of ``loc`` wins, so an error inside an inline table points at its key.
    """
    table: list[str | int] = []
    counters: dict[tuple[str, ...], int] = {}
    best, best_len = None, 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        path: list[str | int]
        if line.startswith("[["):
            name = tuple(_keys(line[2:]))
            counters[name] = counters.get(name, -1) + 1
            table = [*name, counters[name]]
            path = list(table)
        elif line.startswith("["):
            table = list(_keys(line[1:]))
            path = list(table)
        elif "=" in line and not line.startswith("#"):
            path = [*table, *_keys(line)]
        else:
            continue
        common = 0
        for have, want in zip(path, loc, strict=False):
            if have != want:
                break
            common += 1
        if common == len(path) and common > best_len:
            best, best_len = number, common
    return best


def explain(exc: ValidationError, source: str, text: str, prefix: tuple[str | int, ...] = (),
            origins: Mapping[tuple[str, ...], str] | None = None) -> list[str]:
    """One line per problem: ``<file>:<line>: <key path>: <message>`` (the line where it can be found).

    ``origins`` maps key paths set from elsewhere (environment variables, secret files) to a description
    of where they came from, which is named instead of a line of the file.
    """
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = (*prefix, *err["loc"])
        # Unions (``"name"`` or ``{target = …}``) report the branch in the path: keep keys the file has.
        loc = tuple(p for p in loc if not (isinstance(p, str) and p in {"str", "TargetRef", "list[str]", "[key]"}))
        where = _origin(loc, origins or {})
        if where is None:
            line = locate(text, loc) if text else None
            where = f"{source}:{line}" if line else source
        lines.append(f"{where}: {dotted(loc)}: {_message(err['type'], err['msg'])}")
    return lines


def _message(kind: str, msg: str) -> str:
    if kind == "extra_forbidden":
        return "unknown key"
    return msg.removeprefix("Value error, ")


def _origin(loc: tuple[str | int, ...], origins: Mapping[tuple[str, ...], str]) -> str | None:
    keys = tuple(str(p) for p in loc)
    for size in range(len(keys), 0, -1):
        found = origins.get(keys[:size])
        if found is not None:
            return found
    # A problem with a whole table that only variables created (``XHUB_NOSUCH__KEY`` → ``nosuch``).
    below = sorted(origin for path, origin in origins.items() if keys and path[: len(keys)] == keys)
    return below[0] if below else None


# -- environment variables and secret files


Loc = tuple[str | int, ...]

#: ``*_file`` keys that stay file names: the file is read by its user, with its own checks (the master key's
#: mode, :mod:`hub.sealing`), and its content never enters the configuration.
PATH_KEYS = frozenset({"master_key_file"})


def read_secret_files(node: Any, path: Loc, origins: dict[tuple[str, ...], str],
                       where: Callable[[Loc], str]) -> Any:
    """Replace ``<key>_file = "path"`` with ``<key> = <file content>`` anywhere in the tree.

    ``origins`` learns where each value read this way came from, so that a later problem with it names the
    ``*_file`` key (and the file's path), never the content. ``where`` names a key's place in the file.
    """
    if isinstance(node, list):
        return [read_secret_files(v, (*path, i), origins, where) for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.endswith("_file") and isinstance(value, str) and key != "_file" and key not in PATH_KEYS:
            plain, key_loc = key[: -len("_file")], (*path, key)
            origin = origins.get(_strs(key_loc)) or where(key_loc)
            if plain in node:
                raise FileProblem(f"{origin}: {dotted(key_loc)}: give either {plain} or {key}, not both")
            try:
                out[plain] = read_secret(Path(value))
            except FileProblem as exc:
                raise FileProblem(f"{origin}: {dotted(key_loc)}: {exc}") from None
            origins[_strs((*path, plain))] = f"{origin} ({dotted(key_loc)} = {value})"
        else:
            out[key] = read_secret_files(value, (*path, key), origins, where)
    return out


def _strs(loc: Loc) -> tuple[str, ...]:
    return tuple(str(p) for p in loc)


def env_overrides(env: dict[str, str], origins: dict[tuple[str, ...], str]) -> dict[str, Any]:
    """``XHUB_DATABASE__URL=…`` → ``{"database": {"url": "…"}}``. Values are parsed as TOML when they can be.

    Also ``XHUB_RULES_DIR`` and ``XHUB_SCHEMA_DIR`` for the two top-level keys. Other ``XHUB_*`` names without
    ``__`` (``XHUB_CONFIG``, ``XHUB_URL``, ``XHUB_TOKEN``) belong to the command line, not to this file.
    """
    tree: dict[str, Any] = {}
    owner: dict[tuple[str, ...], str] = {}
    for name in sorted(env):
        raw = env[name]
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX):]
        if "__" not in rest and rest.lower() not in _TOP_LEVEL_ENV:
            continue
        keys = tuple(k.lower() for k in rest.split("__"))
        if any(not k for k in keys):
            raise FileProblem(f"environment {name}: an empty key between '__' separators")
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except (tomllib.TOMLDecodeError, RecursionError):
            value = raw
        node = tree
        for i, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise FileProblem(f"environment {name} conflicts with {owner[keys[: i + 1]]}")
            node = child
        if keys[-1] in node:
            raise FileProblem(f"environment {name} conflicts with {owner.get(keys, 'another XHUB_ variable')}")
        node[keys[-1]] = value
        owner[keys] = name
        origins[keys] = f"environment {name}"
    return tree


_TOP_LEVEL_ENV = {"rules_dir", "schema_dir"}


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
