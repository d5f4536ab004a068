"""The ``[namespaces]`` of a mapping: a prefix bound to one URI, or to a list of alternatives.

::

    [namespaces]
    xga = ["http://www.xgewerbeanzeige.de/spezifikation/2.2",    # one mapping for three versions
           "http://www.xgewerbeanzeige.de/spezifikation/2.1",
           "http://www.xgewerbeanzeige.de/spezifikation/2.0"]
    bn = "urn:example:fixed"

XPath binds a prefix when an expression is compiled, so alternatives are resolved at load time:
:meth:`Namespaces.bindings` lists every binding (one per combination of alternatives, at most
:data:`MAX_BINDINGS`) and the mapping compiles its expressions once for each. At render time
:meth:`Namespaces.choose` picks the binding for a document by looking at its root element only: for each
listed prefix, the first URI of the list that the root element is in or declares; when none is, the
first URI of the list (the expressions then find nothing, and ``root`` or ``required`` says so).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NoReturn

from lxml import etree

__all__ = ["MAX_BINDINGS", "Namespaces", "parse_namespaces"]

MAX_BINDINGS = 16
_PREFIX = re.compile(r"[A-Za-z_][\w.-]*")

Fail = Callable[[tuple[str, ...], str], NoReturn]


@dataclass(frozen=True)
class Namespaces:
    """Fixed prefixes and prefixes with alternatives (in file order)."""

    fixed: Mapping[str, str]
    alternatives: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def bindings(self) -> list[dict[str, str]]:
        """Every prefix → URI binding, in the order :meth:`choose` numbers them (the first is the default)."""
        prefixes = [prefix for prefix, _ in self.alternatives]
        return [
            {**self.fixed, **dict(zip(prefixes, combination, strict=True))}
            for combination in itertools.product(*(uris for _, uris in self.alternatives))
        ]

    def choose(self, root: etree._Element) -> int:
        """The index into :meth:`bindings` for a document with this root element."""
        if not self.alternatives:
            return 0
        tag = root.tag
        own = tag[1 : tag.index("}")] if isinstance(tag, str) and tag.startswith("{") else None
        declared: set[str] | None = None  # built only when a URI is not the root's own
        index = 0
        for _, uris in self.alternatives:
            position = 0
            for candidate, uri in enumerate(uris):
                if uri == own:
                    position = candidate
                    break
                if declared is None:
                    declared = {u for u in root.nsmap.values() if u}
                if uri in declared:
                    position = candidate
                    break
            index = index * len(uris) + position
        return index


def parse_namespaces(raw: object, fail: Fail) -> Namespaces:
    """Check a ``[namespaces]`` table; ``fail(key path, problem)`` reports a mistake (and raises)."""
    if not isinstance(raw, dict):
        fail(("namespaces",), 'must be a table of prefix = "namespace URI" (or a list of alternative URIs)')
    fixed: dict[str, str] = {}
    alternatives: list[tuple[str, tuple[str, ...]]] = []
    for prefix, value in raw.items():
        where = ("namespaces", prefix)
        if not _PREFIX.fullmatch(prefix):
            fail(where, "not a namespace prefix")
        if isinstance(value, str) and value:
            fixed[prefix] = value
            continue
        if not isinstance(value, list):
            fail(where, "the namespace URI must be a non-empty string, or a list of them (alternatives)")
        if not value or not all(isinstance(uri, str) and uri for uri in value):
            fail(where, "a list of alternative namespace URIs must hold non-empty strings, at least one")
        if len(set(value)) != len(value):
            fail(where, "a namespace URI is listed twice")
        alternatives.append((prefix, tuple(value)))
    count = 1
    for _, uris in alternatives:
        count *= len(uris)
    if count > MAX_BINDINGS:
        fail(("namespaces",), f"the alternatives make {count} combinations, each compiled once; at most {MAX_BINDINGS}")
    return Namespaces(fixed, tuple(alternatives))
