"""Door: ``xhub validate PATH…`` (and the configured schema directory of ``xhub validate``/``schemas``).

Attack classes: paths that are not regular files (FIFO — which would block a reader —, socket, device,
a folder's ``*.xml`` entries that are such things), symlink loops (file, folder, self), broken links,
links out of a walked folder, paths through a file, missing paths, NUL bytes, unreadable files and
folders, files far beyond the size limit (a 300 MB sparse file must be refused without being read), file
names with newlines, terminal escapes and bytes that are not UTF-8 (output stays one line per problem),
very deep folders (no recursion limit), hostile XML content (XXE, entity expansion), bad options.

Each case asserts the precise one-line error naming the path and what it is, the exit code (0 all valid,
1 invalid or not checked, 2 usage error or unreadable path), that the other files were still validated,
that nothing in the site changed, and that a normal validation through the same door works afterwards.
A representative subset runs ``xhub`` as a real subprocess with the schema directory from the
configuration.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import xhub.cli
from hub.validation.cli import main_app
from tests.hostile.validation_kit import SECRET, Site, as_nobody, document, make_site, snapshot, world_folder
from tests.support import ROOT

runner = CliRunner()
LIMIT = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    site = make_site(tmp_path_factory.mktemp("validate"))
    (site.root / "docs").mkdir()
    (site.root / "docs" / "good.xml").write_bytes(document(site.base_namespace))
    return site


def _good(site: Site) -> Path:
    return site.root / "docs" / "good.xml"


def _run(site: Site, *args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(main_app, ["validate", "--schema-dir", str(site.schema_dir), *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def _check(site: Site, args: list[str | Path], code: int, errors: list[str], valid: int = 0) -> str:
    """Run, compare exit code and stderr lines exactly, count valid lines; nothing changed; door works."""
    before = snapshot(site.root)
    got_code, out, err = _run(site, *args)
    assert (got_code, err.splitlines()) == (code, errors), out
    assert out.count(": valid | XBase 1.0") == valid
    assert SECRET not in out + err
    assert snapshot(site.root) == before
    again = _run(site, _good(site))
    assert again[0] == 0 and again[1].count(": valid | XBase 1.0 test.nachricht.0001") == 1
    return out


def test_fifo_is_named_and_never_opened(site: Site, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.xml")
    _check(site, [tmp_path / "pipe.xml", _good(site)], 2,
           [f"error: {tmp_path}/pipe.xml: is a FIFO (named pipe), not a regular file; not opened"], valid=1)


def test_socket_is_named(site: Site, tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "s.xml"))
    try:
        _check(site, [tmp_path / "s.xml"], 2, [f"error: {tmp_path}/s.xml: is a socket, not a regular file; not opened"])
    finally:
        sock.close()


def test_device_is_named(site: Site) -> None:
    _check(site, ["/dev/zero"], 2, ["error: /dev/zero: is a character device, not a regular file; not opened"])


@pytest.mark.parametrize("kind", ["pair", "self"])
def test_symlink_loops_are_named(site: Site, tmp_path: Path, kind: str) -> None:
    if kind == "pair":
        (tmp_path / "a.xml").symlink_to(tmp_path / "b.xml")
        (tmp_path / "b.xml").symlink_to(tmp_path / "a.xml")
    else:
        (tmp_path / "a.xml").symlink_to(tmp_path / "a.xml")
    _check(site, [tmp_path / "a.xml", _good(site)], 2, [f"error: {tmp_path}/a.xml: symlink loop"], valid=1)


def test_broken_link_is_named(site: Site, tmp_path: Path) -> None:
    (tmp_path / "a.xml").symlink_to(tmp_path / "gone.xml")
    _check(site, [tmp_path / "a.xml"], 2,
           [f"error: {tmp_path}/a.xml: broken link (points to {tmp_path}/gone.xml, which does not exist)"])


@pytest.mark.parametrize(("name", "what"), [
    ("missing.xml", "no such file or folder"),
    ("docs/good.xml/x.xml", "no such file or folder (a part of the path is not a folder)"),
    ("docs/" + "n" * 300 + ".xml", "name too long"),
])
def test_paths_that_do_not_lead_to_a_file(site: Site, name: str, what: str) -> None:
    path = site.root / name
    _check(site, [path, _good(site)], 2, [f"error: {path}: {what}"], valid=1)


def test_huge_file_is_refused_before_reading(site: Site, tmp_path: Path) -> None:
    big = tmp_path / "big.xml"
    with big.open("wb") as out:
        out.truncate(300 * 1024 * 1024)  # sparse: no disk used, but reading it would take 300 MB
    _run(site, _good(site))  # compile the bundle first: its memory is not the point here
    tracemalloc.start()
    try:
        _check(site, [big], 2, [f"error: {big}: too large: 314572800 bytes; the limit is {LIMIT} bytes"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024


@pytest.fixture
def world_dir() -> Iterator[Path]:
    with world_folder() as folder:
        yield folder


def test_unreadable_file_and_folder_are_named(site: Site, world_dir: Path) -> None:
    secret = world_dir / "locked.xml"
    secret.write_bytes(document(site.base_namespace))
    secret.chmod(0o000)
    closed = world_dir / "closed"
    closed.mkdir()
    closed.chmod(0o000)
    empty = world_dir / "schemas"
    empty.mkdir()
    before = snapshot(site.root)
    with as_nobody():
        result = runner.invoke(main_app, ["validate", "--schema-dir", str(empty), str(secret), str(world_dir)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {secret}: permission denied",
        f"error: {secret}: permission denied",  # the same file again, found in the folder
        f"error: {closed}: cannot list the folder: permission denied",
    ]
    assert snapshot(site.root) == before
    assert _run(site, _good(site))[0] == 0


def test_unreadable_schema_dir_is_a_warning_not_a_crash(site: Site, world_dir: Path) -> None:
    schemas = world_dir / "schemas"
    schemas.mkdir(mode=0o700)
    message = world_dir / "m.xml"
    message.write_bytes(document(site.base_namespace))
    message.chmod(0o644)
    with as_nobody():
        result = runner.invoke(main_app, ["validate", "--schema-dir", str(schemas), str(message)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"warning: {schemas}: cannot list the schema folder: Permission denied"]
    assert "m.xml: not_checked | unknown document" in result.stdout
    assert _run(site, _good(site))[0] == 0


def test_hostile_file_names_stay_on_one_line(site: Site, tmp_path: Path) -> None:
    weird = tmp_path / "evil\n\x1b[2J.xml"
    weird.write_bytes(document(site.base_namespace))
    os.mkfifo(tmp_path / "pipe\r\x07.xml")
    raw = os.fsencode(tmp_path) + b"/caf\xe9.xml"
    with open(raw, "wb") as out:
        out.write(document(site.base_namespace))
    out = _check(site, [tmp_path], 2, [f"error: {tmp_path}/pipe\\r\\x07.xml: is a FIFO (named pipe), not a "
                                       "regular file; not opened"], valid=2)
    assert f"{tmp_path}/caf\\xe9.xml: valid | XBase 1.0" in out
    assert f"{tmp_path}/evil\\n\\x1b[2J.xml: valid | XBase 1.0" in out
    assert "\x1b" not in out


def test_folder_walk_survives_every_bad_entry(site: Site, tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    (folder / "sub").mkdir(parents=True)
    (folder / "a-good.xml").write_bytes(document(site.base_namespace))
    (folder / "sub" / "nested.xml").write_bytes(document(site.base_namespace))
    (folder / "b-bad.xml").write_bytes(document(site.base_namespace, "verboten"))
    os.mkfifo(folder / "c-pipe.xml")
    (folder / "d-loop.xml").symlink_to(folder / "d-loop.xml")
    (folder / "e-broken.xml").symlink_to(folder / "gone.xml")
    (folder / "f-out.xml").symlink_to(site.secret)
    (folder / "g-inside.xml").symlink_to(folder / "a-good.xml")
    (folder / "h-dir.xml").mkdir()
    (folder / "h-dir.xml" / "deeper.xml").write_bytes(document(site.base_namespace))
    (folder / "sub" / "up").symlink_to(folder)  # a folder loop: not followed
    (folder / "sub" / "site").symlink_to(site.root)  # out of the folder: not followed
    (folder / "notes.txt").write_text("not XML, not looked at")
    with (folder / "i-huge.xml").open("wb") as out:
        out.truncate(LIMIT + 1)
    out = _check(site, [folder], 2, [
        f"error: {folder}/c-pipe.xml: is a FIFO (named pipe), not a regular file; not opened",
        f"error: {folder}/d-loop.xml: symlink loop",
        f"error: {folder}/e-broken.xml: broken link (points to {folder}/gone.xml, which does not exist)",
        f"error: {folder}/f-out.xml: symbolic link to {site.secret}, outside {folder}; not followed",
        f"error: {folder}/i-huge.xml: too large: {LIMIT + 1} bytes; the limit is {LIMIT} bytes",
    ], valid=4)
    assert f"{folder}/b-bad.xml: invalid | XBase 1.0" in out


def test_very_deep_folders_are_walked(site: Site, tmp_path: Path) -> None:
    levels = [tmp_path]
    for _ in range(1200):  # deeper than Python's recursion limit (built and removed without recursion)
        levels.append(levels[-1] / "d")
        levels[-1].mkdir()
    (levels[-1] / "m.xml").write_bytes(document(site.base_namespace))
    try:
        _check(site, [tmp_path], 0, [], valid=1)
    finally:
        (levels[-1] / "m.xml").unlink()
        for level in reversed(levels[1:]):
            level.rmdir()


def test_empty_folder_is_a_usage_error(site: Site, tmp_path: Path) -> None:
    _check(site, [tmp_path], 2, ["error: no XML files found"])


@pytest.mark.parametrize(("body", "title"), [
    (b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>', "Document type declaration not allowed"),
    (b'<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><r>&b;</r>',
     "Document type declaration not allowed"),
    (b"\x00\x01\x02 binary", "Not well-formed XML"),
])
def test_hostile_content_is_invalid_not_a_crash(site: Site, tmp_path: Path, body: bytes, title: str) -> None:
    (tmp_path / "m.xml").write_bytes(body)
    out = _check(site, [tmp_path / "m.xml"], 1, [])
    assert f"m.xml: invalid | unknown document | {title}" in out


def test_document_values_cannot_forge_output_lines(site: Site, tmp_path: Path) -> None:
    """libxml2 quotes a bad value in its XSD message: a line break in it must not start a new line."""
    sample = next((ROOT / "tests" / "fixtures" / "xoev" / "xgewerbesteuer-1.4").glob("*2021-01-15*.xml"))
    forged = "x\nforged.xml: valid\n"
    body = sample.read_bytes().replace(b"<bescheidDatum>2021-01-15<", f"<bescheidDatum>{forged}<".encode(), 1)
    (tmp_path / "m.xml").write_bytes(body)
    out = _check(site, [tmp_path / "m.xml"], 1, [])
    lines = out.splitlines()
    assert lines[0].startswith(f"{tmp_path}/m.xml: invalid | XGewerbesteuer 1.4")
    assert all(line.startswith("    ") for line in lines[1:])
    assert any("x\\nforged.xml: valid\\n" in line for line in lines)
    assert not any(line.startswith("forged.xml") for line in lines)


def test_bad_format_is_a_usage_error(site: Site) -> None:
    _check(site, ["--format", "yaml", _good(site)], 2, ["error: --format must be 'text' or 'json', not 'yaml'"])


def test_json_output_keeps_the_readable_files(site: Site, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.xml")
    out = _check(site, ["--format", "json", tmp_path / "pipe.xml", _good(site)], 2,
                 [f"error: {tmp_path}/pipe.xml: is a FIFO (named pipe), not a regular file; not opened"])
    assert [(d["file"], d["verdict"]) for d in json.loads(out)] == [(str(_good(site)), "valid")]


def test_configured_schema_dir_is_used_without_the_option(site: Site, tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(f'schema_dir = "{site.schema_dir}"\n')
    result = runner.invoke(xhub.cli.app, ["--config", str(config), "validate", str(_good(site))])
    assert result.exit_code == 0, result.output
    assert f"{_good(site)}: valid | XBase 1.0 test.nachricht.0001" in result.stdout
    listing = runner.invoke(xhub.cli.app, ["--config", str(config), "schemas", "list"])
    assert f"XBase 1.0 [operator] {site.schema_dir / 'xbase-1.0'}" in listing.stdout


def test_subprocess_with_configured_schema_dir(site: Site, tmp_path: Path) -> None:
    """As a real process: a FIFO, a 300 MB sparse file and a symlink loop beside a good file; one line per
    problem on stderr, the good file validated, no traceback, nothing changed, and it returns promptly."""
    config = tmp_path / "hub.toml"
    config.write_text(f'schema_dir = "{site.schema_dir}"\n')
    os.mkfifo(tmp_path / "pipe.xml")
    with (tmp_path / "big.xml").open("wb") as out:
        out.truncate(300 * 1024 * 1024)
    (tmp_path / "loop.xml").symlink_to(tmp_path / "loop.xml")
    before = snapshot(site.root)
    result = subprocess.run(
        [sys.executable, "-m", "xhub", "--config", str(config), "validate", str(tmp_path / "pipe.xml"),
         str(tmp_path / "big.xml"), str(tmp_path / "loop.xml"), str(_good(site))],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {tmp_path}/pipe.xml: is a FIFO (named pipe), not a regular file; not opened",
        f"error: {tmp_path}/big.xml: too large: 314572800 bytes; the limit is {LIMIT} bytes",
        f"error: {tmp_path}/loop.xml: symlink loop",
    ]
    assert result.stdout.splitlines() == [f"{_good(site)}: valid | XBase 1.0 test.nachricht.0001"]
    assert snapshot(site.root) == before
