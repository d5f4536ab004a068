"""Safe XML parsing: the only place in the hub that turns untrusted bytes into an lxml tree.

Every way in (REST intake, FIT-Connect, files, the validation engine) parses through :func:`parse`, or
checks through :func:`check`.
Defences, in the order they apply:

1. size: more than ``XmlLimits.max_bytes`` is refused before any parsing;
2. prolog scan: a ``<!DOCTYPE`` before the root element is refused before libxml2 sees the document,
   which closes XXE (file and network), billion laughs, quadratic blow-up and external DTD fetches
   at once (XÖV messages never carry a DTD);
3. parser settings, as a second line: no DTD loading, no entity resolution, no network, no
   ``XML_PARSE_HUGE`` (libxml2 then caps nesting at 256 levels, text nodes at 10 MB);
4. depth: deeper than ``XmlLimits.max_depth`` is refused (one C-level XPath probe, no Python walk);
5. a DOCTYPE that slipped past the scan (e.g. after a very long prolog) is refused after parsing.

A refusal is an :class:`XmlRejected` with a short ``title``, a precise ``detail`` that can be shown to
the sender as it is, and the ``line`` where the parser stopped when known.

:func:`check` gives the same refusals without building the tree, for a door that only needs to know
whether the hub will take the document (a tree can take 50 times the document's size).
"""

from __future__ import annotations

import codecs
import re
import threading
from dataclasses import dataclass
from functools import lru_cache

from lxml import etree

__all__ = ["DEFAULT_LIMITS", "XmlLimits", "XmlRejected", "check", "parse"]

# libxml2 refuses deeper documents without XML_PARSE_HUGE, whatever XmlLimits says.
LIBXML_MAX_DEPTH = 256


@dataclass(frozen=True)
class XmlLimits:
    """Upper bounds for one document. The defaults suit XÖV messages; attachments are not parsed."""

    max_bytes: int = 50 * 1024 * 1024
    max_depth: int = 256


DEFAULT_LIMITS = XmlLimits()


class XmlRejected(ValueError):
    """The bytes are not a document the hub will process. ``title`` is short, ``detail`` is precise."""

    def __init__(self, title: str, detail: str, line: int | None = None) -> None:
        super().__init__(f"{title}: {detail}")
        self.title = title
        self.detail = detail
        self.line = line


_local = threading.local()


def _parser() -> etree.XMLParser:
    # lxml parsers are not thread-safe but are reusable within one thread: one per thread.
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_blank_text=False,
            collect_ids=False,
        )
        _local.parser = parser
    return parser


_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_PROLOG_WINDOW = 1024 * 1024


def _ascii_prolog(data: bytes) -> bytes:
    """The document start as ASCII-compatible bytes, transcoding UTF-16/32 so the scan sees markup."""
    if data[:1] == b"<" and data[1:2] != b"\x00":
        return data  # the common case: no BOM, an ASCII-compatible encoding
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            if encoding == "utf-8":
                return data[len(bom) :]
            width = 4 if "32" in encoding else 2
            window = data[len(bom) : len(bom) + _PROLOG_WINDOW]
            window = window[: len(window) - len(window) % width]
            return window.decode(encoding, errors="replace").encode("utf-8")
    # UTF-16 without BOM starts with '<' and a zero byte (the XML spec's autodetection table).
    if data[:2] in (b"<\x00", b"\x00<"):
        encoding = "utf-16-le" if data[0:1] == b"<" else "utf-16-be"
        window = data[:_PROLOG_WINDOW]
        return window[: len(window) - len(window) % 2].decode(encoding, errors="replace").encode("utf-8")
    return data


# The usual prolog in one match: an optional XML declaration, comments and whitespace, then the root
# element's start tag. A match proves there is no DOCTYPE; anything else takes the full scan below.
# A comment is matched as runs of non-dashes separated by single dashes (a well-formed comment has no
# "--" inside), which the regex engine scans as fast loops rather than character by character; a
# comment it does not match takes the full scan. Possessive repeats keep a failing match linear on
# hostile input.
_PLAIN_PROLOG = re.compile(rb"(?:<\?xml[^<>?]*\?>)?(?:\s|<!--[^-]*+(?:-[^-]++)*+-->)*+<[A-Za-z_]")


def _check_prolog(data: bytes) -> bool:
    """Refuse a DOCTYPE declaration before the root element, without parsing anything.

    Returns whether the scan reached the root element (it always does, unless a UTF-16/32 document has a
    prolog longer than the transcoded window).
    """
    if _PLAIN_PROLOG.match(data):
        return True
    text = _ascii_prolog(data)
    pos, end = 0, len(text)
    while pos < end:
        lt = text.find(b"<", pos)
        if lt < 0:
            return False
        if text.startswith(b"<?", lt):
            close = text.find(b"?>", lt + 2)
            pos = close + 2 if close >= 0 else end
        elif text.startswith(b"<!--", lt):
            close = text.find(b"-->", lt + 4)
            pos = close + 3 if close >= 0 else end
        elif text[lt : lt + 9].upper() == b"<!DOCTYPE":
            line = text.count(b"\n", 0, lt) + 1
            raise XmlRejected(
                "Document type declaration not allowed",
                "the document contains a <!DOCTYPE>; DTDs and entity declarations are refused "
                "(they enable XXE, entity expansion and external fetches)",
                line,
            )
        else:
            return True  # the root element starts here
    return False


