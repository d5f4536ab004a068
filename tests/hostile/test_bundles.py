"""Door: ``xhub schemas add`` (schema bundles: zip files and folders, with or without bundle.json).

Attack classes: crafted standard/version names in the manifest, the options and the release name (``..``,
``../..``, absolute paths, slashes, NUL, control characters, unicode dots, over-long names); paths in the
manifest that leave the bundle (``..``, absolute, drive letters, backslashes, symlinks out); zip members
that leave the folder or are not plain files (absolute, ``..``, backslashes, symlinks, FIFOs, devices,
duplicates, file/folder clashes, encrypted, too many, too large, not a zip); sources that are not files
or folders (FIFO, device, symlink loop, broken link) and folders holding such things; ``--replace``
aimed at folders the hub did not install (no marker, forged marker, a symlink out); hostile manifests
(too large, duplicate keys, deep nesting, control characters in printed fields).

Each case asserts the precise one-line refusal, that nothing in the site changed (the whole tree,
including ``var/hub.db`` beside the schema directory), that the installed bundle still validates with
its rules, and that a normal install through the same door still works.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hub.validation.install import MARKER_NAME, install_bundle
from hub.validation.manifest import BundleError
from hub.validation.unpack import ZipLimits
from tests.hostile.validation_kit import (
    Site,
    as_nobody,
    make_site,
    release_folder,
    release_zip,
    snapshot,
    world_folder,
    xsd,
)
from tests.support import ROOT


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("bundles"))


def _refused(site: Site, source: Path, message: str, **options: Any) -> BundleError:
    """Install must fail with ``message``, change nothing anywhere in the site, and the door still works."""
    before = snapshot(site.root)
    with pytest.raises(BundleError, match=message) as caught:
        install_bundle(source, site.schema_dir, **options)
    assert "\n" not in str(caught.value)
    assert snapshot(site.root) == before
    site.assert_still_works()
    return caught.value


BAD_STANDARDS = ["..", "../..", "/etc", "a/b", "a\x00b", "\uff0e\uff0e", "\u2025", "..\\..", "X" * 65, "",
                 " XBau", "XBau\n", "-x", "XBäu", "x\u202e"]
BAD_VERSIONS = ["..", "../../var", "/", "1.0/../../x", "1..2", "1.0\n", "a1", "1" + "x" * 40, "1\x00", ".",
                "1/2", "1.0\u2024\u2024"]


@pytest.mark.parametrize("standard", BAD_STANDARDS, ids=repr)
def test_manifest_standard_names_are_refused(site: Site, standard: str, tmp_path: Path) -> None:
    folder = release_folder(tmp_path / "r", standard, "1.0")
    _refused(site, folder, r"standard .* must be 1 to 64 ASCII letters", replace=True)


@pytest.mark.parametrize("version", BAD_VERSIONS, ids=repr)
def test_manifest_versions_are_refused(site: Site, version: str, tmp_path: Path) -> None:
    folder = release_folder(tmp_path / "r", "XBase", version)
    _refused(site, folder, r"version .* must start with a digit", replace=True)


@pytest.mark.parametrize(("option", "value"), [("standard", "../.."), ("standard", "/tmp/x"),
                                               ("version", "../../var"), ("version", "1/..")])
def test_option_names_are_refused(site: Site, option: str, value: str, tmp_path: Path) -> None:
    folder = release_folder(tmp_path / "r", "XOpt", "1.0", with_manifest=False)
    _refused(site, folder, rf"^--{option}: {option} '{value}' must", replace=True, **{option: value})


def test_release_name_that_is_not_a_standard_needs_options(site: Site, tmp_path: Path) -> None:
    folder = release_folder(tmp_path / "..x.y_1.0", "XOpt", "1.0", with_manifest=False)
    _refused(site, folder, "cannot tell standard and version; pass --standard and --version")


@pytest.mark.parametrize(("changes", "message"), [
    ({"entry": "../../var/hub.db"}, r"entry path '\.\./\.\./var/hub\.db' contains '\.\.'"),
    ({"entry": "/etc/passwd"}, "entry path '/etc/passwd' is absolute"),
    ({"entry": "sub/../../test.xsd"}, r"contains '\.\.'"),
    ({"entry": "C:/test.xsd"}, "is absolute"),
    ({"entry": "..\\..\\test.xsd"}, "contains a backslash"),
    ({"entry": "test\x00.xsd"}, "contains control characters"),
    ({"codelists": ["../../var"]}, r"contains '\.\.'"),
    ({"schematron": ["/etc/rules.sch"]}, "is absolute"),
    ({"schema_locations": {"http://x/a.xsd": "../secret.txt"}}, r"contains '\.\.'"),
    ({"entry": "missing.xsd"}, "'missing.xsd' does not exist"),
    ({"message_types": ["a.0001\n\x1b[2Jinstalled XBau"]}, "is not an XML element name"),
    ({"namespaces": ["urn:x y"]}, "must be a URI without spaces"),
    ({"source": "x\x1b]0;pwned\x07"}, "one printable line"),
])
def test_manifest_paths_and_printed_fields_are_checked(site: Site, tmp_path: Path, changes: dict[str, Any],
                                                      message: str) -> None:
    folder = release_folder(tmp_path / "r", "XBase", "2.0", manifest_changes=changes)
    _refused(site, folder, message)


def test_manifest_entry_through_a_symlink_out_is_refused(site: Site, tmp_path: Path) -> None:
    folder = release_folder(tmp_path / "r", "XBase", "2.0", manifest_changes={"entry": "link.xsd"})
    (tmp_path / "outside.xsd").write_text(xsd("urn:out"))
    (folder / "link.xsd").symlink_to(tmp_path / "outside.xsd")
    _refused(site, folder, r"link.xsd: symbolic link to .*outside.xsd, outside the release folder")


@pytest.mark.parametrize(("text", "message"), [
    ('{"standard": "X", "standard": "Y"}', "Duplicate key: the key 'standard' appears twice"),
    ("[" * 100 + "]" * 100, "nested deeper"),
    ('{"standard": ', "Not valid JSON"),
    ('{"a": "' + "x" * (1024 * 1024) + '"}', "too large"),
])
def test_hostile_manifest_json_is_refused(site: Site, tmp_path: Path, text: str, message: str) -> None:
    folder = release_folder(tmp_path / "r", "XBase", "2.0")
    (folder / "bundle.json").write_text(text)
    _refused(site, folder, message)


def _zip(tmp_path: Path, members: dict[str, str | bytes], **kwargs: Any) -> Path:
    base = {"r/test.xsd": xsd("urn:xhub-test:xzip:1.0"), "r/bundle.json": json.dumps({
        "standard": "XZip", "version": "1.0", "namespaces": ["urn:xhub-test:xzip:1.0"], "entry": "test.xsd"})}
    return release_zip(tmp_path / "xzip_1.0.zip", {**base, **members}, **kwargs)


@pytest.mark.parametrize(("member", "message"), [
    ("../../var/hub.db", r"unsafe member '\.\./\.\./var/hub\.db': .*contains '\.\.'"),
    ("/etc/cron.d/x", "unsafe member '/etc/cron.d/x': .*is absolute"),
    ("r/../../evil.xsd", r"contains '\.\.'"),
    ("C:/evil.xsd", "is absolute"),
    ("..\\..\\evil.xsd", "contains a backslash"),
    ("r/\x1b[31mred.xsd", "contains control characters"),
    ("r/" + "x" * 300 + ".xsd", "longer than 255 bytes"),
])
def test_zip_member_names_are_refused(site: Site, tmp_path: Path, member: str, message: str) -> None:
    _refused(site, _zip(tmp_path, {member: "<x/>"}), message)


@pytest.mark.parametrize(("mode", "kind"), [(0o120777, "a symbolic link"), (0o010644, "a FIFO"),
                                            (0o020644, "a character device"), (0o060644, "a block device"),
                                            (0o140644, "a socket")], ids=["symlink", "fifo", "chardev",
                                                                          "blockdev", "socket"])
def test_zip_members_that_are_not_files_are_refused(site: Site, tmp_path: Path, mode: int, kind: str) -> None:
    archive = _zip(tmp_path, {"r/special.xsd": "/etc/passwd"}, modes={"r/special.xsd": mode})
    _refused(site, archive, f"unsafe member 'r/special.xsd': {kind}")


@pytest.mark.parametrize(("members", "message", "limits"), [
    ({"r/a.xsd": "1", "r//a.xsd": "2"}, "occurs twice", None),
    ({"r/a": "file", "r/a/b.xsd": "under a file"}, "is both a file and a folder", None),
    ({f"r/f{i}.txt": "x" for i in range(20)}, "more than 10 files", ZipLimits(max_members=10)),
    ({"r/big.txt": "x" * 5000}, "unpacks to more than 4000 bytes", ZipLimits(max_total_bytes=4000)),
])
def test_zip_structure_attacks_are_refused(site: Site, tmp_path: Path, members: dict[str, str], message: str,
                                           limits: ZipLimits | None) -> None:
    options = {"zip_limits": limits} if limits else {}
    _refused(site, _zip(tmp_path, members), message, **options)


def test_encrypted_member_is_refused(site: Site, tmp_path: Path) -> None:
    _refused(site, _zip(tmp_path, {"r/x.txt": "x"}, flags={"r/x.txt": 0x1}), "member 'r/x.txt' is encrypted")


def test_not_a_zip_is_refused(site: Site, tmp_path: Path) -> None:
    (tmp_path / "release.zip").write_bytes(os.urandom(2000))
    _refused(site, tmp_path / "release.zip", "release.zip: not a usable zip file")


def test_fifo_source_is_refused_without_opening(site: Site, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "release.zip")
    _refused(site, tmp_path / "release.zip", r"release.zip: is a FIFO \(named pipe\); give a zip file or a folder")


def test_device_source_is_refused(site: Site) -> None:
    _refused(site, Path("/dev/zero"), "/dev/zero: is a character device; give a zip file or a folder")


def test_symlink_loop_source_is_refused(site: Site, tmp_path: Path) -> None:
    (tmp_path / "a.zip").symlink_to(tmp_path / "b.zip")
    (tmp_path / "b.zip").symlink_to(tmp_path / "a.zip")
    _refused(site, tmp_path / "a.zip", "a.zip: symlink loop")


def test_broken_link_source_is_refused(site: Site, tmp_path: Path) -> None:
    (tmp_path / "r.zip").symlink_to(tmp_path / "gone.zip")
    _refused(site, tmp_path / "r.zip", r"r.zip: broken link \(points to .*gone.zip, which does not exist\)")


@pytest.mark.parametrize("what", ["fifo", "socket", "loop", "broken", "dir-link-out", "file-link-out"])
def test_folder_holding_special_entries_is_refused(site: Site, tmp_path: Path, what: str) -> None:
    folder = release_folder(tmp_path / "r", "XBase", "2.0")
    special = folder / "special.xsd"
    messages = {"fifo": "is a FIFO", "socket": "is a socket", "loop": "symlink loop", "broken": "broken link",
                "dir-link-out": "outside the release folder", "file-link-out": "outside the release folder"}
    if what == "fifo":
        os.mkfifo(special)
    elif what == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(special))
        sock.close()
    elif what == "loop":
        special.symlink_to(special)
    elif what == "broken":
        special.symlink_to(folder / "gone")
    elif what == "dir-link-out":
        special.symlink_to(site.root / "var")
    else:
        special.symlink_to(site.secret)
    _refused(site, folder, messages[what])


def test_replace_never_removes_a_folder_the_hub_did_not_install(site: Site, tmp_path: Path) -> None:
    own = site.schema_dir / "xmine-1.0"
    own.mkdir()
    (own / "notes.txt").write_text("the operator's own files")
    try:
        _refused(site, release_folder(tmp_path / "r", "XMine", "1.0"), "was not installed by 'xhub schemas add'",
                 replace=True)
    finally:
        (own / "notes.txt").unlink()
        own.rmdir()


def test_replace_never_follows_a_symlinked_bundle_folder(site: Site, tmp_path: Path) -> None:
    link = site.schema_dir / "xlink-1.0"
    link.symlink_to(site.root / "var")
    try:
        _refused(site, release_folder(tmp_path / "r", "XLink", "1.0"), "was not installed by", replace=True)
    finally:
        link.unlink()


@pytest.mark.parametrize("marker", ['{"installed_by": "xhub schemas add", "folder": "other-1.0"}', "not json",
                                    "link"])
def test_replace_refuses_forged_markers(site: Site, tmp_path: Path, marker: str) -> None:
    forged = site.schema_dir / "xforged-1.0"
    forged.mkdir()
    if marker == "link":
        (forged / MARKER_NAME).symlink_to(site.schema_dir / "xbase-1.0" / MARKER_NAME)
    else:
        (forged / MARKER_NAME).write_text(marker)
    try:
        _refused(site, release_folder(tmp_path / "r", "XForged", "1.0"), "no install marker", replace=True)
    finally:
        (forged / MARKER_NAME).unlink()
        forged.rmdir()


def test_marker_shipped_inside_a_release_is_replaced_by_the_hubs_own(site: Site, tmp_path: Path) -> None:
    folder = release_folder(tmp_path / "r", "XShip", "1.0", files={MARKER_NAME: '{"folder": "../.."}'})
    bundle = install_bundle(folder, site.schema_dir)
    marker = json.loads((bundle.folder / MARKER_NAME).read_text())
    assert (marker["installed_by"], marker["folder"]) == ("xhub schemas add", "xship-1.0")
    site.assert_still_works()


def test_replace_swaps_a_hub_installed_bundle_and_keeps_nothing_old(site: Site, tmp_path: Path) -> None:
    first = install_bundle(release_folder(tmp_path / "a", "XSwap", "1.0", files={"old.txt": "1"}), site.schema_dir)
    second = install_bundle(release_folder(tmp_path / "b", "XSwap", "1.0"), site.schema_dir, replace=True)
    assert first.folder == second.folder
    assert not (second.folder / "old.txt").exists()
    site.assert_still_works()


def test_failed_compile_leaves_nothing_behind(site: Site, tmp_path: Path) -> None:
    folder = release_folder(tmp_path / "r", "XBase", "3.0", files={"test.xsd": "<xs:schema xmlns:xs="
                            "'http://www.w3.org/2001/XMLSchema'><xs:element name='a' type='nope'/></xs:schema>"})
    _refused(site, folder, "XBase 3.0: XSD test.xsd does not compile")


def test_schema_dir_that_is_a_file_is_refused(site: Site, tmp_path: Path) -> None:
    before = snapshot(site.root)
    with pytest.raises(BundleError, match="exists and is not a folder"):
        install_bundle(release_folder(tmp_path / "r", "XBase", "2.0"), site.db)
    assert snapshot(site.root) == before
    site.assert_still_works()


def test_schema_dir_without_write_permission_is_refused(site: Site, tmp_path: Path) -> None:
    with world_folder() as folder:
        schema_dir = folder / "schemas"
        schema_dir.mkdir(mode=0o755)
        release = release_folder(tmp_path / "r", "XBase", "2.0")
        before = snapshot(site.root)
        with as_nobody(), pytest.raises(BundleError, match=f"install into {schema_dir} failed: Permission denied"):
            install_bundle(release, schema_dir)
        assert list(schema_dir.iterdir()) == []
        assert snapshot(site.root) == before
    site.assert_still_works()


def _xhub(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xhub", "--config", str(config), *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, check=False)


def test_cli_subprocess_refuses_the_original_attack_and_uses_the_configured_schema_dir(site: Site,
                                                                                       tmp_path: Path) -> None:
    """``xhub schemas add --replace`` of a manifest named ``..``/``..``, as a real process, with the schema
    directory taken from the configuration; then a normal release through the same command."""
    config = tmp_path / "hub.toml"
    config.write_text(f'schema_dir = "{site.schema_dir}"\n')
    before = snapshot(site.root)
    attack = release_folder(tmp_path / "attack", "..", "..")
    result = _xhub(config, "schemas", "add", "--replace", str(attack))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "standard '..' must be 1 to 64 ASCII letters" in result.stderr
    os.mkfifo(tmp_path / "pipe.zip")
    fifo = _xhub(config, "schemas", "add", str(tmp_path / "pipe.zip"))
    assert (fifo.returncode, fifo.stderr.strip()) == (2, f"error: {tmp_path / 'pipe.zip'}: is a FIFO (named pipe); "
                                                        "give a zip file or a folder")
    assert snapshot(site.root) == before
    good = _xhub(config, "schemas", "add", str(release_folder(tmp_path / "good", "XCli", "1.0")))
    assert good.returncode == 0, good.stderr
    assert f"installed XCli 1.0 into {site.schema_dir / 'xcli-1.0'}" in good.stdout
    site.assert_still_works()
