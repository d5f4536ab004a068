"""``xhub schemas add``: install an XRepository-style release (zip or folder) as a bundle.

A folder or zip that already has a ``bundle.json`` is installed as it is. Otherwise the manifest is
inferred from the XSDs:

* every ``*.xsd`` is read (safe parser) for its ``targetNamespace``, global elements and imports;
* message types are the global elements named like XÖV messages (``….<4 digits>``); when a release has
  none, the global elements of the top-level files (those no other file includes or imports);
* the namespaces are those of the message types; an entry XSD is generated that pulls in every message
  file (one ``xs:include`` document per namespace, imported dependencies first, because libxml2 honours
  only the first import of a namespace);
* absolute ``http://`` import locations are mapped to the bundle file of the same name;
* ``*.sch`` files become the Schematron list, genericode files the code lists;
* standard and version come from the caller, else from a known namespace, else from the release name.

Nothing is written to the schema directory until the new bundle compiles. The release is brought into a
staging folder (``<schema-dir>/.install-…``, same file system) by :mod:`hub.validation.unpack`, which
lets only checked names, regular files and folders through; the manifest's names and paths are checked
(:mod:`hub.validation.manifest`); the bundle is compiled; then it is renamed into place in one step.
The hub writes an install marker (``.xoev-hub-install.json``) into every folder it installs. With
``--replace`` the old folder is renamed into the staging folder, the new one renamed in, and the staging
folder removed; a folder without the marker (anything the hub did not install) is never touched. One
install at a time per schema directory (an exclusive ``flock`` on the directory). A failed install
removes its staging folder and changes nothing else.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from lxml import etree

from hub.jsonsafe import JsonLimits, JsonRejected, loads
from hub.validation.bundles import Bundle, CompiledBundle
from hub.validation.codelists import is_genericode_file
from hub.validation.detection import detect_known
from hub.validation.manifest import (
    MANIFEST_NAME,
    BundleError,
    Manifest,
    bundle_folder_name,
    check_standard,
    check_version,
    read_manifest,
    write_manifest,
)
from hub.validation.paths import PathProblem, describe_mode, inspect, read_regular, show
from hub.validation.unpack import ZipLimits, copy_folder, unpack_zip

__all__ = ["MARKER_NAME", "ZipLimits", "infer_manifest", "install_bundle"]

XS = "http://www.w3.org/2001/XMLSchema"
_MESSAGE_NAME = re.compile(r"^[\w-]+(?:\.[\w-]+)*\.\d{4}$")
_RELEASE_NAME = re.compile(r"^(?P<standard>[A-Za-z][A-Za-z\-]*?)[_\- ]v?(?P<version>\d+(?:[._]\d+)*)")
ENTRY_NAME = "_xoev_hub_entry.xsd"
MARKER_NAME = ".xoev-hub-install.json"
_INSTALLER = "xhub schemas add"
DEFAULT_ZIP_LIMITS = ZipLimits()
_MARKER_JSON = JsonLimits(max_bytes=64 * 1024, max_depth=4, max_string_chars=4096)


@dataclass
class _XsdInfo:
    path: Path
    namespace: str
    elements: list[str]
    references: list[str] = field(default_factory=list)  # schemaLocation values
    imports: list[str] = field(default_factory=list)  # imported namespaces


def _read_xsd(path: Path) -> _XsdInfo | None:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.parse(str(path), parser).getroot()
    except (OSError, etree.XMLSyntaxError):
        return None
    if root.tag != f"{{{XS}}}schema":
        return None
    info = _XsdInfo(
        path,
        root.get("targetNamespace", ""),
        [e.get("name", "") for e in root.iter(f"{{{XS}}}element") if e.getparent() is root],
    )
    for ref in root:
        if ref.tag in (f"{{{XS}}}include", f"{{{XS}}}import", f"{{{XS}}}redefine") and ref.get(
            "schemaLocation"
        ):
            info.references.append(ref.get("schemaLocation", ""))
        if ref.tag == f"{{{XS}}}import" and ref.get("namespace"):
            info.imports.append(ref.get("namespace", ""))
    return info


def _message_files(infos: list[_XsdInfo]) -> dict[str, list[_XsdInfo]]:
    """Namespace → files that declare message elements."""
    by_ns: dict[str, list[_XsdInfo]] = {}
    for info in infos:
        if any(_MESSAGE_NAME.match(name) for name in info.elements):
            by_ns.setdefault(info.namespace, []).append(info)
    if by_ns:
        return by_ns
    referenced = {Path(ref).name for info in infos for ref in info.references}
    for info in infos:
        if info.elements and info.path.name not in referenced and info.namespace:
            by_ns.setdefault(info.namespace, []).append(info)
    return by_ns


def _ordered_namespaces(by_ns: dict[str, list[_XsdInfo]]) -> list[str]:
    """Namespaces that other message namespaces import come first (see the module docstring)."""
    pending: list[str] = sorted(by_ns)
    ordered: list[str] = []
    while pending:
        for ns in pending:
            deps = {imp for info in by_ns[ns] for imp in info.imports if imp in by_ns and imp != ns}
            if deps <= set(ordered):
                break
        else:
            ns = pending[0]  # an import cycle: any order is as good as another
        ordered.append(ns)
        pending.remove(ns)
    return ordered


def _write_entry(folder: Path, by_ns: dict[str, list[_XsdInfo]]) -> str:
    root = etree.Element(f"{{{XS}}}schema", nsmap={"xs": XS})
    root.append(etree.Comment(" generated by xhub schemas add: one import per message namespace "))
    for index, ns in enumerate(_ordered_namespaces(by_ns)):
        part = etree.Element(
            f"{{{XS}}}schema", nsmap={"xs": XS}, targetNamespace=ns, elementFormDefault="qualified"
        )
        for info in by_ns[ns]:
            etree.SubElement(
                part, f"{{{XS}}}include", schemaLocation=info.path.relative_to(folder).as_posix()
            )
        name = f"_xoev_hub_ns{index}.xsd"
        etree.ElementTree(part).write(str(folder / name), xml_declaration=True, encoding="UTF-8")
        etree.SubElement(root, f"{{{XS}}}import", namespace=ns, schemaLocation=name)
    etree.ElementTree(root).write(str(folder / ENTRY_NAME), xml_declaration=True, encoding="UTF-8")
    return ENTRY_NAME


def infer_manifest(
    folder: Path,
    *,
    standard: str | None,
    version: str | None,
    release_name: str,
    source: str | None = None,
    write_entry: bool = True,
) -> Manifest:
    """Build a manifest for a folder of XSDs without one (see the module docstring)."""
    infos = [i for i in (_read_xsd(p) for p in sorted(folder.rglob("*.xsd"))) if i is not None]
    infos = [i for i in infos if not i.path.name.startswith("_xoev_hub_")]
    by_ns = _message_files(infos)
    if not by_ns:
        raise BundleError(f"{release_name}: no XSD with a targetNamespace and global elements found")
    message_types = sorted(
        {n for files in by_ns.values() for i in files for n in i.elements if _MESSAGE_NAME.match(n)}
        or {n for f in by_ns.values() for i in f for n in i.elements}
    )
    known = next((k for ns in sorted(by_ns) for t in message_types if (k := detect_known(ns, t))), None)
    named = _RELEASE_NAME.match(release_name)
    standard = standard or (known.standard if known else None) or (named.group("standard") if named else None)
    version = (
        version
        or (known.version if known else None)
        or (named.group("version").replace("_", ".") if named else None)
    )
    if not standard or not version:
        raise BundleError(f"{release_name}: cannot tell standard and version; pass --standard and --version")
    try:
        check_standard(standard)
        check_version(version)
    except ValueError as exc:
        raise BundleError(f"{release_name}: {exc}; pass --standard and --version") from None
    by_name: dict[str, list[Path]] = {}
    for info in infos:
        by_name.setdefault(info.path.name, []).append(info.path)
    locations = {
        ref: by_name[PurePosixPath(ref).name][0].relative_to(folder).as_posix()
        for info in infos
        for ref in info.references
        if "://" in ref and len(by_name.get(PurePosixPath(ref).name, [])) == 1
    }
    entry = _write_entry(folder, by_ns) if write_entry else ENTRY_NAME
    return Manifest(
        standard=standard,
        version=version,
        namespaces=sorted(by_ns),
        entry=entry,
        message_types=message_types,
        header=known.header if known else "auto",
        schematron=sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.sch")),
        codelists=sorted(
            p.relative_to(folder).as_posix() for p in folder.rglob("*.xml") if is_genericode_file(p)
        ),
        schema_locations=locations,
        source=source,
    )


def _single_top(folder: Path) -> Path:
    # Releases often wrap everything in one top folder; the bundle starts there.
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else folder


@contextmanager
def _exclusive(schema_dir: Path) -> Iterator[None]:
    """One install at a time per schema directory: an exclusive, non-blocking flock on the directory."""
    fd = os.open(schema_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BundleError(f"{show(schema_dir)}: another 'xhub schemas add' is running there") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _prepare_schema_dir(schema_dir: Path) -> None:
    try:
        schema_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise BundleError(f"{show(schema_dir)}: exists and is not a folder") from None
    except OSError as exc:
        raise BundleError(f"{show(schema_dir)}: cannot create the schema folder: {exc.strerror}") from None
    if not schema_dir.is_dir():
        raise BundleError(f"{show(schema_dir)}: is not a folder")


def _stage(source: Path, staging: Path, zip_limits: ZipLimits) -> tuple[Path, str]:
    """Bring the release into ``staging``; the folder where the bundle starts, and a note for the manifest."""
    try:
        mode = inspect(source).st_mode
    except PathProblem as exc:
        raise BundleError(str(exc)) from None
    work = staging / "bundle"
    if stat.S_ISDIR(mode):
        copy_folder(source, work, zip_limits)
        return work, show(source.name)
    if not stat.S_ISREG(mode):
        raise BundleError(f"{show(source)}: is {describe_mode(mode)}; give a zip file or a folder")
    work.mkdir()
    digest = unpack_zip(source, work, zip_limits)
    return _single_top(work), f"{show(source.name)} sha256:{digest}"


def _write_marker(folder: Path, name: str, manifest: Manifest, note: str) -> None:
    marker = {
        "installed_by": _INSTALLER,
        "folder": name,
        "standard": manifest.standard,
        "version": manifest.version,
        "from": note,
        "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = folder / MARKER_NAME
    path.unlink(missing_ok=True)  # a marker shipped inside the release is never trusted
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(json.dumps(marker, indent=2, ensure_ascii=False) + "\n")


def _installed_by_hub(folder: Path) -> bool:
    """Whether ``folder`` is a real folder (not a link) carrying the marker the hub wrote for this name."""
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return False
        marker = loads(read_regular(folder / MARKER_NAME, _MARKER_JSON.max_bytes, follow=False), _MARKER_JSON)
    except (OSError, PathProblem, JsonRejected):
        return False
    return isinstance(marker, dict) and marker.get("installed_by") == _INSTALLER and marker.get(
        "folder"
    ) == folder.name


def _place(work: Path, target: Path, staging: Path, *, replace: bool) -> None:
    """Rename ``work`` to ``target``; with ``replace``, move a hub-installed ``target`` into ``staging``."""
    try:
        os.lstat(target)
    except FileNotFoundError:
        os.rename(work, target)  # the lock makes "absent" still true here
        return
    if not replace:
        raise BundleError(f"{show(target)} exists; use --replace to overwrite it")
    if not _installed_by_hub(target):
        raise BundleError(
            f"{show(target)} exists but was not installed by '{_INSTALLER}' (no install marker {MARKER_NAME}); "
            "--replace only replaces what the hub installed: move it away yourself"
        )
    old = staging / "replaced"
    os.rename(target, old)
    try:
        os.rename(work, target)
    except OSError:
        os.rename(old, target)
        raise


def install_bundle(
    source: Path,
    schema_dir: Path,
    *,
    standard: str | None = None,
    version: str | None = None,
    replace: bool = False,
    zip_limits: ZipLimits = DEFAULT_ZIP_LIMITS,
) -> Bundle:
    """Install ``source`` (zip or folder) under ``schema_dir`` and return the compiled-once bundle.

    Raises :class:`BundleError` with one line naming what is wrong; nothing is left behind then.
    """
    for option, value, check in (("--standard", standard, check_standard), ("--version", version, check_version)):
        try:
            if value is not None:
                check(value)
        except ValueError as exc:
            raise BundleError(f"{option}: {exc}") from None
    _prepare_schema_dir(schema_dir)
    try:
        with _exclusive(schema_dir):
            staging = Path(tempfile.mkdtemp(prefix=".install-", dir=schema_dir))
            try:
                target, compiled = _install(source, staging, schema_dir, standard, version, replace, zip_limits)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:  # the file system refused something the checks above let through
        if exc.errno == errno.ENOSPC:
            raise BundleError(f"{show(schema_dir)}: no space left on the device") from None
        raise BundleError(f"install into {show(schema_dir)} failed: {exc.strerror or exc}") from None
    # The compiled checks live in memory and do not depend on the folder's name: keep them.
    return Bundle(target, read_manifest(target), "operator", compiled)


def _install(
    source: Path,
    staging: Path,
    schema_dir: Path,
    standard: str | None,
    version: str | None,
    replace: bool,
    zip_limits: ZipLimits,
) -> tuple[Path, CompiledBundle]:
    """Stage, read or infer the manifest, compile, mark and place; the target folder and the checks."""
    work, note = _stage(source, staging, zip_limits)
    if (work / MANIFEST_NAME).exists() or (work / MANIFEST_NAME).is_symlink():
        manifest = read_manifest(work, show(source.name))
    else:
        manifest = infer_manifest(
            work, standard=standard, version=version, release_name=show(source.stem), source=note
        )
        write_manifest(work, manifest)
    name = bundle_folder_name(manifest.standard, manifest.version)
    compiled = Bundle(work, manifest, "operator").compiled()  # refuse a bundle that does not compile
    _write_marker(work, name, manifest, note)
    target = schema_dir / name
    _place(work, target, staging, replace=replace)
    return target, compiled
