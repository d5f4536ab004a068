"""The bundle manifest: ``bundle.json`` in every schema bundle folder.

A bundle is one folder per standard and version (``xsd/xbau-2.6/``, ``var/schemas/xgewerbeanzeige-2.2/``)
holding the XSDs, optional Schematron and genericode files, and this manifest::

    {
      "format": 1,
      "standard": "XBau",
      "version": "2.6",
      "namespaces": ["http://www.xleitstelle.de/xbau/2/6"],
      "entry": "_all_xbau_messages.xsd",
      "message_types": ["baugenehmigung.antrag.0200"],
      "header": "xoev-g2g",
      "schematron": ["xbau-schematron.sch"],
      "codelists": ["code_lists"],
      "schema_locations": {"http://www.w3.org/2001/xml.xsd": "xml.xsd"},
      "source": "t12v/xbau-releases @ 534b56f2"
    }

``namespaces`` are the root-element namespaces the bundle validates; ``header`` is a profile name from
:data:`hub.validation.detection.HEADER_PROFILES` or a mapping field → list of local-name paths;
``header_xpath`` and ``prefixes`` (a second, XPath-based header reader) are retired: :func:`read_manifest`
ignores them with a logged warning, so bundles installed by older versions still load, and the header is
read one way, by the ``header`` paths. ``codelists`` are files or folders of genericode lists;
``schema_locations`` maps absolute import URLs to files inside the bundle (nothing is ever fetched).
Every path is relative to the bundle folder and must stay inside it, also after symbolic links are
resolved. The manifest is checked when it is loaded, not when the first message arrives.

``standard`` and ``version`` name the bundle's folder (:func:`bundle_folder_name`), so they are held to
strict patterns whoever supplies them (manifest, ``--standard``/``--version``, release name): a standard
is ASCII letters, digits and ``-``, starting with a letter, at most 64 characters (``XBau-Kernmodul``);
a version starts with a digit and has at most 32 ASCII letters, digits, ``.``, ``_`` and ``-``, without
``..`` (``2.6``, ``1.0-rc1``). The folder is both, lowercased, joined by ``-``: ``xbau-kernmodul-1.3.0``.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hub.jsonsafe import JsonLimits, JsonRejected, loads
from hub.validation.detection import HEADER_PROFILES
from hub.validation.paths import PathProblem, read_regular, relative_name
from hub.validation.report import HEADER_FIELDS

__all__ = [
    "MANIFEST_NAME",
    "MAX_MANIFEST_BYTES",
    "RETIRED_KEYS",
    "BundleError",
    "Manifest",
    "bundle_folder_name",
    "check_standard",
    "check_version",
    "read_manifest",
    "write_manifest",
]

MANIFEST_NAME = "bundle.json"
MAX_MANIFEST_BYTES = 1024 * 1024
_STEP = re.compile(r"^[A-Za-z_][\w.\-]*$")
STANDARD_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")
VERSION_PATTERN = re.compile(r"[0-9][0-9A-Za-z._-]{0,31}")
# Message types are XML element names; namespaces are URIs. Both are printed by ``xhub schemas``: no
# whitespace or control characters, so a crafted manifest cannot forge output lines.
_XML_NAME = re.compile(r"[^\W\d][\w.\-]{0,199}")
_URI = re.compile(r"[!-~\u00a0-\U0010ffff]{1,1024}")
_MANIFEST_JSON = JsonLimits(max_bytes=MAX_MANIFEST_BYTES, max_depth=8, max_string_chars=4096)
# Keys of earlier manifest versions that are no longer read (see the module docstring).
RETIRED_KEYS = ("header_xpath", "prefixes")

log = logging.getLogger(__name__)


class BundleError(ValueError):
    """A schema bundle that cannot be used: bad manifest, missing file, XSD or Schematron error."""


def check_standard(value: str) -> str:
    """``value`` if it is a valid standard name (see the module docstring), else ``ValueError``."""
    if not STANDARD_PATTERN.fullmatch(value):
        raise ValueError(
            f"standard {value!r} must be 1 to 64 ASCII letters, digits and '-', starting with a letter"
        )
    return value


def check_version(value: str) -> str:
    """``value`` if it is a valid version (see the module docstring), else ``ValueError``."""
    if not VERSION_PATTERN.fullmatch(value) or ".." in value:
        raise ValueError(
            f"version {value!r} must start with a digit and have at most 32 ASCII letters, digits, "
            "'.', '_' and '-', without '..'"
        )
    return value


def bundle_folder_name(standard: str, version: str) -> str:
    """The folder a bundle is installed in: ``<standard>-<version>``, lowercased; both names checked."""
    return f"{check_standard(standard)}-{check_version(version)}".lower()


class Manifest(BaseModel):
    """What a bundle contains and how documents of its namespaces are detected and checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1
    standard: str
    version: str
    namespaces: list[str] = Field(min_length=1)
    entry: str
    message_types: list[str] = Field(default_factory=list)
    header: str | dict[str, list[str]] = "auto"
    schematron: list[str] = Field(default_factory=list)
    codelists: list[str] = Field(default_factory=list)
    schema_locations: dict[str, str] = Field(default_factory=dict)
    source: str | None = None

    @field_validator("standard")
    @classmethod
    def _standard(cls, value: str) -> str:
        return check_standard(value)

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        return check_version(value)

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, value: list[str]) -> list[str]:
        for uri in value:
            if not _URI.fullmatch(uri):
                raise ValueError(f"namespace {uri[:80]!r} must be a URI without spaces or control characters")
        return value

    @field_validator("message_types")
    @classmethod
    def _message_types(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _XML_NAME.fullmatch(name):
                raise ValueError(f"message type {name[:80]!r} is not an XML element name")
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 1000 or not value.isprintable()):
            raise ValueError("source must be one printable line of at most 1000 characters")
        return value

    @field_validator("header")
    @classmethod
    def _known_header(cls, value: str | dict[str, list[str]]) -> str | dict[str, list[str]]:
        if isinstance(value, str):
            if value not in HEADER_PROFILES:
                raise ValueError(
                    f"unknown header profile {value!r}; known: {', '.join(sorted(HEADER_PROFILES))}"
                )
            return value
        for name, paths in value.items():
            if name not in HEADER_FIELDS:
                raise ValueError(f"unknown header field {name!r}; fields: {', '.join(HEADER_FIELDS)}")
            for path in paths:
                if not all(_STEP.match(step) for step in path.split("/")):
                    raise ValueError(f"header path {path!r} must be local element names separated by '/'")
        return value

    @model_validator(mode="after")
    def _relative_paths(self) -> Manifest:
        named = [("entry", self.entry)] + [("schematron", r) for r in self.schematron]
        named += [("codelists", r) for r in self.codelists] + [("schema_locations", r) for r in
                                                                self.schema_locations.values()]
        for key, rel in named:
            relative_name(rel, what=f"{key} path")
        return self

    def paths(self) -> list[str]:
        """Every path the manifest names (all relative to the bundle folder)."""
        return [self.entry, *self.schematron, *self.codelists, *self.schema_locations.values()]

    def header_paths(self) -> dict[str, tuple[str, ...]]:
        """The header paths, resolved from a profile name if needed."""
        if isinstance(self.header, str):
            return HEADER_PROFILES[self.header]
        return {name: tuple(paths) for name, paths in self.header.items()}

    def check_files(self, folder: Path, label: str | None = None) -> None:
        """Raise :class:`BundleError` unless every referenced file exists inside ``folder``.

        Symbolic links are resolved first: a path that resolves outside the folder is refused. The entry,
        Schematron files and schema locations must be regular files; a code-list entry a file or folder.
        """
        root = folder.resolve()
        files = {self.entry, *self.schematron, *self.schema_locations.values()}
        for rel in self.paths():
            where = f"{label or folder.name}/{MANIFEST_NAME}: {rel!r}"
            try:
                target = (root / rel).resolve(strict=True)
            except FileNotFoundError:
                raise BundleError(f"{where} does not exist") from None
            except (OSError, RuntimeError) as exc:  # a symlink loop is a RuntimeError before Python 3.13
                raise BundleError(f"{where} cannot be resolved: {exc}") from None
            if not target.is_relative_to(root):
                raise BundleError(f"{where} leads outside the bundle folder (through a symbolic link)")
            if rel in files and not target.is_file():
                raise BundleError(f"{where} is not a regular file")
            if not (target.is_file() or target.is_dir()):
                raise BundleError(f"{where} is neither a file nor a folder")