@lru_cache(maxsize=8)
def _deeper_than(limit: int) -> etree.XPath:
    # "/*/*/.../*" with limit+1 steps exists iff some element sits deeper than the limit; libxml2
    # evaluates it level by level in C, visiting each element once.
    return etree.XPath("boolean(/" + "/".join(["*"] * (limit + 1)) + ")")


def _syntax_error(exc: etree.XMLSyntaxError, limits: XmlLimits) -> XmlRejected:
    line = exc.lineno if exc.lineno else None
    msg = str(exc.msg or exc).strip()
    where = f"line {line}: " if line else ""
    if "Excessive depth" in msg:
        limit = min(limits.max_depth, LIBXML_MAX_DEPTH)
        return XmlRejected(
            "Document too deeply nested", f"elements are nested deeper than {limit} levels", line
        )
    if "encoding" in msg.lower() or "not proper UTF-8" in msg or "invalid character" in msg.lower():
        return XmlRejected("Invalid character encoding", f"{where}{msg}", line)
    if "Entity" in msg and "not defined" in msg:
        return XmlRejected("Entity references not allowed", f"{where}{msg}", line)
    return XmlRejected("Not well-formed XML", f"{where}{msg}", line)


def parse(data: bytes, limits: XmlLimits = DEFAULT_LIMITS) -> etree._Element:
    """Parse ``data`` as one XML document and return its root element, or raise :class:`XmlRejected`."""
    if not data or data.isspace():
        raise XmlRejected("Empty document", "the message body is empty")
    if len(data) > limits.max_bytes:
        raise XmlRejected(
            "Document too large",
            f"the document has {len(data)} bytes; the limit is {limits.max_bytes} bytes",
        )
    reached_root = _check_prolog(data)
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc, limits) from None
    if root is None:
        raise XmlRejected("Not well-formed XML", "no root element")
    if not reached_root and root.getroottree().docinfo.doctype:
        raise XmlRejected("Document type declaration not allowed", "the document contains a <!DOCTYPE>")
    if limits.max_depth < LIBXML_MAX_DEPTH and _deeper_than(limits.max_depth)(root):
        raise XmlRejected(
            "Document too deeply nested",
            f"elements are nested deeper than {limits.max_depth} levels",
        )
    return root


# libxml2's tree builder refuses a text node longer than this (XML_MAX_TEXT_LENGTH, without XML_PARSE_HUGE);
# a check without a tree looks for such a run of character data after a tag itself. Anchored at "<", each
# byte is scanned a bounded number of times.
_MAX_TEXT = 10_000_000
_LONG_TEXT = re.compile(rb"(?:^|<)[^<>]*>([^<&]{%d})" % (_MAX_TEXT + 1))


class _NoTree:
    """A parser target without per-node methods: lxml builds no tree and calls no Python code per node."""

    def doctype(self, *_args: object) -> None:
        raise XmlRejected("Document type declaration not allowed", "the document contains a <!DOCTYPE>")

    def close(self) -> None:
        return None


class _DepthOnly(_NoTree):
    """Counts nesting, for a depth limit below libxml2's own (then Python runs per element)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.depth = limit, 0

    def start(self, *_args: object) -> None:
        self.depth += 1
        if self.depth > self.limit:
            raise XmlRejected("Document too deeply nested", f"elements are nested deeper than {self.limit} levels")

    def end(self, *_args: object) -> None:
        self.depth -= 1


def check(data: bytes, limits: XmlLimits = DEFAULT_LIMITS) -> None:
    """Refuse ``data`` when :func:`parse` would, with the same ``title``, but build no tree.

    One difference, on the lenient side: a text node of more than 10,000,000 bytes assembled from several
    pieces (character data, references, CDATA sections) is refused by :func:`parse` only. A run of plain
    character data that long (a large base64 attachment in one element) is refused by both.
    """
    if not data or data.isspace():
        raise XmlRejected("Empty document", "the message body is empty")
    if len(data) > limits.max_bytes:
        raise XmlRejected(
            "Document too large",
            f"the document has {len(data)} bytes; the limit is {limits.max_bytes} bytes",
        )
    _check_prolog(data)
    target = _DepthOnly(limits.max_depth) if limits.max_depth < LIBXML_MAX_DEPTH else _NoTree()
    parser = etree.XMLParser(target=target, resolve_entities=False, no_network=True, load_dtd=False,
                             dtd_validation=False, huge_tree=False, collect_ids=False)
    try:
        etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc, limits) from None
    # The tree builder treats namespace errors as fatal; a parse without a tree only logs them.
    for error in parser.error_log:
        if error.level >= etree.ErrorLevels.ERROR:
            raise XmlRejected("Not well-formed XML",
                              f"line {error.line}: {error.message}, line {error.line}, column {error.column}",
                              error.line)
    long_text = _LONG_TEXT.search(data) if len(data) > _MAX_TEXT else None
    if long_text is not None:
        line = data.count(b"\n", 0, long_text.start(1)) + 1
        raise XmlRejected("Not well-formed XML", f"line {line}: Resource limit exceeded: Text node too long "
                          f"(more than {_MAX_TEXT} bytes)", line)
