"""What an installed Schematron file may not do, and the Saxon settings that enforce it.

A schema bundle comes from outside (an XRepository download, a colleague's zip), and its Schematron is
code: XPath 2.0 can read files (``doc()``, ``unparsed-text()``, ``collection()``, ``json-doc()``…), call
out over HTTP with the same functions, read the environment, and the XSLT that :mod:`schematron` copies
from the file (``xsl:function``, ``xsl:key``, the content of ``sch:let``) could write files
(``xsl:result-document``) or print message data to the worker's log (``xsl:message``). Two lines of
defence keep rules to the document they check:

1. **Saxon runs sandboxed** (:data:`SAXON_FEATURES`, set on the one processor per process):
   ``allowedProtocols`` is empty, so Saxon dereferences no URI at all — no file, no ``http:``, no
   ``jar:`` — whatever function asks (``doc``, ``document``, ``unparsed-text*``, ``collection``,
   ``uri-collection``, ``json-doc``, ``transform``, ``xsl:source-document``, DTDs inside
   ``parse-xml()``); and external functions are off, which also disables ``xsl:result-document`` and
   hides environment variables and system properties. The hub hands Saxon only strings (the compiled
   stylesheet, the serialized document), so nothing legitimate needs a URI.
2. **A static screen when the file is loaded** (:func:`screen`), so that a bundle that tries is refused
   at ``xhub schemas add`` with a message naming the file and the construct, instead of failing message
   by message: calls (or function references ``name#1``) of the functions in :data:`FORBIDDEN_FUNCTIONS`
   in any expression, the XSLT instructions in :data:`FORBIDDEN_XSLT` in copied XSLT, and namespaces of
   extension functions (:data:`EXTENSION_NAMESPACES`).

The screen is a convenience with precise errors; the sandbox is what holds. ``tests/hostile/
test_stylesheets.py`` proves both: a secret file outside the bundle is never read, a loopback listener
never sees a connection, and the shipped XBau rules still run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from lxml import etree

from hub.validation.schematron_source import SCH, SchematronError, q

__all__ = ["EXTENSION_NAMESPACES", "FORBIDDEN_FUNCTIONS", "FORBIDDEN_XSLT", "SAXON_FEATURES", "screen"]

XSL = "http://www.w3.org/1999/XSL/Transform"
FN = "http://www.w3.org/2005/xpath-functions"

SAXON_FEATURES: dict[str, str] = {
    "http://saxon.sf.net/feature/allowedProtocols": "",
    "http://saxon.sf.net/feature/allow-external-functions": "false",
}

FORBIDDEN_FUNCTIONS = frozenset({
    "doc", "doc-available", "document", "unparsed-text", "unparsed-text-lines", "unparsed-text-available",
    "collection", "uri-collection", "json-doc", "transform", "load-xquery-module", "environment-variable",
    "available-environment-variables", "function-lookup",
})
FORBIDDEN_XSLT = frozenset({
    "result-document", "evaluate", "source-document", "merge", "merge-source", "message", "import", "include",
    "import-schema", "use-package",
})
EXTENSION_NAMESPACES = (
    "http://saxon.sf.net/", "http://icl.com/saxon", "http://exslt.org/", "http://expath.org/ns/",
    "http://xmlsoft.org/XSLT/", "http://xml.apache.org/xalan", "java:", "clitype:",
)
# Where Schematron itself has XPath: rule contexts, tests, let values, value-of and name.
_EXPRESSION_ATTRIBUTES = {
    q(SCH, "rule"): ("context",),
    q(SCH, "assert"): ("test",),
    q(SCH, "report"): ("test",),
    q(SCH, "let"): ("value",),
    q(SCH, "value-of"): ("select",),
    q(SCH, "name"): ("path",),
}


def _calls(prefixes: set[str]) -> re.Pattern[str]:
    """A function call or function reference of a forbidden function, unprefixed or with an fn prefix."""
    prefix = "|".join(re.escape(p) + ":" for p in sorted(prefixes | {"fn"}))
    names = "|".join(re.escape(n) for n in sorted(FORBIDDEN_FUNCTIONS, key=len, reverse=True))
    return re.compile(rf"(?<![\w.\-:}}$])(?:{prefix}|Q\{{\s*{re.escape(FN)}\s*\}})?(?P<name>{names})\s*[(#]")


def _copied(schema: etree._Element) -> Iterator[etree._Element]:
    """The subtrees the compiler copies into the stylesheet as they are."""
    for child in schema:
        if child.tag in (q(XSL, "function"), q(XSL, "key")):
            yield child
    for let in schema.iter(q(SCH, "let")):
        yield from (c for c in let if isinstance(c.tag, str))


def _texts(schema: etree._Element) -> Iterator[tuple[etree._Element, str]]:
    """Every text the compiled stylesheet may evaluate, with the element it belongs to."""
    for element in schema.iter():
        for attribute in _EXPRESSION_ATTRIBUTES.get(element.tag, ()):
            value = element.get(attribute)
            if value:
                yield element, value
    for root in _copied(schema):
        for element in root.iter():
            yield from ((element, value) for value in element.attrib.values())
            if element.text and element.text.strip():
                yield element, element.text


def _namespaces(schema: etree._Element) -> Iterator[tuple[etree._Element, str]]:
    for ns in schema.iter(q(SCH, "ns")):
        yield ns, ns.get("uri", "")
    for element in [schema, *(e for root in _copied(schema) for e in root.iter())]:
        yield from ((element, uri) for uri in element.nsmap.values())


def screen(schema: etree._Element, name: str) -> None:
    """Raise :class:`SchematronError` when the loaded file (includes inlined) reaches outside its document."""
    for element, uri in _namespaces(schema):
        if uri.startswith(EXTENSION_NAMESPACES):
            raise SchematronError(
                f"{name}, line {element.sourceline}: namespace {uri!r} is for extension functions, which "
                "installed rules may not use"
            )
    fn_prefixes = {ns.get("prefix", "") for ns in schema.iter(q(SCH, "ns")) if ns.get("uri") == FN}
    fn_prefixes |= {p for e in schema.iter() for p, uri in e.nsmap.items() if uri == FN and p}
    calls = _calls(fn_prefixes - {""})
    for element, text in _texts(schema):
        found = calls.search(text)
        if found:
            raise SchematronError(
                f"{name}, line {element.sourceline}: {found.group('name')}() reads files or the network or "
                "the environment, which installed rules may not do"
            )
    for root in _copied(schema):
        for element in root.iter(f"{{{XSL}}}*"):
            local = etree.QName(element).localname
            if local in FORBIDDEN_XSLT:
                raise SchematronError(
                    f"{name}, line {element.sourceline}: xsl:{local} is not allowed in installed rules "
                    "(it reads or writes outside the document, or prints message data)"
                )
