"""Shared by the hostile tests of bundles, stylesheets and ``xhub validate``: a site on disk, tiny real
bundles, a tree snapshot, and a loopback listener that counts connections.

The site is what an operator has: ``site/var/hub.db`` (a real SQLite database), ``site/var/schemas``
(the schema directory, with one bundle installed by the hub), a secret file beside them that nothing may
read, and a folder of releases. Every hostile case snapshots the whole site before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.validation import ValidationEngine
from hub.validation.install import install_bundle

SECRET = "TOP-SECRET-7f3a9c"  # the content of the file outside every bundle; must never show up anywhere
SCH_NS = "http://purl.oclc.org/dsdl/schematron"


def xsd(namespace: str) -> str:
    """One message type ``test.nachricht.0001`` with one ``wert`` child."""
    return f"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="{namespace}"
  xmlns:t="{namespace}" elementFormDefault="qualified">
  <xs:element name="test.nachricht.0001"><xs:complexType><xs:sequence>
    <xs:element name="wert" type="xs:string"/></xs:sequence></xs:complexType></xs:element>
</xs:schema>"""


def schematron(namespace: str, body: str = "", *, extra: str = "", test: str = "t:wert != 'verboten'") -> str:
    """Rules for :func:`xsd`: ``wert`` must not be ``verboten``; ``body`` and ``extra`` add more."""
    return f"""<sch:schema xmlns:sch="{SCH_NS}" queryBinding="xslt2">
  <sch:ns prefix="t" uri="{namespace}"/>{extra}
  <sch:pattern><sch:rule context="t:test.nachricht.0001">
    <sch:assert id="t-001" test="{test}">Der Wert ist verboten.</sch:assert>{body}
  </sch:rule></sch:pattern>
</sch:schema>"""


def document(namespace: str, value: str = "ok") -> bytes:
    return (f'<t:test.nachricht.0001 xmlns:t="{namespace}"><t:wert>{value}</t:wert>'
            "</t:test.nachricht.0001>").encode()


def manifest(standard: str, version: str, namespace: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "standard": standard, "version": version, "namespaces": [namespace], "entry": "test.xsd",
        "message_types": ["test.nachricht.0001"], "schematron": ["rules.sch"],
    }
    data.update(changes)
    return data


def release_folder(where: Path, standard: str, version: str, *, manifest_changes: dict[str, Any] | None = None,
                   files: dict[str, str] | None = None, with_manifest: bool = True,
                   rules: str | None = None) -> Path:
    """A release folder with a tiny XSD, rules and (unless ``with_manifest=False``) a bundle.json."""
    namespace = f"urn:xhub-test:{standard.lower()}:{version}"
    where.mkdir(parents=True, exist_ok=True)
    (where / "test.xsd").write_text(xsd(namespace))
    (where / "rules.sch").write_text(rules if rules is not None else schematron(namespace))
    if with_manifest:
        data = manifest(standard, version, namespace, **(manifest_changes or {}))
        (where / "bundle.json").write_text(json.dumps(data))
    for name, text in (files or {}).items():
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        (where / name).write_text(text)
    return where


