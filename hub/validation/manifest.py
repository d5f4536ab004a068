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
      "header_xpath": {"message_uuid": ["nachrichtenkopf.g2g/identifikation.nachricht/nachrichtenUUID"]},
      "prefixes": {"xbau": "http://www.xleitstelle.de/xbau/2/6"},
      "schematron": ["xbau-schematron.sch"],
      "codelists": ["code_lists"],
      "schema_locations": {"http://www.w3.org/2001/xml.xsd": "xml.xsd"},
      "source": "t12v/xbau-releases @ 534b56f2"
    }

``namespaces`` are the root-element namespaces the bundle validates; ``header`` is a profile name from
:data:`hub.validation.detection.HEADER_PROFILES` or a mapping field → list of local-name paths;
``codelists`` are files or folders of genericode lists; ``schema_locations`` maps absolute import URLs
to files inside the bundle (nothing is ever fetched). Every path is relative to the bundle folder and
must stay inside it. The manifest is checked when it is loaded, not when the first message arrives.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hub.validation.detection import HEADER_PROFILES, HeaderXPath
from hub.validation.report import HEADER_FIELDS

__all__ = ["MANIFEST_NAME", "BundleError", "Manifest", "read_manifest", "write_manifest"]

MANIFEST_NAME = "bundle.json"
_STEP = re.compile(r"^[A-Za-z_][\w.\-]*$")


class BundleError(ValueError):
    """A schema bundle that cannot be used: bad manifest, missing file, XSD or Schematron error."""


class Manifest(BaseModel):
    """What a bundle contains and how documents of its namespaces are detected and checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1
    standard: str = Field(min_length=1)
    version: str = Field(min_length=1)
    namespaces: list[str] = Field(min_length=1)
    entry: str
    message_types: list[str] = Field(default_factory=list)
    header: str | dict[str, list[str]] = "auto"
    header_xpath: dict[str, list[str]] = Field(default_factory=dict)
    prefixes: dict[str, str] = Field(default_factory=dict)
    schematron: list[str] = Field(default_factory=list)
    codelists: list[str] = Field(default_factory=list)
    schema_locations: dict[str, str] = Field(default_factory=dict)
    source: str | None = None

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
    def _header_xpath(self) -> Manifest:
        for name in self.header_xpath:
            if name not in HEADER_FIELDS:
                raise ValueError(f"unknown header_xpath field {name!r}; fields: {', '.join(HEADER_FIELDS)}")
        try:
            HeaderXPath(self.header_xpath, self.prefixes)
        except ValueError as exc:
            raise ValueError(f"header_xpath: {exc}") from None
        return self

    @model_validator(mode="after")
    def _relative_paths(self) -> Manifest:
        for rel in [self.entry, *self.schematron, *self.codelists, *self.schema_locations.values()]:
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise ValueError(f"path {rel!r} must be relative to the bundle folder")
        return self

    def header_paths(self) -> dict[str, tuple[str, ...]]:
        """The header paths, resolved from a profile name if needed."""
        if isinstance(self.header, str):
            return HEADER_PROFILES[self.header]
        return {name: tuple(paths) for name, paths in self.header.items()}

    def check_files(self, folder: Path) -> None:
        """Raise :class:`BundleError` unless every referenced file exists inside ``folder``."""
        for rel in [self.entry, *self.schematron, *self.codelists, *self.schema_locations.values()]:
            if not (folder / rel).exists():
                raise BundleError(f"{folder.name}/{MANIFEST_NAME}: {rel!r} does not exist")


def read_manifest(folder: Path) -> Manifest:
    """Load and check ``folder/bundle.json``."""
    path = folder / MANIFEST_NAME
    try:
        manifest = Manifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{folder.name}/{MANIFEST_NAME}: cannot read: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'manifest'}: {e['msg']}" for e in exc.errors()
        )
        raise BundleError(f"{folder.name}/{MANIFEST_NAME}: {problems}") from None
    manifest.check_files(folder)
    return manifest


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    """Write ``folder/bundle.json`` (pretty-printed, stable key order)."""
    path = folder / MANIFEST_NAME
    data = manifest.model_dump(exclude_defaults=False)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
