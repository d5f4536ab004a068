"""The personal data in the demo's samples, and a search for it in files (raw, and inside compressed streams).

:func:`personal_strings` takes the values of the fields that name, locate or identify a person or a vehicle
(names, streets, tax numbers, VINs, IBANs, e-mail addresses) from every sample in ``sandbox/demo/samples`` (XML
elements and JSON keys, matched by name), plus what the demo itself puts in (the FIT-Connect sample's VIN).
:func:`find_personal_data` looks for each of them in every file under a folder: in the raw bytes, and in every
gzip or zlib stream found in them (SQLite pages, WAL, blobs), case-insensitive, also as the escaped forms
JSON and XML give them, and not inside a longer word ("Pick" is not found in "pickup").
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

SAMPLES = Path(__file__).resolve().parents[1] / "sandbox" / "demo" / "samples"
#: field names (lower case, namespace-free) whose values are personal data in the samples
PERSONAL_FIELDS = frozenset({
    "familienname", "vorname", "nachname", "geburtsname", "rufname", "eingetragenername",  # names
    "strasse", "straße",  # streets
    "steuernummer", "steuernummerbund", "steueridentifikationsnummer", "identifikationsnummer",  # tax ids
    "fin", "fahrzeugidentifikationsnummer",  # vehicle identification numbers
    "iban", "email", "telefon",  # bank and contact
    "geburtsort", "geburtsdatum",  # birth
    "zulassungsbescheinigungteil2", "evbnummer", "reservierungsnummer",  # vehicle papers
})
EXTRA = ("WVWZZZ1JZYW000002",)  # the VIN sandbox/demo/__init__.py gives the FIT-Connect sample
MIN_LENGTH = 4  # shorter values ("12a") would be found by chance


def _xml_values(data: bytes) -> Iterator[str]:
    try:
        root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return
    for element in root.iter():
        if isinstance(element.tag, str) and etree.QName(element).localname.lower() in PERSONAL_FIELDS:
            yield from (t.strip() for t in element.itertext() if t.strip())


def _json_values(node: Any, personal: bool = False) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _json_values(value, personal or key.lower() in PERSONAL_FIELDS)
    elif isinstance(node, list):
        for value in node:
            yield from _json_values(value, personal)
    elif personal and isinstance(node, str | int) and not isinstance(node, bool):
        yield str(node)


def personal_strings(samples: Path = SAMPLES) -> list[str]:
    found: set[str] = set(EXTRA)
    for path in sorted(samples.iterdir()):
        data = path.read_bytes()
        if path.suffix == ".json":
            found.update(_json_values(json.loads(data)))
        elif path.suffix == ".xml":
            found.update(_xml_values(data))
            if not data.lstrip().startswith(b"<"):  # the not-XML sample: "Name: Erika Mustermann"
                found.update(line.split(":", 1)[1].strip() for line in data.decode().splitlines()
                             if line.lower().startswith("name:"))
    return sorted(v for v in found if len(v) >= MIN_LENGTH)


def _pattern(value: str) -> re.Pattern[bytes]:
    """Any form of ``value`` (as it is, JSON- or XML-escaped), lower case, not inside a longer word."""
    forms = {value, json.dumps(value)[1:-1], value.replace("&", "&amp;")}
    forms |= {f.encode("ascii", "xmlcharrefreplace").decode() for f in list(forms)}
    either = b"|".join(re.escape(f.lower().encode("utf-8")) for f in sorted(forms))
    return re.compile(rb"(?<![a-z0-9])(?:" + either + rb")(?![a-z0-9])")


def _streams(data: bytes) -> Iterator[bytes]:
    """Everything gzip, zlib or raw deflate makes of any place in ``data`` that starts a stream."""
    starts: set[int] = set()
    for magic in (b"\x1f\x8b", b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda"):
        at = data.find(magic)
        while at != -1:
            starts.add(at)
            at = data.find(magic, at + 1)
    for at in sorted(starts):
        wbits = 31 if data[at] == 0x1F else 15
        try:
            out = zlib.decompressobj(wbits).decompress(data[at:], 64 * 1024 * 1024)
        except zlib.error:
            continue
        if out:
            yield out


@dataclass(frozen=True)
class Hit:
    path: Path
    value: str
    where: str  # "raw" or "compressed stream"


def find_personal_data(root: Path, values: Iterable[str], *, exclude: Iterable[Path] = ()) -> list[Hit]:
    excluded = [p.resolve() for p in exclude]
    needles = {v: _pattern(v) for v in values}
    hits: list[Hit] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if any(path.resolve().is_relative_to(e) for e in excluded):
            continue
        data = path.read_bytes()
        for where, text in [("raw", data.lower()), *(("compressed stream", s.lower()) for s in _streams(data))]:
            hits.extend(Hit(path, value, where) for value, pattern in needles.items() if pattern.search(text))
    return sorted(set(hits), key=lambda h: (str(h.path), h.value))