def release_zip(path: Path, members: dict[str, str | bytes], *, modes: dict[str, int] | None = None,
                flags: dict[str, int] | None = None) -> Path:
    """A zip with exactly these member names (nothing normalised), optional Unix modes and flag bits
    (patched into the central directory afterwards: zipfile will not write an "encrypted" flag itself)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = ((modes or {}).get(name, 0o100644)) << 16
            zf.writestr(info, content)
    data = bytearray(path.read_bytes())
    for name, bits in (flags or {}).items():
        central = data.find(b"PK\x01\x02")
        while central >= 0:
            length = int.from_bytes(data[central + 28 : central + 30], "little")
            if data[central + 46 : central + 46 + length] == name.encode():
                data[central + 8] |= bits
            central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))
    return path


def snapshot(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every entry below ``root`` (links not followed): kind, mode and content digest or link target."""
    found: dict[str, tuple[str, int, str]] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            info = os.lstat(path)
            key = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                found[key] = ("link", info.st_mode, os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                found[key] = ("file", info.st_mode, hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                found[key] = ("dir" if stat.S_ISDIR(info.st_mode) else "other", info.st_mode, "")
    return found


@dataclass
class Site:
    """An operator's site: database, schema directory with one installed bundle, a secret, releases."""

    root: Path
    base_namespace: str = "urn:xhub-test:xbase:1.0"
    after_count: int = field(default=0)

    @property
    def schema_dir(self) -> Path:
        return self.root / "var" / "schemas"

    @property
    def db(self) -> Path:
        return self.root / "var" / "hub.db"

    @property
    def secret(self) -> Path:
        return self.root / "secret.txt"

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    def engine(self) -> ValidationEngine:
        return ValidationEngine.from_dirs([self.schema_dir])

    def assert_still_works(self) -> None:
        """The installed bundle still validates (rules included), the database is intact, and a normal
        install through the same door still works."""
        engine = self.engine()
        assert engine.validate(document(self.base_namespace)).verdict == "valid"
        refused = engine.validate(document(self.base_namespace, "verboten"))
        assert (refused.verdict, refused.errors[0].rule) == ("invalid", "t-001")
        with sqlite3.connect(self.db) as conn:
            assert conn.execute("select secret from canary").fetchone() == (SECRET,)
        self.after_count += 1
        folder = release_folder(self.releases / f"after-{self.after_count}", "XAfter", "1.0")
        bundle = install_bundle(folder, self.schema_dir, replace=True)
        assert bundle.folder == self.schema_dir / "xafter-1.0"
        report = ValidationEngine([bundle]).validate(document("urn:xhub-test:xafter:1.0", "verboten"))
        assert report.verdict == "invalid"
        assert not [p for p in self.schema_dir.iterdir() if p.name.startswith(".")]  # no staging left


def make_site(root: Path) -> Site:
    site = Site(root)
    site.schema_dir.mkdir(parents=True)
    with sqlite3.connect(site.db) as conn:
        conn.execute("create table canary (secret text)")
        conn.execute("insert into canary values (?)", (SECRET,))
    site.secret.write_text(SECRET)
    site.releases.mkdir()
    install_bundle(release_folder(site.releases / "xbase", "XBase", "1.0"), site.schema_dir)
    return site


# The attacker's server runs in its own process: Saxon holds the GIL while it runs, so a listener thread
# in this process could not even accept a connection that an unconfined Saxon makes (it would hang).
_SERVER = r"""
import socket, sys
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(64)
print(sock.getsockname()[1], flush=True)
with open(sys.argv[1], "a", buffering=1) as log:
    while True:
        conn, _ = sock.accept()
        log.write("connection\n")  # before answering: a client that got an answer is always counted
        with conn:
            conn.settimeout(1.0)
            try:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nLEAK")
            except OSError:
                pass
"""


class Listener:
    """A TCP server on loopback (in a child process) that counts connections and answers ``LEAK``."""

    def __init__(self, log: Path) -> None:
        self.log = log
        log.touch()
        self.process = subprocess.Popen([sys.executable, "-c", _SERVER, str(log)], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/leak"

    @property
    def connections(self) -> int:
        return len(self.log.read_text().splitlines())

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextmanager
def listening(log: Path) -> Iterator[Listener]:
    listener = Listener(log)
    try:
        yield listener
    finally:
        listener.close()


@contextmanager
def world_folder() -> Iterator[Path]:
    """A folder ``nobody`` can enter (pytest's tmp folders are private to root); removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="xhub-hostile-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for path in sorted(folder.rglob("*"), reverse=True):
            path.chmod(0o700)
            path.rmdir() if path.is_dir() else path.unlink()
        folder.rmdir()


@contextmanager
def as_nobody() -> Iterator[None]:
    """Run the block with the effective uid of ``nobody`` when the tests run as root (root reads any file)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