def read_manifest(folder: Path, label: str | None = None) -> Manifest:
    """Load and check ``folder/bundle.json`` (at most 1 MB, the hub's JSON parser with its limits).

    Errors name ``<label>/bundle.json`` (default: the folder's name).
    """
    path = folder / MANIFEST_NAME
    name = label or folder.name
    try:
        data = loads(read_regular(path, MAX_MANIFEST_BYTES, follow=False), _MANIFEST_JSON)
        if isinstance(data, dict):
            retired = [key for key in RETIRED_KEYS if key in data]
            if any(data[key] for key in retired):  # empty ones were written by older `xhub schemas add`
                log.warning(
                    "%s/%s: %s ignored: the header is read by the 'header' paths only; remove the key",
                    name, MANIFEST_NAME, " and ".join(retired),
                )
            data = {key: value for key, value in data.items() if key not in RETIRED_KEYS}
        manifest = Manifest.model_validate(data)
    except PathProblem as exc:
        raise BundleError(f"{name}/{MANIFEST_NAME}: cannot read: {exc.what}") from None
    except JsonRejected as exc:
        line = f" (line {exc.line})" if exc.line else ""
        raise BundleError(f"{name}/{MANIFEST_NAME}: {exc.title}: {exc.detail}{line}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'manifest'}: {e['msg']}" for e in exc.errors()
        )
        raise BundleError(f"{name}/{MANIFEST_NAME}: {problems}") from None
    manifest.check_files(folder, name)
    return manifest


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    """Write ``folder/bundle.json`` (pretty-printed, stable key order)."""
    path = folder / MANIFEST_NAME
    data = manifest.model_dump(exclude_defaults=False)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
