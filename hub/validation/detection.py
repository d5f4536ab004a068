"""Detection (which standard, version, message type) and header extraction.

Both work without any schema installed: the hub must be able to say "this is an XGewerbeanzeige 2.2
``abh.gewerbemeldung.0500`` from AGS 12052000, and its schema is not installed". Detection data lives
here as two small tables:

``HEADER_PROFILES``
    where the header fields sit, per header layout. A path is a ``/``-separated list of *local* element
    names below the root (namespace-agnostic, because XÖV headers mix qualified and unqualified
    elements); the first path that matches wins; several matching nodes give a list.
``KNOWN_STANDARDS``
    namespace patterns of standards the hub recognises even without a bundle. Installed bundles
    (``bundle.json``) come first and name their own header profile or paths.

The message type is the root element's local name (XÖV encodes it there, e.g.
``baugenehmigung.antrag.0200``); the type code falls back to the root name's trailing four digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from hub.validation.report import HEADER_FIELDS, HeaderValue

__all__ = [
    "HEADER_PROFILES",
    "KNOWN_STANDARDS",
    "Detected",
    "KnownStandard",
    "detect_known",
    "extract_header",
    "split_tag",
]

HeaderPaths = dict[str, tuple[str, ...]]

HEADER_PROFILES: dict[str, HeaderPaths] = {
    # XÖV Basisnachricht (XBau, XBau-Kernmodul and other XÖV standards on the G2G header)
    "xoev-g2g": {
        "message_uuid": ("nachrichtenkopf.g2g/identifikation.nachricht/nachrichtenUUID",),
        "type_code": ("nachrichtenkopf.g2g/identifikation.nachricht/nachrichtentyp/code",),
        "created_at": ("nachrichtenkopf.g2g/identifikation.nachricht/erstellungszeitpunkt",),
        "author_id": ("nachrichtenkopf.g2g/autor/kennung",),
        "reader_id": ("nachrichtenkopf.g2g/leser/kennung",),
    },
    "xgewerbeanzeige": {
        "message_uuid": ("nachrichtenkopf/identifikation.nachricht/nachrichtenUUID",),
        "type_code": ("nachrichtenkopf/identifikation.nachricht/nachrichtentyp/code",),
        "created_at": ("nachrichtenkopf/identifikation.nachricht/erstellungszeitpunkt",),
        "author_id": ("nachrichtenkopf/autor/behoerdenkennung/kennung/code",),
        "reader_id": ("nachrichtenkopf/leser/behoerdenkennung/kennung/code",),
    },
    "xdomea": {
        "message_uuid": ("Kopf/ProzessID",),
        "type_code": ("Kopf/Nachrichtentyp/code",),
        "created_at": ("Kopf/Erstellungszeitpunkt",),
        "author_id": ("Kopf/Absender/Behoerdenkennung/Behoerdenschluessel/code",),
        "reader_id": ("Kopf/Empfaenger/Behoerdenkennung/Behoerdenschluessel/code",),
    },
    "xgewerbesteuer": {
        "message_uuid": ("nachrichtenkopf/nachrichtenID",),
        "type_code": (),
        "created_at": ("nachrichtenkopf/zeitstempel",),
        "author_id": ("kommune/gemeindeschluessel/code",),
        "reader_id": (),
    },
    # Destatis DatML/RAW (XGewerbeanzeige 1.3)
    "datml-raw": {
        "message_uuid": (),
        "type_code": ("nachricht/erhebung/kennung",),
        "created_at": ("protokoll/dokumentinstanz/datum",),
        "author_id": ("absender/kennung",),
        "reader_id": ("empfaenger/kennung",),
    },
}

# "auto" tries every layout; operator bundles whose standard the hub does not know get it.
HEADER_PROFILES["auto"] = {
    name: tuple(path for profile in list(HEADER_PROFILES.values()) for path in profile[name])
    for name in HEADER_FIELDS
}


@dataclass(frozen=True)
class KnownStandard:
    """A standard recognised by namespace (and optionally root name) without an installed bundle.

    ``version`` may use ``{name}`` placeholders filled from the named groups of ``namespace``.
    """

    standard: str
    namespace: str
    version: str
    header: str
    root: str | None = None

    def match(self, namespace: str, local: str) -> str | None:
        """The version when this entry matches the root element, else None."""
        found = re.fullmatch(self.namespace, namespace)
        if found is None or (self.root is not None and self.root != local):
            return None
        return self.version.format(**found.groupdict())


KNOWN_STANDARDS: tuple[KnownStandard, ...] = (
    KnownStandard(
        "XGewerbeanzeige",
        r"http://www\.xgewerbeanzeige\.de/spezifikation/(?P<v>\d+(?:\.\d+)*)",
        "{v}",
        "xgewerbeanzeige",
    ),
    # XGewerbeanzeige 1.3 travels as Destatis DatML/RAW; the KoSIT configuration matches it the same way.
    KnownStandard(
        "XGewerbeanzeige",
        r"http://www\.destatis\.de/schema/datml-raw/2\.0/de",
        "1.3",
        "datml-raw",
        root="DatML-RAW-D",
    ),
    KnownStandard(
        "XBau",
        r"http://www\.xleitstelle\.de/xbau/(?P<major>\d+)/(?P<minor>\d+)",
        "{major}.{minor}",
        "xoev-g2g",
    ),
    KnownStandard(
        "XBau-Kernmodul",
        r"http://www\.xleitstelle\.de/xbau/kernmodul/(?P<a>\d+)/(?P<b>\d+)/(?P<c>\d+)",
        "{a}.{b}.{c}",
        "xoev-g2g",
    ),
    KnownStandard("xdomea", r"urn:xoev-de:xdomea:schema:(?P<v>\d+(?:\.\d+)*)", "{v}", "xdomea"),
    KnownStandard(
        "XGewerbesteuer",
        r"urn:xoev-de:xunternehmen:standard:gewerbesteuer_(?P<v>\d+(?:\.\d+)*)",
        "{v}",
        "xgewerbesteuer",
    ),
)


@dataclass(frozen=True)
class Detected:
    standard: str
    version: str
    header: str


def detect_known(namespace: str, local: str) -> Detected | None:
    """Look the root element up in :data:`KNOWN_STANDARDS`."""
    for known in KNOWN_STANDARDS:
        version = known.match(namespace, local)
        if version is not None:
            return Detected(known.standard, version, known.header)
    return None


def split_tag(tag: str) -> tuple[str, str]:
    """``{ns}local`` → ``(ns, local)``; no namespace gives ``("", local)``."""
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


class _Trie:
    """Header paths of one profile merged into a tree, walked once per document.

    Children are matched by local name (qualified or not), so a header costs one pass over the few
    elements on its paths rather than one XPath evaluation per field (measured: ~4 µs per XPath with
    ``local-name()`` predicates, ~1 µs for a whole header walk).
    """

    __slots__ = ("children", "fields")

    def __init__(self) -> None:
        self.children: dict[str, _Trie] = {}
        self.fields: list[tuple[str, int]] = []  # (field, priority of the path among the field's paths)

    @classmethod
    def build(cls, paths: HeaderPaths) -> _Trie:
        root = cls()
        for name, alternatives in paths.items():
            for priority, path in enumerate(alternatives):
                node = root
                for step in (s for s in path.split("/") if s):
                    node = node.children.setdefault(step, cls())
                node.fields.append((name, priority))
        return root

    def collect(self, element: etree._Element, found: dict[tuple[str, int], list[etree._Element]]) -> None:
        for field, priority in self.fields:
            found.setdefault((field, priority), []).append(element)
        if not self.children:
            return
        children = self.children
        for child in element:
            tag = child.tag
            if isinstance(tag, str):
                sub = children.get(tag.rpartition("}")[2])
                if sub is not None:
                    sub.collect(child, found)


_TRIES: dict[int, tuple[HeaderPaths, _Trie]] = {}


def _trie(paths: HeaderPaths) -> _Trie:
    # Keyed by identity: profiles and manifests hand in the same dict object for every document.
    cached = _TRIES.get(id(paths))
    if cached is None or cached[0] is not paths:
        cached = (paths, _Trie.build(paths))
        _TRIES[id(paths)] = cached
    return cached[1]


def _value(nodes: list[etree._Element]) -> HeaderValue:
    values: list[str] = []
    for node in nodes:
        text = (
            node.text.strip() if len(node) == 0 and node.text else " ".join("".join(node.itertext()).split())
        )
        if text and text not in values:
            values.append(text)
    if not values:
        return None
    return values[0] if len(values) == 1 else values


_TYPE_SUFFIX = re.compile(r"\.(\d{4})$")


def extract_header(root: etree._Element, paths: HeaderPaths) -> dict[str, HeaderValue]:
    """Evaluate the header paths below ``root``; every field in ``HEADER_FIELDS`` is present."""
    found: dict[tuple[str, int], list[etree._Element]] = {}
    _trie(paths).collect(root, found)
    header: dict[str, HeaderValue] = {}
    for name in HEADER_FIELDS:
        value: HeaderValue = None
        for priority in range(len(paths.get(name, ()))):
            nodes = found.get((name, priority))
            if nodes:
                value = _value(nodes)
                if value is not None:
                    break
        header[name] = value
    if header.get("type_code") is None and isinstance(root.tag, str):
        suffix = _TYPE_SUFFIX.search(split_tag(root.tag)[1])
        header["type_code"] = suffix.group(1) if suffix else None
    return header
